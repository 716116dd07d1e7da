"""int8 quantization: error bounds, and agreement with float32 on a trained model."""

import jax
import jax.numpy as jnp
import numpy as np

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.eval import metrics
from salesrl_jax.eval.predict import make_predict, predict_arrays
from salesrl_jax.infer.quantize import (dequantize_kernel, dequantize_params, load_quantized, quantize_kernel,
                                        quantize_params, save_quantized, tree_bytes)
from salesrl_jax.models.layers import int8_matmul, quantize_rows
from salesrl_jax.train.checkpoint import TrainedModel


def test_weight_quantization_error_is_at_most_half_a_step_per_channel():
    rng = np.random.default_rng(0)
    for shape in [(64, 32), (3, 40, 16)]:  # a plain kernel and a stacked ensemble kernel
        w = jnp.asarray(rng.normal(size=shape) * rng.uniform(0.01, 3.0, size=shape[:-2] + (1, shape[-1])), jnp.float32)
        q, scale = quantize_kernel(w)
        assert q.dtype == jnp.int8 and scale.shape == shape[:-2] + (shape[-1],)
        error = jnp.abs(dequantize_kernel(q, scale) - w)
        assert bool(jnp.all(error <= scale[..., None, :] / 2 + 1e-7))
        assert int(jnp.max(jnp.abs(q.astype(jnp.int32)))) == 127  # each channel's largest weight uses the full range
    zero_q, zero_scale = quantize_kernel(jnp.zeros((4, 3)))
    assert bool(jnp.all(zero_q == 0)) and bool(jnp.all(zero_scale == 1.0))


def test_int8_matmul_is_within_the_quantization_bound():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(50, 96)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(96, 24)) * 0.1, jnp.float32)
    q, scale = quantize_kernel(w)
    xq, xs = quantize_rows(x)
    # |x W - s_x x_q s_W W_q| <= sum_i (|x_i| e_W + |W_i| e_x + e_x e_W), e = half a step.
    bound = (jnp.abs(x).sum(1, keepdims=True) * scale / 2 + (xs / 2)[:, None] * jnp.abs(w).sum(0)
             + 96 * (xs / 2)[:, None] * scale / 2)
    assert bool(jnp.all(jnp.abs(int8_matmul(x, q, scale) - x @ w) <= bound + 1e-5))
    assert xq.dtype == jnp.int8


def test_int8_agrees_with_float32_on_a_trained_model(tiny_trained, tiny_arrays, tmp_path):
    model = TrainedModel.load(tiny_trained)
    arrays = TurnArrays.open(tiny_arrays)
    f32 = predict_arrays(make_predict(model.graphdef), model.params, arrays, rows=512)
    q_graphdef, q_params = quantize_params(model.params, model.config.model, arrays.dim)
    int8 = predict_arrays(make_predict(q_graphdef), q_params, arrays, rows=512)
    deq = predict_arrays(make_predict(model.graphdef), dequantize_params(q_params, model.params), arrays, rows=512)
    for pred in (int8, deq):
        assert abs(metrics.roc_auc(pred.prediction, pred.outcome) - metrics.roc_auc(f32.prediction, f32.outcome)) <= 0.002
        assert abs(metrics.brier(pred.prediction, pred.outcome) - metrics.brier(f32.prediction, f32.outcome)) <= 0.002
        assert np.max(np.abs(pred.prediction - f32.prediction)) < 0.02
    # Saved with orbax and read back exactly; about 4x smaller than float32 (biases and norms stay float).
    path = save_quantized(tmp_path / "int8", q_params)
    _, loaded = load_quantized(path, model.config.model, arrays.dim)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), loaded, q_params))
    assert tree_bytes(model.params) / tree_bytes(q_params) > 2.5


def test_int8_embeddings_feed_the_int8_model_like_float_ones(tiny_trained, tiny_arrays):
    from salesrl_jax.infer.quantize import quantize_rows_np
    from salesrl_jax.models.inputs import TurnInputs

    model = TrainedModel.load(tiny_trained)
    part = TurnArrays.open(tiny_arrays).part(0)
    rows = slice(0, int(part.offsets[20]))
    embeddings = np.asarray(part.embeddings[rows], np.float32)
    q, scale = quantize_rows_np(embeddings)
    assert q.dtype == np.int8 and np.all(np.abs(q.astype(np.float32) * scale[:, None] - embeddings) <= scale[:, None] / 2 + 1e-7)
    starts = np.zeros(len(embeddings), bool)
    starts[np.asarray(part.offsets[:20])] = True
    base = TurnInputs(jnp.asarray(embeddings), jnp.asarray(part.features[rows]), jnp.asarray(starts),
                      jnp.ones(len(embeddings), bool))
    q_graphdef, q_params = quantize_params(model.params, model.config.model, part.embeddings.shape[1])
    f32 = make_predict(model.graphdef)(model.params, base)[0]
    int8 = make_predict(q_graphdef)(q_params, base.replace(embeddings=jnp.asarray(q), embedding_scale=jnp.asarray(scale)))[0]
    float_from_int8 = make_predict(model.graphdef)(model.params, base.replace(embeddings=jnp.asarray(q),
                                                                              embedding_scale=jnp.asarray(scale)))[0]
    assert float(jnp.max(jnp.abs(int8 - f32))) < 0.02 and float(jnp.max(jnp.abs(float_from_int8 - f32))) < 0.01

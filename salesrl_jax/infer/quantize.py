"""Post-training int8 quantization of a trained agent.

Weights: symmetric, one scale per output channel, ``s_j = max_i |W_ij| / 127``,
``W_q = clip(round(W / s), -127, 127)``; so ``|W - s W_q| <= s / 2`` element-wise (tested). The
wide layers (embedding projection, encoder hidden and state layers, head hidden layers) are
quantized; the narrow output layers and the LayerNorms stay float32, where int8 saves nothing
and costs accuracy.

Activations (`salesrl_jax.models.layers`): calibrated per input channel where calibration data is
given (`activation_ranges` over a sample of training turns; the scales are folded into the
kernels), else dynamic per row; the embedding projection is always per row.

Two ways to run a quantized model, chosen by batch size (measured in ``salesrl bench``):

* the int8 graph (`SalesAgent(..., quantized=Int8Spec(...))`): fastest for large batches on XLA:CPU;
* dequantized once at load (`dequantize_params`): the float graph with weights ``s W_q``; for
  batch-1 streaming, where a per-call activation quantization would cost more than it saves.

The quantized parameters are a plain pytree saved with orbax beside the float checkpoint; whether
they were calibrated is read back from the saved tree (an ``input_scale`` per calibrated layer).
Beside them, ``provenance.json`` records their own digest and the digest of the float parameters
they were made from: saved int8 parameters whose float model has since changed (a retrain, a
recalibration) are stale, and are never used (`saved_int8` says so and the model is quantized anew).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.io.atomic import write_json_atomic
from salesrl_jax.io.digest import IntegrityError, check_tree, tree_digest
from salesrl_jax.models.agent import SalesAgent, previous_predictions
from salesrl_jax.models.bag import WIDE_STATISTICS
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.models.layers import INT8_MAX, Int8Dot, Int8Spec, default_int8_dot

QUANTIZED_DIR = "int8"
PROVENANCE = "provenance.json"
CALIBRATION_TURNS = 65_536
AGREEMENT_TOLERANCE = 0.005  # mean |p_int8 - p_float| on the calibration turns above which per-row scales are tried


def quantize_rows_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host-side symmetric per-row int8 quantization (embeddings, in worker processes): ``(int8 [n, d], scale [n])``.

    Feeding the int8 model int8 embeddings skips its widest per-call activation quantization and
    moves a quarter of the bytes.
    """
    x = np.asarray(x, dtype=np.float32)
    scale = np.abs(x).max(axis=1) / INT8_MAX if x.size else np.zeros(len(x), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(x / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8), scale


# The conversions below run once per model loaded, on the host in numpy: as eager JAX ops each new shape compiled a
# program of its own (about 80 per model, 1-3 s of every `salesrl score --quantized` and `Scorer.load`). float32
# throughout, rounding half to even as `jnp.round` does, and a division by a constant or a broadcast vector made the
# product by its float32 reciprocal, as XLA compiles it: the same bits as the JAX forms (checked on their digests).
_INV_INT8_MAX = np.float32(1.0 / INT8_MAX)


def quantize_kernel(kernel) -> tuple[np.ndarray, np.ndarray]:
    """``[..., d_in, d_out]`` float -> (int8 kernel, per-output-channel scales ``[..., d_out]``)."""
    kernel = np.asarray(kernel, np.float32)
    scale = np.max(np.abs(kernel), axis=-2) * _INV_INT8_MAX
    scale = np.where(scale > 0, scale, np.float32(1.0))
    q = np.clip(np.round(kernel * (np.float32(1.0) / scale)[..., None, :]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale.astype(np.float32)


def dequantize_kernel(q, scale) -> np.ndarray:
    return np.asarray(q).astype(np.float32) * np.asarray(scale, np.float32)[..., None, :]


def unfold_input_scale(kernel, input_scale) -> np.ndarray:
    """``W = (diag(a) W) / a``: a calibrated layer's dequantized kernel ``[..., d_in, d_out]`` with its folded input
    scales ``a`` ``[..., d_in]`` taken out again (as the product by ``1 / a``, as XLA compiled the division)."""
    return np.asarray(kernel, np.float32) * (np.float32(1.0) / np.asarray(input_scale, np.float32))[..., None]


def _map_layers(float_tree: dict, quant_tree: dict, convert, leaves_from_quant: bool, path: tuple = ()) -> dict:
    """Walk the two pure-dict parameter trees together: every quantized Dense (a dict with ``scale``
    in ``quant_tree``) becomes ``convert(path, float_layer, quant_layer)``; other leaves are copied from
    one tree (they are float32 in both)."""
    out = {}
    for key, node in quant_tree.items():
        if isinstance(node, dict) and "scale" in node and "kernel" in node:
            out[key] = convert(path + (key,), float_tree[key], node)
        elif isinstance(node, dict):
            out[key] = _map_layers(float_tree[key], node, convert, leaves_from_quant, path + (key,))
        else:
            out[key] = node if leaves_from_quant else float_tree[key]
    return out


def quantized_agent(config: ModelConfig, embed_dim: int, spec: Int8Spec, sparse_text: bool = False
                    ) -> tuple[nnx.GraphDef, nnx.State]:
    """The int8 graph and a placeholder state (its shapes and dtypes, abstract: nothing is initialised)."""
    return nnx.split(nnx.eval_shape(lambda: SalesAgent(config, embed_dim, rngs=nnx.Rngs(0), quantized=spec,
                                                       sparse_text=sparse_text)))


def _has_bag(tree) -> bool:
    """Whether a parameter tree (pure dict or orbax metadata) holds an n-gram embedding bag (it has an ``idf``)."""
    return "idf" in tree["encoder"]["project"]


def quantize_bag(table) -> tuple[np.ndarray, np.ndarray]:
    """An embedding-bag table ``[buckets, H]`` -> (int8 table, one scale per bucket row ``[buckets]``):
    ``|E - s E_q| <= s / 2`` element-wise, with each row's own scale (a rare gram's small row keeps its precision)."""
    table = np.asarray(table, np.float32)
    scale = np.max(np.abs(table), axis=-1) * _INV_INT8_MAX
    scale = np.where(scale > 0, scale, np.float32(1.0))
    q = np.clip(np.round(table * (np.float32(1.0) / scale)[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale.astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _batch_ranges(graphdef: nnx.GraphDef, params: nnx.State, inputs: TurnInputs) -> dict:
    """One batch's per-channel ``max |x|`` for `activation_ranges`. Module level, the graph static: a closure per
    call compiled afresh for every model loaded (1.4 s of every `salesrl score --quantized` in one process)."""
    agent = nnx.merge(graphdef, params)
    config = agent.config
    encoder = agent.encoder
    prev = None
    if config.feed_prediction:
        prev = previous_predictions(agent.predict(inputs).prediction, inputs.starts)
    state_input = encoder.state_input(encoder.context(inputs), prev)
    hidden = encoder.hidden_activation(state_input)
    state = encoder.state_from_hidden(hidden)  # the deep state (without a wide term's column)

    def absmax(x):
        return jnp.max(jnp.where(inputs.valid[:, None], jnp.abs(x), 0.0), axis=0)

    ranges = {"encoder": {"hidden": absmax(state_input), "out": absmax(hidden)}, "value": {"hidden": absmax(state)}}
    if config.ensemble_size:
        ranges["ensemble"] = {"heads": {"hidden": absmax(state)}}
    return ranges


def activation_ranges(graphdef: nnx.GraphDef, params: nnx.State, batches) -> dict:
    """Per-channel ``max |x|`` of the input of every calibrated layer, over the valid rows of ``batches``
    (an iterable of `TurnInputs`), run through the float model: a pure dict keyed like the parameters
    (``{"encoder": {"hidden": [C], "out": [H]}, "value": {"hidden": [S]}, ...}``)."""
    total = None
    for inputs in batches:
        ranges = _batch_ranges(graphdef, params, inputs)
        ranges = jax.tree.map(np.asarray, ranges)
        total = ranges if total is None else jax.tree.map(np.maximum, total, ranges)
    if total is None:
        raise ValueError("no calibration turns")
    return total


def calibration_batches(arrays, turns: int = CALIBRATION_TURNS, rows: int = 4096):
    """`TurnInputs` of whole conversations from ``arrays`` (a `TurnArrays`), in cache order: the first
    ``turns`` turns are valid rows (a conversation cut by the budget keeps only its first turns)."""
    from salesrl_jax.arrays.batches import gather_packed, plan_packing

    seen = 0
    for p in range(len(arrays)):
        part = arrays.part(p)
        for minibatch in plan_packing(part.lengths, np.arange(part.num_conversations), rows):
            batch = gather_packed(part, [minibatch], rows, 1)
            valid = batch.valid[0] & (seen + np.cumsum(batch.valid[0]) <= turns)
            yield jax.tree.map(jnp.asarray, TurnInputs.from_packed(batch, 0, valid))
            seen += int(valid.sum())
            if seen >= turns:
                return


def _lookup(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def quantize_params(params: nnx.State, config: ModelConfig, embed_dim: int, ranges: dict | None = None,
                    dot: Int8Dot | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """Float parameters -> (int8 graph, int8 parameters). With ``ranges`` (from `activation_ranges`) the
    layers get calibrated input scales ``a = max|x| / 127``, folded into the kernel before it is
    quantized; without, they quantize their inputs per row at run time. ``dot``: see `Int8Spec`
    (default: `default_int8_dot`)."""
    float_pure = nnx.to_pure_dict(params)
    graphdef, like = quantized_agent(config, embed_dim, Int8Spec(calibrated=ranges is not None,
                                                                 dot=dot or default_int8_dot()), _has_bag(float_pure))

    def convert(path: tuple, float_layer: dict, quant_layer: dict) -> dict:
        kernel = float_layer["kernel"]
        layer = {"bias": float_layer["bias"]}
        if "idf" in quant_layer:  # the n-gram embedding bag: per-row scales, its idf as fitted
            layer["kernel"], layer["scale"] = quantize_bag(kernel)
            wide = {k: float_layer[k] for k in WIDE_STATISTICS if k in float_layer}  # float, as in training
            return {**layer, "idf": float_layer["idf"], **wide}
        if "input_scale" in quant_layer:
            kernel = np.asarray(kernel, np.float32)
            absmax = np.broadcast_to(np.asarray(_lookup(ranges, path), np.float32), kernel.shape[:-1])
            input_scale = np.where(absmax > 0, absmax * _INV_INT8_MAX, np.float32(1.0)).astype(np.float32)
            kernel = kernel * input_scale[..., None]  # x W = (x / a) (diag(a) W)
            layer["input_scale"] = input_scale
        q, layer["scale"] = quantize_kernel(kernel)
        layer["kernel"] = q.astype(quant_layer["kernel"].dtype)  # int8, or bf16 for the bf16 dot (exact)
        return layer

    pure = jax.device_put(_map_layers(float_pure, nnx.to_pure_dict(like), convert, leaves_from_quant=False))
    check_shared_state_scale(pure)
    nnx.replace_by_pure_dict(like, pure)
    return graphdef, like


def check_shared_state_scale(pure: dict) -> None:
    """The calibrated int8 agent quantizes the state once for the value and every ensemble head
    (`SalesAgent.heads`), so their first layers must share one input scale: raise if they do not."""
    if "input_scale" not in pure["value"]["hidden"] or "ensemble" not in pure:
        return
    value = np.asarray(pure["value"]["hidden"]["input_scale"])
    heads = np.asarray(pure["ensemble"]["heads"]["hidden"]["input_scale"])
    if not np.array_equal(np.broadcast_to(value, heads.shape), heads):
        raise ValueError("int8 parameters: the value and ensemble heads read the same state but have different "
                         "calibrated input scales (re-run salesrl quantize)")


def dequantize_params(quantized: nnx.State, float_like: nnx.State) -> nnx.State:
    """int8 parameters -> float parameters ``s W_q`` (divided by the folded input scales) for the
    float graph: dequantized once, at load. Placed on the device of ``float_like``'s arrays (committed, as a restored
    model's are), so that a jitted function runs one program for the float and the dequantized parameters (the
    streaming scorer's step: `salesrl_jax.infer.scorer.streaming_step`)."""
    def convert(_path: tuple, _float_layer: dict, quant_layer: dict) -> dict:
        if "idf" in quant_layer:
            table = np.asarray(quant_layer["kernel"]).astype(np.float32) * np.asarray(quant_layer["scale"])[:, None]
            wide = {k: quant_layer[k] for k in WIDE_STATISTICS if k in quant_layer}
            return {"kernel": table, "bias": quant_layer["bias"], "idf": quant_layer["idf"], **wide}
        kernel = dequantize_kernel(quant_layer["kernel"], quant_layer["scale"])
        if "input_scale" in quant_layer:
            kernel = unfold_input_scale(kernel, quant_layer["input_scale"])
        return {"kernel": kernel, "bias": quant_layer["bias"]}

    device = next(iter(jax.tree.leaves(float_like)[0].devices()))
    pure = jax.device_put(_map_layers(nnx.to_pure_dict(float_like), nnx.to_pure_dict(quantized), convert,
                                      leaves_from_quant=True), device)
    result = jax.tree.map(lambda x: x, float_like)
    nnx.replace_by_pure_dict(result, pure)
    return result


def save_quantized(directory: str | os.PathLike[str], quantized: nnx.State, source_digest: str) -> Path:
    """Write the int8 parameters (a plain pytree) with orbax, and ``provenance.json``: their digest and
    ``source_digest``, the digest of the float parameters they were made from. Returns the path."""
    import orbax.checkpoint as ocp

    path = Path(directory).absolute()
    stored = jax.tree.map(_as_stored, nnx.to_pure_dict(quantized))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, stored, force=True)
    write_json_atomic(path / PROVENANCE, {"int8_params_sha256": tree_digest(stored),
                                          "float_params_sha256": source_digest})
    return path


def read_provenance(directory: Path) -> dict | None:
    """``provenance.json`` of saved int8 parameters; None if absent or unreadable."""
    try:
        provenance = json.loads((Path(directory) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None
    return provenance if isinstance(provenance, dict) else None


def _as_stored(x):
    """Kernels held as bf16 for the bf16 dot are stored as the int8 they hold exactly."""
    if x.dtype != jnp.bfloat16:
        return x
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, jnp.int8)
    return x.astype(jnp.int8)


def load_quantized(directory: str | os.PathLike[str], config: ModelConfig, embed_dim: int, dot: Int8Dot | None = None
                   ) -> tuple[nnx.GraphDef, nnx.State]:
    import orbax.checkpoint as ocp

    path = Path(directory).absolute()
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            saved = checkpointer.metadata(path).item_metadata.tree
        calibrated = "input_scale" in saved["encoder"]["hidden"]
        graphdef, like = quantized_agent(config, embed_dim,
                                         Int8Spec(calibrated=calibrated, dot=dot or default_int8_dot()),
                                         _has_bag(saved))
        held = nnx.to_pure_dict(like)
        target = jax.tree.map(lambda x: ocp.utils.to_shape_dtype_struct(_as_stored(x)), held)
        with ocp.StandardCheckpointer() as checkpointer:
            pure = checkpointer.restore(path, target)
    except Exception as err:  # orbax and tensorstore raise many types (even bare Exception) on damaged files
        raise IntegrityError(f"{path}: the int8 parameters cannot be read ({type(err).__name__}); the directory is "
                             "damaged or incomplete. Remove it and rerun `salesrl quantize`") from err
    check_tree(pure, (read_provenance(path) or {}).get("int8_params_sha256"), f"int8 parameters {path}")
    check_shared_state_scale(pure)
    nnx.replace_by_pure_dict(like, jax.tree.map(lambda x, h: jnp.asarray(x).astype(h.dtype), pure, held))
    return graphdef, like


def saved_quantized_dir(model) -> Path | None:
    """Where `salesrl quantize` keeps a run's int8 parameters (``RUN/int8``), if the model came from a run."""
    if model.directory is None or model.directory.parent.name != "checkpoints":
        return None
    return model.directory.parent.parent / QUANTIZED_DIR


def saved_int8(model, dot: Int8Dot | None = None) -> tuple[nnx.GraphDef, nnx.State, str] | None:
    """A `TrainedModel`'s saved int8 parameters (`salesrl quantize`) as ``(graphdef, params, how)``, if there are
    any made from its current float parameters. Stale ones (made from other float parameters, or with no
    provenance) are not used: a warning says so, and None is returned."""
    saved = saved_quantized_dir(model)
    if saved is None or not saved.exists():
        return None
    source = (read_provenance(saved) or {}).get("float_params_sha256")
    if source != model.params_digest:
        why = "were made from other float parameters" if source else "record no float parameters they were made from"
        warnings.warn(f"{saved}: the saved int8 parameters {why} than the model at {model.directory} (stale: the "
                      "model was retrained or recalibrated since); not used, the model is quantized now. Rerun "
                      "`salesrl quantize` to save fresh ones", stacklevel=2)
        return None
    graphdef, params = load_quantized(saved, model.config.model, model.identity.dim, dot)
    return graphdef, params, f"saved int8 parameters at {saved}"


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef: nnx.GraphDef, params: nnx.State, inputs: TurnInputs) -> jnp.ndarray:
    return nnx.merge(graphdef, params).predict(inputs).prediction


def prediction_gap(reference: list[jnp.ndarray], graphdef: nnx.GraphDef, params: nnx.State,
                   batches: list[TurnInputs]) -> float:
    """Mean ``|p - p_ref|`` over the valid rows of ``batches``, against ``reference`` predictions of each batch."""
    total, count = 0.0, 0
    for ref, inputs in zip(reference, batches):  # on the host: eager ops compiled a program per batch shape
        valid = np.asarray(inputs.valid)
        gap = np.abs(np.asarray(_predict(graphdef, params, inputs), np.float64) - np.asarray(ref, np.float64))
        total += float(gap[valid].sum())
        count += int(valid.sum())
    return total / max(count, 1)


def quantize_checked(model, arrays, turns: int = CALIBRATION_TURNS, dot: Int8Dot | None = None,
                     tolerance: float = AGREEMENT_TOLERANCE) -> tuple[nnx.GraphDef, nnx.State, str]:
    """``model`` quantized with activation scales calibrated on the first ``turns`` turns of ``arrays`` if its
    predictions there stay within ``tolerance`` (mean ``|p_int8 - p_float|``) of the float model's, else with
    per-row activation scales, whichever is closer: ``(graphdef, params, how)``.

    Why: folding a calibrated scale ``a_i = max |x_i| / 127`` into the kernel shrinks the rows of inputs that are
    always small, and one scale per output channel then rounds them away. A learned n-gram bag (linear, weight
    decay 0.1) gives exactly such inputs beside turn features of order 1; on PersuasionForGood this cost 0.05
    last-turn AUC (mean gap 0.029, against 0.002 with per-row scales; docs/benchmarks.md)."""
    batches = list(calibration_batches(arrays, turns))
    ranges = activation_ranges(model.graphdef, model.params, batches)
    dim = model.identity.dim
    reference = [_predict(model.graphdef, model.params, inputs) for inputs in batches]  # float32, once
    graphdef, params = quantize_params(model.params, model.config.model, dim, ranges, dot)
    gap = prediction_gap(reference, graphdef, params, batches)
    where = f"on {min(turns, arrays.num_turns):,} turns of {arrays.path}"
    if gap <= tolerance:
        return graphdef, params, f"quantized now, calibrated {where} (mean |p - p_float| {gap:.4f})"
    row_graphdef, row_params = quantize_params(model.params, model.config.model, dim, dot=dot)
    row_gap = prediction_gap(reference, row_graphdef, row_params, batches)
    if row_gap < gap:
        return row_graphdef, row_params, (f"quantized now, per-row activation scales: calibrated scales moved the "
                                          f"predictions {where} by {gap:.4f} on average (tolerance {tolerance}), "
                                          f"per-row scales by {row_gap:.4f}")
    return graphdef, params, f"quantized now, calibrated {where} (mean |p - p_float| {gap:.4f}; per-row: {row_gap:.4f})"


def int8_model(model, dot: Int8Dot | None = None) -> tuple[nnx.GraphDef, nnx.State, str]:
    """The int8 form of a `TrainedModel`: ``(graphdef, params, how)``. Its saved int8 parameters
    (`salesrl quantize`) if they were made from its current float parameters; else quantized now, checked on the
    model's training arrays if they are still on disk (`quantize_checked`); else with per-row activation scales."""
    dim = model.identity.dim
    saved = saved_int8(model, dot)
    if saved is not None:
        return saved
    arrays = training_arrays(model)
    if arrays is None:
        graphdef, params = quantize_params(model.params, model.config.model, dim, dot=dot)
        return graphdef, params, "quantized now, per-row activation scales (no calibration arrays found)"
    return quantize_checked(model, arrays, dot=dot)


def training_arrays(model):
    """The model's training arrays (its config's ``data.train``) if they are on disk and match it, else None."""
    from salesrl_jax.arrays.store import TurnArrays

    try:
        arrays = TurnArrays.open(model.training_data)
        model.require_compatible(arrays.identity, arrays.feature_names, str(model.training_data))
    except (OSError, ValueError):
        return None
    return arrays


@dataclasses.dataclass
class QuantizedModel:
    path: Path  # where the int8 parameters were saved
    calibration: Path  # the arrays the activation scales were calibrated on
    calibration_turns: int
    int8_bytes: int
    float_bytes: int
    how: str = ""  # which activation scales, and how far each moved the predictions (`quantize_checked`)

    def summary(self) -> str:
        return (f"{self.how or f'calibrated on the first {self.calibration_turns:,} turns of {self.calibration}'}\n"
                f"wrote {self.path}: {self.int8_bytes / 1e6:.2f} MB of parameters (float32: "
                f"{self.float_bytes / 1e6:.2f} MB, {self.float_bytes / self.int8_bytes:.1f}x)")


def quantize_model(model_path: str | os.PathLike[str], *, calibration: str | os.PathLike[str] | None = None,
                   calibration_turns: int = CALIBRATION_TURNS) -> QuantizedModel:
    """Quantize a trained run to int8 and save it beside the float model (``RUN/int8``), with activation scales
    calibrated on ``calibration`` arrays (default: the run's training arrays, if still on disk)."""
    from salesrl_jax.arrays.store import TurnArrays
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(model_path)
    if calibration is not None:
        arrays = TurnArrays.open(calibration)
        model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {calibration}")
    else:
        arrays = training_arrays(model)
        if arrays is None:
            raise ValueError(f"the run's training arrays ({model.config.data.train}) are not on disk or do not match "
                             "the model; pass --calibration ARRAYS (cached arrays from `salesrl embed`)")
    _, q_params, how = quantize_checked(model, arrays, calibration_turns)
    path = save_quantized(saved_quantized_dir(model) or Path(model_path) / QUANTIZED_DIR, q_params,
                          model.params_digest)
    return QuantizedModel(path, arrays.path, min(calibration_turns, arrays.num_turns), tree_bytes(q_params),
                          tree_bytes(model.params), how)


def tree_bytes(tree) -> int:
    """Bytes of a parameter tree as saved (kernels held as bf16 count as the int8 they are stored as)."""
    return int(sum(np.asarray(_as_stored(x)).nbytes for x in jax.tree.leaves(tree)))

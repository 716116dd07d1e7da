"""The model: shapes, masking, causality, incremental == batch, the policy distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.models import ModelConfig, SalesAgent, TurnInputs
from tests.conftest import predict_in_blocks, tiny_model

D, F = 24, len(FEATURE_NAMES)


def flat_batch(lengths, pad=0, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(lengths) + pad
    starts = np.zeros(n, bool)
    starts[np.cumsum([0] + list(lengths[:-1]))] = True
    features = rng.normal(size=(n, F)).astype(np.float32)
    features[:, 0] = rng.integers(0, 2, n)
    return TurnInputs(jnp.asarray(rng.normal(size=(n, D)), jnp.float32), jnp.asarray(features), jnp.asarray(starts),
                      jnp.asarray(np.arange(n) < sum(lengths)))


CONFIGS = {
    "weighted": tiny_model(),
    "mean": tiny_model(history="mean"),
    "none": tiny_model(history="none", ensemble_size=0),
    "feed_prediction": tiny_model(feed_prediction=True, speaker_pools=False),
    "text_only": tiny_model(use_features=False, use_engagement=False, use_position=False, learned_importance=False),
    "features_only": tiny_model(use_text=False),
    "no_pool_features": tiny_model(pool_features=False),
}


def test_a_features_only_model_never_reads_the_text():
    agent = SalesAgent(CONFIGS["features_only"], D, rngs=nnx.Rngs(7))
    inputs = flat_batch([4, 3])
    other = inputs.replace(embeddings=inputs.embeddings * -3.0 + 1.0)
    np.testing.assert_array_equal(agent.predict(inputs).prediction, agent.predict(other).prediction)
    text = SalesAgent(CONFIGS["weighted"], D, rngs=nnx.Rngs(7))
    assert not np.allclose(text.predict(inputs).prediction, text.predict(other).prediction)


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_and_padding_do_not_leak(name):
    agent = SalesAgent(CONFIGS[name], D, rngs=nnx.Rngs(0))
    predict = jax.jit(lambda x: agent.predict(x))
    inputs = flat_batch([3, 5, 2], pad=4)
    out = predict(inputs)
    k = CONFIGS[name].ensemble_size
    assert out.prediction.shape == (14,) and out.value.shape == (14,) and out.ensemble_logits.shape == (k, 14)
    assert out.uncertainty.shape == (14,) and bool(jnp.all((out.prediction > 0) & (out.prediction < 1)))
    # Garbage in the padding rows changes nothing in the real rows.
    noisy = inputs.replace(embeddings=inputs.embeddings.at[10:].set(1e3), features=inputs.features.at[10:].set(-7.0))
    np.testing.assert_allclose(predict(noisy).prediction[:10], out.prediction[:10], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CONFIGS)
def test_changing_turn_t_plus_1_leaves_turns_1_to_t_unchanged(name):
    agent = SalesAgent(CONFIGS[name], D, rngs=nnx.Rngs(1))
    predict = jax.jit(lambda x: agent.predict(x))
    inputs = flat_batch([6, 4])
    base = predict(inputs)
    for t in range(1, 6):  # change turn t+1 (row t) of the first conversation and everything after it
        changed = inputs.replace(embeddings=inputs.embeddings.at[t:6].multiply(-3.0),
                                 features=inputs.features.at[t:6].add(2.0))
        out = predict(changed)
        np.testing.assert_array_equal(out.prediction[:t], base.prediction[:t])
        np.testing.assert_array_equal(out.ensemble_logits[:, :t], base.ensemble_logits[:, :t])
        assert not np.allclose(out.prediction[t:6], base.prediction[t:6])
        np.testing.assert_allclose(out.prediction[6:], base.prediction[6:], rtol=1e-6, atol=1e-7)  # other conversation


@pytest.mark.parametrize("name", CONFIGS)
def test_incremental_equals_batch(name):
    agent = SalesAgent(CONFIGS[name], D, rngs=nnx.Rngs(2))
    lengths = [7, 1, 4]
    inputs = flat_batch(lengths)
    batch = agent.predict(inputs)  # eager here: the incremental side is jitted, so both paths are covered
    step = jax.jit(lambda carry, e, f, p: agent.step(carry, e, f, p))
    row = 0
    for n in lengths:
        carry, prev = agent.encoder.init_carry(), jnp.asarray(0.5)
        for _ in range(n):
            carry, out = step(carry, inputs.embeddings[row], inputs.features[row], prev)
            prev = out.prediction
            np.testing.assert_allclose(out.prediction, batch.prediction[row], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out.uncertainty, batch.uncertainty[row], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out.value, batch.value[row], rtol=1e-5, atol=1e-5)
            row += 1


def test_policy_is_a_beta_whose_mean_is_the_prediction():
    agent = SalesAgent(tiny_model(), D, rngs=nnx.Rngs(3))
    out = agent(flat_batch([4]))
    policy = out.policy()
    np.testing.assert_allclose(policy.mean(), out.prediction, rtol=1e-5)
    samples = policy.sample(seed=jax.random.PRNGKey(0), sample_shape=(4000,))
    np.testing.assert_allclose(samples.mean(0), out.prediction, atol=0.02)
    assert bool(jnp.all(out.concentration >= tiny_model().min_concentration))


def test_ensemble_heads_are_independent_and_stacked():
    agent = SalesAgent(tiny_model(), D, rngs=nnx.Rngs(4))
    kernel = agent.ensemble.heads.hidden.kernel[...]
    assert kernel.shape == (3, 16, 8)
    assert not np.allclose(kernel[0], kernel[1])


@pytest.mark.parametrize("bad, message", [
    (dict(history="weighted", decay_half_lives=()), "at least one half-life"),
    (dict(decay_half_lives=(1.0, -2.0)), "positive"),
    (dict(state_dim=0), "state_dim"),
    (dict(ensemble_size=-1), "ensemble_size"),
])
def test_model_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)


@pytest.mark.parametrize("name", ["weighted", "mean", "none"])
def test_blocked_prediction_equals_one_pass(name):
    """Conversations cross block edges; carrying the pools across them gives the one-pass result."""
    agent = SalesAgent(CONFIGS[name], D, rngs=nnx.Rngs(5))
    lengths = [7, 3, 12, 5, 9, 4, 6, 2, 11, 5]  # 64 rows with padding: blocks of 16 cut conversations
    inputs = flat_batch(lengths, pad=64 - sum(lengths))
    one = jax.jit(lambda x: agent.predict(x))(inputs)
    blocked = predict_in_blocks(agent, inputs, 16)
    np.testing.assert_allclose(blocked.prediction, one.prediction, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blocked.ensemble_logits, one.ensemble_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocked.value, one.value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["weighted", "none", "feed_prediction"])
def test_make_predict_runs_large_batches_block_by_block(name):
    """`make_predict` splits a batch of several blocks at the host (carrying the pools); same result as one
    pass, and a feed_prediction model (one scan over rows) is never split."""
    from salesrl_jax.models.predict import make_predict

    graphdef, params = nnx.split(SalesAgent(CONFIGS[name], D, rngs=nnx.Rngs(6)))
    inputs = flat_batch([7, 3, 12, 5, 9, 4, 6, 2, 11, 5])  # 64 rows: blocks of 16 cut conversations
    one = make_predict(graphdef, block_rows=64)(params, inputs)
    by_block = make_predict(graphdef, block_rows=16)
    blocked = by_block(jax.device_put(params, jax.devices()[0]), inputs)  # committed, as restored checkpoints are
    for got, want in zip(blocked, one):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if not CONFIGS[name].feed_prediction:  # four blocks, one compiled program (the first carry is like the rest)
        assert by_block.programs["block"]._cache_size() == 1
    if CONFIGS[name].feed_prediction:
        with pytest.raises(ValueError, match="feed_prediction"):
            nnx.merge(graphdef, params).predict_block(inputs, nnx.merge(graphdef, params).encoder.init_carry())


def test_models_of_one_structure_share_one_compiled_predictor():
    """`shared_predict`: two models that differ only in their parameters (two seeds) get the same predictor and run
    through one compiled program, with their own parameters' predictions; another structure gets its own."""
    from salesrl_jax.models.predict import make_predict, shared_predict

    (g0, p0), (g1, p1) = (nnx.split(SalesAgent(CONFIGS["weighted"], D, rngs=nnx.Rngs(s))) for s in (1, 2))
    inputs = flat_batch([5, 3, 4])
    predict = shared_predict(g0)
    assert shared_predict(g1) is predict and shared_predict(nnx.split(
        SalesAgent(CONFIGS["none"], D, rngs=nnx.Rngs(1)))[0]) is not predict
    for params in (p0, p1):
        np.testing.assert_allclose(predict(params, inputs)[0], make_predict(g0)(params, inputs)[0], rtol=1e-6)
    assert predict.programs["whole"]._cache_size() == 1
    assert not np.allclose(predict(p0, inputs)[0], predict(p1, inputs)[0])  # each its own parameters


@pytest.mark.parametrize("pool_features", [True, False])
def test_the_customer_pool_holds_the_customers_turn_features_through_the_reps_turns(pool_features):
    """With ``pool_features`` each history pool averages ``[u_i, f_i]`` (the features the config selects): the
    customer pool's feature channels at every turn are the recency-weighted mean of the customer's turns' features so
    far (by hand; importance off, so each turn weighs 1), unchanged by a rep's turn; without it the pools hold the text
    vector alone."""
    config = tiny_model(learned_importance=False, pool_features=pool_features)
    agent = SalesAgent(config, D, rngs=nnx.Rngs(5))
    inputs = flat_batch([7])
    customer = np.array([0, 1, 0, 0, 1, 0, 1], np.float32)  # the rep opens; two rep turns in a row
    inputs = inputs.replace(features=inputs.features.at[:, 0].set(customer))
    context = np.asarray(agent.encoder.context(inputs))
    encoder, h = agent.encoder, config.turn_dim
    chosen = list(encoder.feature_index)
    assert list(encoder.pooled_features) == (chosen if pool_features else [])
    selected = np.asarray(inputs.features)[:, chosen]
    v = encoder.pool_width
    assert v == h + (len(chosen) if pool_features else 0)
    assert context.shape[1] == h + v * encoder.num_decays * encoder.num_groups + len(encoder.feature_index)
    if not pool_features:
        return
    rates = np.asarray(jax.nn.sigmoid(encoder.decay_logit[...]))
    for k, r in enumerate(rates):
        start = h + (k * encoder.num_groups + 1) * v + h  # decay k, the customer group, its feature channels
        for n in range(1, 7):  # from the first customer turn on
            weights = r ** (n - np.arange(n + 1)) * customer[:n + 1]
            expected = weights @ selected[:n + 1] / weights.sum()
            np.testing.assert_allclose(context[n, start:start + len(chosen)], expected,
                                       rtol=1e-5, atol=1e-5)
    # A rep's turn leaves the customer pool as it was (turns 3 and 4 follow the customer's turn 2).
    pools = slice(h, h + v * encoder.num_decays * encoder.num_groups)
    per_pool = context[:, pools].reshape(7, encoder.num_decays, encoder.num_groups, v)
    np.testing.assert_allclose(per_pool[2, :, 1], per_pool[1, :, 1], rtol=1e-6)
    np.testing.assert_allclose(per_pool[3, :, 1], per_pool[1, :, 1], rtol=1e-6)

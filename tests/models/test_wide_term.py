"""The wide term of the n-gram path (`ModelConfig.wide_text`): its maths, its causality, its batch, block,
streaming and int8 forms, and runs saved before it existed."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.infer.quantize import quantize_params
from salesrl_jax.models.agent import SalesAgent
from salesrl_jax.models.inputs import GramBags, TurnInputs
from tests.conftest import predict_in_blocks, tiny_model

BUCKETS, K = 512, 6
LENGTHS = [7, 3, 12, 5, 9, 4, 6, 2, 11, 5]  # 64 rows: blocks of 16 cut conversations


def wide_agent(seed: int = 0, **overrides) -> SalesAgent:
    """An n-gram agent whose wide weights, idf and bag are not at their (zero / one) initial values."""
    agent = SalesAgent(tiny_model(**overrides), BUCKETS, rngs=nnx.Rngs(seed), sparse_text=True)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    bag = agent.encoder.project
    bag.kernel.value = jax.random.normal(keys[0], (BUCKETS, 16))
    bag.wide.value = 0.3 * jax.random.normal(keys[1], (BUCKETS,))
    bag.idf.value = jax.random.uniform(keys[2], (BUCKETS,), minval=1.0, maxval=4.0).at[0].set(0.0)
    return agent


def batch(lengths, seed: int = 0) -> tuple[TurnInputs, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ids = rng.integers(1, BUCKETS, (n, K)).astype(np.int32)
    ids[:, -1] = 0  # a padding slot in every turn
    counts = rng.integers(1, 4, (n, K)).astype(np.uint16)
    starts = np.zeros(n, bool)
    starts[np.cumsum([0] + lengths[:-1])] = True
    features = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    return (TurnInputs(GramBags(jnp.asarray(ids), jnp.asarray(counts)), jnp.asarray(features), jnp.asarray(starts),
                       jnp.ones(n, bool)), ids, counts)


def test_the_logit_is_the_deep_logit_plus_the_running_mean_of_the_turns_wide_scores():
    """logit_t = deep_t + (1/t) sum_{i<=t} sum_j (1 + log c_ij) idf[b_ij] w[b_ij], computed here by hand."""
    agent = wide_agent()
    inputs, ids, counts = batch(LENGTHS)
    out = agent.predict(inputs)
    bag = agent.encoder.project
    idf, w = np.asarray(bag.idf.value, np.float64), np.asarray(bag.wide.value, np.float64)
    omega = np.sum(np.where(ids > 0, (1 + np.log(counts)) * idf[ids] * w[ids], 0.0), axis=1)
    expected, start = [], 0
    for n in LENGTHS:
        expected.extend(np.cumsum(omega[start:start + n]) / np.arange(1, n + 1))
        start += n
    deep = agent.policy(out.state)[0]  # out.state is the deep state
    assert out.state.shape == (sum(LENGTHS), 16)
    np.testing.assert_allclose(np.asarray(out.logit - deep), expected, rtol=1e-4, atol=1e-4)
    assert np.std(expected) > 0.5  # the term is not negligible here
    # Every ensemble member adds the same term.
    members = jax.vmap(lambda p: nnx.merge(nnx.split(agent.ensemble.heads)[0], p)(out.state))(
        nnx.split(agent.ensemble.heads)[1])
    np.testing.assert_allclose(np.asarray(out.ensemble_logits - members), np.broadcast_to(expected, members.shape),
                               rtol=1e-4, atol=1e-4)


def test_a_prediction_reads_only_the_turns_so_far():
    agent = wide_agent(1)
    inputs, ids, counts = batch([10])
    base = np.asarray(agent.predict(inputs).prediction)
    rng = np.random.default_rng(3)
    for t in range(9):
        changed = np.array(ids)
        changed[t + 1:] = rng.integers(1, BUCKETS, (9 - t, K))
        after = np.asarray(agent.predict(inputs.replace(embeddings=GramBags(jnp.asarray(changed),
                                                                             inputs.embeddings.counts))).prediction)
        np.testing.assert_array_equal(after[:t + 1], base[:t + 1])
        assert not np.allclose(after[t + 1:], base[t + 1:])


@pytest.mark.parametrize("history", ["weighted", "none"])
def test_blocks_and_streaming_equal_one_pass(history):
    agent = wide_agent(2, history=history)
    inputs, _, _ = batch(LENGTHS)
    one = agent.predict(inputs)
    blocked = predict_in_blocks(agent, inputs, 16)
    np.testing.assert_allclose(blocked.logit, one.logit, rtol=1e-5, atol=1e-5)
    step = jax.jit(agent.step)
    streamed, start = [], 0
    for n in LENGTHS:
        carry = agent.encoder.init_carry()
        for i in range(start, start + n):
            row = jax.tree.map(lambda x: x[i], inputs)
            carry, out = step(carry, row.embeddings, row.features)
            streamed.append(float(out.logit))
        start += n
    np.testing.assert_allclose(streamed, one.logit, rtol=1e-5, atol=1e-5)


def test_int8_keeps_the_wide_weights_in_float():
    agent = wide_agent(3)
    graphdef, params = nnx.split(agent)
    q_graphdef, q_params = quantize_params(params, agent.config, BUCKETS)
    wide = nnx.to_pure_dict(q_params)["encoder"]["project"]["wide"]
    assert wide.dtype == jnp.float32
    np.testing.assert_array_equal(wide, agent.encoder.project.wide.value)
    inputs, _, _ = batch(LENGTHS)
    exact = agent.predict(inputs).prediction
    int8 = nnx.merge(q_graphdef, q_params).predict(inputs).prediction
    assert float(jnp.max(jnp.abs(exact - int8))) < 0.03


def test_dense_embeddings_have_no_wide_term():
    agent = SalesAgent(tiny_model(), 32, rngs=nnx.Rngs(0))
    assert not agent.encoder.wide and agent.encoder.init_carry().wide is None
    assert "wide" not in nnx.to_pure_dict(nnx.state(agent))["encoder"]["project"]


def test_a_run_saved_before_the_wide_term_loads_without_one(ngram_run_without_wide):
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(ngram_run_without_wide)
    assert model.config.model.wide_text is False
    assert "wide" not in nnx.to_pure_dict(model.params)["encoder"]["project"]


@pytest.fixture(scope="module")
def ngram_run_without_wide(tiny_archive, tmp_path_factory):
    """A trained n-gram run whose saved config, like those written before the wide term, has no ``wide_text``."""
    import dataclasses

    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.run.checkpoints import find_checkpoint
    from salesrl_jax.run.config import PPOConfig
    from salesrl_jax.train.loop import train_and_evaluate
    from tests.conftest import tiny_config

    root = tmp_path_factory.mktemp("no-wide")
    ngrams = EmbedderConfig(kind="ngrams", dim=BUCKETS, max_grams=32)
    embed_archive(tiny_archive, root / "arrays", ngrams, chunk_conversations=300, workers=1)
    config = tiny_config(root / "arrays", embedder=ngrams, model=tiny_model(wide_text=False),
                         pretrain=dataclasses.replace(tiny_config(root).pretrain, epochs=1),
                         ppo=PPOConfig(enabled=False))
    train_and_evaluate(config, root / "run")
    (meta_path,) = find_checkpoint(root / "run").glob("*/meta/metadata")  # the orbax JSON item of the one step
    meta = json.loads(meta_path.read_text())
    del meta["config"]["model"]["wide_text"]
    meta_path.write_text(json.dumps(meta))
    return root / "run"

"""The wide term of the n-gram path (`ModelConfig.wide_text`): its maths, its causality, its batch, block,
streaming and int8 forms, and runs saved before it existed."""

import json
from typing import NamedTuple

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
WIDE_MAP = (0.2, 0.45, -0.3)  # (alpha, beta, shift): a gain that grows with the turns seen
LENGTHS = [7, 3, 12, 5, 9, 4, 6, 2, 11, 5]  # 64 rows: blocks of 16 cut conversations


def wide_agent(seed: int = 0, **overrides) -> SalesAgent:
    """An n-gram agent whose wide weights, idf and bag are not at their (zero / one) initial values."""
    agent = SalesAgent(tiny_model(**overrides), BUCKETS, rngs=nnx.Rngs(seed), sparse_text=True)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), 4)
    bag = agent.encoder.project
    bag.kernel.value = jax.random.normal(keys[0], (BUCKETS, 16))
    bag.wide.value = 0.3 * jax.random.normal(keys[1], (BUCKETS,))
    bag.wide_customer.value = 0.3 * jax.random.normal(keys[3], (BUCKETS,))
    bag.wide_map.value = jnp.asarray(WIDE_MAP, jnp.float32)
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
    features[:, FEATURE_NAMES.index("is_customer")] = rng.integers(0, 2, n)  # who speaks: 0 or 1
    return (TurnInputs(GramBags(jnp.asarray(ids), jnp.asarray(counts)), jnp.asarray(features), jnp.asarray(starts),
                       jnp.ones(n, bool)), ids, counts)


def test_the_logit_is_the_deep_logit_plus_the_gained_running_mean_of_the_turns_wide_scores():
    """logit_t = deep_t + max(alpha + beta log t, 0) (m_t + shift), m_t = (1/t) sum_{i<=t} sum_j (1 + log c_ij)
    idf[b_ij] (w[b_ij] + customer_i u[b_ij]), computed here by hand."""
    agent = wide_agent()
    inputs, ids, counts = batch(LENGTHS)
    out = agent.predict(inputs)
    bag = agent.encoder.project
    idf, w = np.asarray(bag.idf.value, np.float64), np.asarray(bag.wide.value, np.float64)
    u = np.asarray(bag.wide_customer.value, np.float64)
    customer = np.asarray(inputs.features)[:, FEATURE_NAMES.index("is_customer")]
    assert 0 < customer.mean() < 1
    weight = w[ids] + customer[:, None] * u[ids]
    omega = np.sum(np.where(ids > 0, (1 + np.log(counts)) * idf[ids] * weight, 0.0), axis=1)
    expected, start = [], 0
    alpha, beta, shift = WIDE_MAP
    for n in LENGTHS:
        t = np.arange(1, n + 1)
        gain = np.maximum(alpha + beta * np.log(t), 0.0)
        expected.extend(gain * (np.cumsum(omega[start:start + n]) / t + shift))
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


def test_training_losses_see_the_deep_model_alone():
    """`without_wide_term` zeroes the gain: what the supervised loss and PPO train (the wide term's weights were fitted
    on the training turns, where they are more confident than anywhere else)."""
    from salesrl_jax.models.bag import without_wide_term

    agent = wide_agent(4)
    inputs, _, _ = batch(LENGTHS)
    full = agent.predict(inputs)
    graphdef, params = nnx.split(agent)
    deep = without_wide_term(nnx.merge(graphdef, params)).predict(inputs)
    np.testing.assert_allclose(np.asarray(deep.logit), np.asarray(agent.policy(full.state)[0]), rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(full.logit - deep.logit))) > 0.1
    np.testing.assert_array_equal(np.asarray(agent.encoder.project.wide_map.value), np.asarray(WIDE_MAP, np.float32))


def test_the_training_loss_ignores_the_wide_term():
    from salesrl_jax.train.hyperparams import Hyperparams
    from salesrl_jax.train.supervised import SupervisedBatch, supervised_loss
    from tests.conftest import tiny_config

    agent = wide_agent(5)
    inputs, _, _ = batch(LENGTHS)
    graphdef, params = nnx.split(agent)
    labels = jnp.asarray(np.repeat(np.arange(len(LENGTHS)) % 2, LENGTHS).astype(np.float32))
    data = SupervisedBatch(inputs, labels, jnp.ones((sum(LENGTHS), agent.config.ensemble_size)))
    hp = Hyperparams.pretrain(tiny_config("unused"))
    key = jax.random.PRNGKey(0)
    loss, _ = supervised_loss(params, graphdef, data, hp, key)
    other = wide_agent(5)
    other.encoder.project.wide.value = -other.encoder.project.wide.value  # another wide term entirely
    other_loss, _ = supervised_loss(nnx.split(other)[1], graphdef, data, hp, key)
    assert float(loss) == pytest.approx(float(other_loss), rel=1e-6)


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
    project = nnx.to_pure_dict(q_params)["encoder"]["project"]
    assert project["wide"].dtype == jnp.float32
    np.testing.assert_array_equal(project["wide"], agent.encoder.project.wide.value)
    np.testing.assert_array_equal(project["wide_customer"], agent.encoder.project.wide_customer.value)
    np.testing.assert_array_equal(project["wide_map"], agent.encoder.project.wide_map.value)
    inputs, _, _ = batch(LENGTHS)
    exact = agent.predict(inputs).prediction
    int8 = nnx.merge(q_graphdef, q_params).predict(inputs).prediction
    assert float(jnp.max(jnp.abs(exact - int8))) < 0.03


def test_dense_embeddings_have_no_wide_term():
    agent = SalesAgent(tiny_model(), 32, rngs=nnx.Rngs(0))
    assert not agent.encoder.wide and agent.encoder.init_carry().wide is None
    assert "wide" not in nnx.to_pure_dict(nnx.state(agent))["encoder"]["project"]


def test_a_run_saved_before_the_wide_term_and_the_feature_pools_loads_without_them(ngram_run_without_wide):
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(ngram_run_without_wide)
    assert model.config.model.wide_text is False and model.config.model.pool_features is False
    assert model.config.model.bag_basis == "random" and model.config.model.bag_trainable  # as every bag was then
    assert "wide" not in nnx.to_pure_dict(model.params)["encoder"]["project"]
    agent = nnx.merge(model.graphdef, model.params)
    assert agent.encoder.pool_width == agent.encoder.turn_width  # the hidden layer's saved kernel fits the old width


@pytest.fixture(scope="module")
def ngram_run_without_wide(tiny_archive, tmp_path_factory):
    """A trained n-gram run whose saved config, like those written before the wide term, the feature pools and the
    bag's basis, has no ``wide_text``, ``pool_features``, ``bag_basis`` or ``bag_trainable``."""
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
    config = tiny_config(root / "arrays", embedder=ngrams, model=tiny_model(wide_text=False, pool_features=False),
                         pretrain=dataclasses.replace(tiny_config(root).pretrain, epochs=1),
                         ppo=PPOConfig(enabled=False))
    train_and_evaluate(config, root / "run")
    (meta_path,) = find_checkpoint(root / "run").glob("*/meta/metadata")  # the orbax JSON item of the one step
    meta = json.loads(meta_path.read_text())
    for field in ("wide_text", "pool_features", "bag_basis", "bag_trainable"):
        del meta["config"]["model"][field]
    meta_path.write_text(json.dumps(meta))
    return root / "run"


@pytest.mark.parametrize("absent", [("wide_map", "wide_customer"), ("wide_customer",)], ids=["session17", "session18"])
def test_runs_saved_before_a_wide_statistic_existed_load_and_serve_what_they_served(ngram_trained, tmp_path, absent):
    """Runs of session 17 saved the wide weights alone (no ``wide_map``, no ``wide_customer``), runs of sessions 18-19
    without ``wide_customer``: they load with the identity map (the running mean itself) and ``u = 0``."""
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.models.bag import IDENTITY_WIDE_MAP, Statistic
    from salesrl_jax.models.predict import make_predict, predict_arrays
    from salesrl_jax.run.checkpoints import export_model
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(ngram_trained)
    defaults = {"wide_map": jnp.asarray(IDENTITY_WIDE_MAP, jnp.float32),
                "wide_customer": jnp.zeros_like(model.params["encoder"]["project"]["wide"][...])}
    old = jax.tree.map(lambda x: x, model.params)
    expected = jax.tree.map(lambda x: x, model.params)
    for name in absent:
        del old["encoder"]["project"][name]
        expected["encoder"]["project"][name] = Statistic(defaults[name])
    meta = {k: v for k, v in model.meta.items() if k != "params_sha256"}
    export_model(tmp_path / "old", old, meta)
    loaded = TrainedModel.load(tmp_path / "old")
    for name in absent:
        np.testing.assert_array_equal(np.asarray(loaded.params["encoder"]["project"][name][...]),
                                      np.asarray(defaults[name]))
    arrays = TurnArrays.open(model.config.data.train)
    predict = make_predict(model.graphdef)
    np.testing.assert_allclose(predict_arrays(predict, loaded.params, arrays, rows=512).prediction,
                               predict_arrays(predict, expected, arrays, rows=512).prediction, rtol=1e-6)


def test_recalibration_scales_the_wide_gain_and_refuses_a_slope_that_would_switch_it_off():
    from salesrl_jax.run.recalibration import PlattScaling, recalibrated_params

    agent = wide_agent(6)
    inputs, _, _ = batch(LENGTHS)
    graphdef, params = nnx.split(agent)
    before = agent.predict(inputs).logit
    scaled = nnx.merge(graphdef, recalibrated_params(params, agent.config, PlattScaling(0.5, 0.2))).predict(inputs)
    np.testing.assert_allclose(np.asarray(scaled.logit), 0.5 * np.asarray(before) + 0.2, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="wide term off"):
        recalibrated_params(params, agent.config, PlattScaling(-0.5, 0.0))


class TrainingCase(NamedTuple):
    """What the loss tests feed: an agent, a batch of `LENGTHS`, alternating outcomes, and offsets."""

    agent: SalesAgent
    inputs: TurnInputs
    labels: np.ndarray  # [n] float32
    offset: np.ndarray  # [n] float32, NaN every ``nan_every``-th row (a turn without one)


def training_case(agent_seed: int, offset_seed: int, nan_every: int, **overrides) -> TrainingCase:
    n = sum(LENGTHS)
    offset = np.random.default_rng(offset_seed).normal(0.0, 1.5, n).astype(np.float32)
    offset[::nan_every] = np.nan
    return TrainingCase(wide_agent(agent_seed, **overrides), batch(LENGTHS)[0],
                        np.repeat(np.arange(len(LENGTHS)) % 2, LENGTHS).astype(np.float32), offset)


def test_the_training_loss_adds_each_turns_offset_to_the_deep_logits():
    """With ``SupervisedBatch.offset`` (the wide term's out-of-fold logit of each training turn) the policy's loss is
    the cross-entropy of deep + offset, the heads' too; a NaN offset (a turn without one) adds 0."""
    import optax

    from salesrl_jax.models.bag import without_wide_term
    from salesrl_jax.train.hyperparams import Hyperparams
    from salesrl_jax.train.supervised import SupervisedBatch, supervised_loss
    from tests.conftest import tiny_config

    agent, inputs, labels, offset = training_case(6, 3, 7)
    graphdef, params = nnx.split(agent)
    n = sum(LENGTHS)
    labels = jnp.asarray(labels)
    heads = agent.config.ensemble_size
    data = SupervisedBatch(inputs, labels, jnp.ones((n, heads)), jnp.asarray(offset))
    hp = Hyperparams.pretrain(tiny_config("unused")).replace(last_turn_share=jnp.asarray(0.0))
    _, metrics = supervised_loss(params, graphdef, data, hp, jax.random.PRNGKey(0))
    deep = without_wide_term(nnx.merge(graphdef, params)).predict(inputs)
    added = np.nan_to_num(offset, nan=0.0)
    expected = optax.sigmoid_binary_cross_entropy(deep.logit + added, labels).mean()
    assert float(metrics.policy_bce) == pytest.approx(float(expected), rel=1e-5)
    heads_expected = optax.sigmoid_binary_cross_entropy(deep.ensemble_logits + added, labels[None]).mean()
    assert float(metrics.ensemble_bce) == pytest.approx(float(heads_expected), rel=1e-5)
    # Without offsets the loss is the deep model's alone, and differs.
    _, plain = supervised_loss(params, graphdef, data._replace(offset=None), hp, jax.random.PRNGKey(0))
    assert abs(float(plain.policy_bce) - float(expected)) > 1e-3


def test_ppo_acts_and_learns_on_the_deep_logits_plus_each_rows_offset():
    """PPO (on by default for large sets) trains the deep heads beside the same out-of-fold offsets as pretraining:
    the rollout's estimate is sigmoid(deep + offset), and the loss's policy reads deep + offset too (a zero
    importance ratio: the log-probabilities of the rollout's own actions match)."""
    from salesrl_jax.models.bag import without_wide_term
    from salesrl_jax.train.hyperparams import Hyperparams
    from salesrl_jax.train.ppo import PPOBatch, ppo_loss, rollout
    from tests.conftest import tiny_config

    agent, inputs, labels, offset = training_case(7, 8, 5)
    graphdef, params = nnx.split(agent)
    n = sum(LENGTHS)
    heads = agent.config.ensemble_size
    one = jax.tree.map(lambda x: x[None], inputs)  # one minibatch
    ppo = PPOBatch(one, jnp.asarray(labels[None]), jnp.ones((1, n, heads)), jnp.asarray(offset[None]))
    hp = Hyperparams.ppo(tiny_config("unused"))
    deep = without_wide_term(nnx.merge(graphdef, params))
    roll = rollout(deep, ppo, hp, jax.random.PRNGKey(1), "brier")
    expected = jax.nn.sigmoid(deep.predict(inputs).logit + np.nan_to_num(offset, nan=0.0))
    np.testing.assert_allclose(np.asarray(roll.prediction[0]), np.asarray(expected), rtol=1e-5, atol=1e-6)
    take = jax.tree.map(lambda x: x[0], roll)
    _, metrics = ppo_loss(params, graphdef, inputs, ppo.labels[0], ppo.bootstrap[0], take, hp, ppo.offset[0])
    assert float(metrics.approx_kl) == pytest.approx(0.0, abs=1e-5)
    _, without = ppo_loss(params, graphdef, inputs, ppo.labels[0], ppo.bootstrap[0], take, hp)
    assert float(without.approx_kl) > 1e-3  # the policy without the offsets is another policy


def test_with_prediction_feedback_training_feeds_forward_what_the_deployed_model_would():
    """``model.feed_prediction`` on an n-gram model: a training row reads the previous row's prediction with the wide
    term's stand-in (the offset) included, as the deployed model's heads include the term. Pretraining's teacher
    forcing shifts ``sigmoid(deep + offset)`` of its first pass; PPO's rollout feeds each row its own estimate of the
    row before, and its loss replays the same states (an importance ratio of 1)."""
    import optax

    from salesrl_jax.models.agent import previous_predictions
    from salesrl_jax.models.bag import without_wide_term
    from salesrl_jax.train.hyperparams import Hyperparams
    from salesrl_jax.train.ppo import PPOBatch, ppo_loss, rollout
    from salesrl_jax.train.supervised import SupervisedBatch, supervised_loss
    from tests.conftest import tiny_config

    agent, inputs, labels, offset = training_case(9, 10, 7, feed_prediction=True)
    graphdef, params = nnx.split(agent)
    n = sum(LENGTHS)
    added = np.nan_to_num(offset, nan=0.0)
    heads = agent.config.ensemble_size
    deep = without_wide_term(nnx.merge(graphdef, params))

    data = SupervisedBatch(inputs, jnp.asarray(labels), jnp.ones((n, heads)), jnp.asarray(offset))
    hp = Hyperparams.pretrain(tiny_config("unused")).replace(last_turn_share=jnp.asarray(0.0))
    _, metrics = supervised_loss(params, graphdef, data, hp, jax.random.PRNGKey(0))
    first = deep(inputs, jnp.full((n,), 0.5))
    fed = previous_predictions(jax.nn.sigmoid(first.logit + added), inputs.starts)
    expected = optax.sigmoid_binary_cross_entropy(deep(inputs, fed).logit + added, labels).mean()
    assert float(metrics.policy_bce) == pytest.approx(float(expected), rel=1e-5)
    unfed = previous_predictions(first.prediction, inputs.starts)  # the deep heads' alone: what it fed before
    stale = optax.sigmoid_binary_cross_entropy(deep(inputs, unfed).logit + added, labels).mean()
    assert abs(float(stale) - float(expected)) > 1e-4

    one = jax.tree.map(lambda x: x[None], inputs)
    ppo = PPOBatch(one, jnp.asarray(labels[None]), jnp.ones((1, n, heads)), jnp.asarray(offset[None]))
    hp = Hyperparams.ppo(tiny_config("unused"))
    roll = rollout(deep, ppo, hp, jax.random.PRNGKey(1), "brier")
    prediction, prev = np.asarray(roll.prediction[0]), np.asarray(roll.prev_prediction[0])
    starts = np.asarray(inputs.starts)
    np.testing.assert_allclose(prev[~starts], prediction[np.flatnonzero(~starts) - 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prev[starts], 0.5)
    take = jax.tree.map(lambda x: x[0], roll)
    _, replay = ppo_loss(params, graphdef, inputs, ppo.labels[0], ppo.bootstrap[0], take, hp, ppo.offset[0])
    assert float(replay.approx_kl) == pytest.approx(0.0, abs=1e-5)


def test_every_reader_of_the_validation_split_sees_the_wide_term_out_of_fold(ngram_trained, ngram_arrays, tiny_arrays,
                                                                              tmp_path):
    """The wide term's weights read the validation conversations too (cross-fitted), so whatever predicts the run's own
    validation split moves each turn's logit to the out-of-fold weights' (`cross_fitted`): the shift by hand; the log
    loss training logged for its best checkpoint is that of the cross-fitted predictions, not the in-sample ones, and
    the recalibration's fit, the confidence module's fit and `salesrl evaluate --split valid` read the same; other
    data, splits and seeds are left alone."""
    from pathlib import Path

    from salesrl_jax import metrics
    from salesrl_jax.arrays.store import TurnArrays
    from salesrl_jax.eval.evaluate import predict_with_confidence
    from salesrl_jax.models.predict import HOLDOUT, cross_fitted, predict_arrays, shared_predict, wide_map_of
    from salesrl_jax.run.checkpoints import find_checkpoint
    from salesrl_jax.run.recalibration import fit_recalibration
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(find_checkpoint(ngram_trained, served=False))
    record, data = model.meta[HOLDOUT], model.config.data
    assert Path(record["data"]) == Path(ngram_arrays).resolve() and record["turns"]
    arrays = TurnArrays.open(ngram_arrays)
    raw = predict_arrays(shared_predict(model.graphdef), model.params, arrays, split="valid",
                         valid_fraction=data.valid_fraction, split_seed=data.split_seed)
    wide_map = wide_map_of(model.params)
    pred = cross_fitted(raw, record, wide_map, arrays, "valid", data.valid_fraction, data.split_seed)
    assert set(record["turns"]) == set(raw.ids)
    for i in range(0, len(raw.prediction), 7):
        t, p = raw.turn_index[i], float(raw.prediction[i])
        z = np.log(p / (1 - p)) + max(wide_map[0] + wide_map[1] * np.log(t + 1), 0) * record["turns"][
            raw.ids[raw.conversation[i]]][t]
        np.testing.assert_allclose(pred.prediction[i], 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)
    assert np.abs(pred.prediction - raw.prediction).max() > 1e-3
    logged = model.meta["valid"]["log_loss"]
    assert metrics.log_loss(pred.prediction, pred.outcome) == pytest.approx(logged, rel=1e-4)
    assert metrics.log_loss(raw.prediction, raw.outcome) != pytest.approx(logged, rel=1e-4)
    _, fit = fit_recalibration(model, None, "valid", "all", "temperature", warn_few=False)
    assert fit["before"]["log_loss"] == pytest.approx(logged, rel=1e-4)
    evaluated, _ = predict_with_confidence(model, model.graphdef, model.params, ngram_arrays, "valid", None)
    np.testing.assert_allclose(evaluated.prediction, pred.prediction, rtol=1e-6)  # `salesrl evaluate --split valid`
    # The confidence module's fit (`salesrl confidence`) reads them so too: what its calibration is handed.
    import shutil

    from salesrl_jax.eval import confidence_fit

    handed = {}

    def calibrate(shell, prediction, *rest):
        handed["prediction"] = np.asarray(prediction)
        return real_calibrate(shell, prediction, *rest)

    real_calibrate = confidence_fit.calibrate
    copy = tmp_path / "model-copy"  # the fit saves beside the model: leave the shared fixture's untouched
    shutil.copytree(model.directory, copy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(confidence_fit, "calibrate", calibrate)
        confidence_fit.fit_confidence(copy)
    np.testing.assert_allclose(handed["prediction"], pred.prediction, rtol=1e-5, atol=1e-6)
    # The same arrays moved elsewhere still match (by their parts' digests); other arrays, splits and seeds do not.
    shutil.copytree(ngram_arrays, tmp_path / "moved")
    moved = cross_fitted(raw, record, wide_map, TurnArrays.open(tmp_path / "moved"), "valid", data.valid_fraction,
                         data.split_seed)
    np.testing.assert_array_equal(moved.prediction, pred.prediction)
    other_arrays = TurnArrays.open(tiny_arrays)
    for other in ((other_arrays, "valid", data.split_seed), (arrays, "all", data.split_seed),
                  (arrays, "valid", data.split_seed + 1)):
        assert cross_fitted(raw, record, wide_map, other[0], other[1], data.valid_fraction, other[2]) is raw

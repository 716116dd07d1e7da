"""Training: jit == eager, no recompilation, an end-to-end run that learns, checkpoints and resumption."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax import metrics
from salesrl_jax.arrays import TurnArrays
from salesrl_jax.arrays import batches as batch_lib
from salesrl_jax.arrays.split import validation_mask
from salesrl_jax.models.agent import create_agent
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.config import ParallelConfig, PretrainConfig, with_overrides
from salesrl_jax.run.trained_model import TrainedModel
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.loop import TrainingDiverged, train_and_evaluate
from salesrl_jax.train.phases import ppo_batch as _ppo_batch
from salesrl_jax.train.phases import supervised_batch as _supervised_batch
from salesrl_jax.train.ppo import episode_ends, gae, gae_flat, make_ppo_update, ppo_loss, rollout
from salesrl_jax.train.state import adam_linear, adamw_schedule, average_decay, average_parameters, averaged, init_state
from salesrl_jax.train.supervised import make_train_chunk, supervised_loss
from tests.conftest import TINY_DIM, tiny_config


def _first_chunk(arrays_path, config):
    arrays = TurnArrays.open(arrays_path)
    plan = batch_lib.epoch_plan(arrays, "train", 0.2, 0, 0, 0, config.pretrain.rows_per_minibatch,
                                config.pretrain.chunk_minibatches)
    host = batch_lib.gather_packed(arrays.part(plan[0].part), plan[0].minibatches, config.pretrain.rows_per_minibatch,
                                   config.pretrain.chunk_minibatches)
    return arrays, _supervised_batch(host, plan[0].part, config.seed, config.model.ensemble_size)


def test_packing_covers_every_training_turn_once(tiny_arrays):
    arrays = TurnArrays.open(tiny_arrays)
    plan = batch_lib.epoch_plan(arrays, "train", 0.2, 0, 0, 0, 256, 4)
    seen = {}
    for chunk in plan:
        part = arrays.part(chunk.part)
        host = batch_lib.gather_packed(part, chunk.minibatches, 256, 4)
        assert host.valid.sum(1).max() <= 256 and host.starts.sum() == sum(len(m) for m in chunk.minibatches)
        for m in range(4):
            rows = host.index[m][host.valid[m]]
            np.testing.assert_array_equal(host.features[m][host.valid[m]], np.asarray(part.features)[rows])
            seen.setdefault(chunk.part, []).extend(rows.tolist())
    for p, rows in seen.items():
        part = arrays.part(p)
        train = ~validation_mask(part.ids, 0.2, 0)
        want = np.concatenate([np.arange(part.offsets[c], part.offsets[c + 1]) for c in np.flatnonzero(train)])
        assert sorted(rows) == sorted(want.tolist())


def test_supervised_loss_jit_equals_eager_and_compiles_once(tiny_arrays):
    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    hp = Hyperparams.pretrain(config)
    one = jax.tree.map(lambda x: x[0], batches)
    key = jax.random.PRNGKey(0)
    eager, _ = supervised_loss(params, graphdef, one, hp, key)
    jitted, _ = jax.jit(supervised_loss, static_argnums=1)(params, graphdef, one, hp, key)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)

    optimizer = adamw_schedule(1e-3, 100, 1e-4, 1.0)
    train_chunk = make_train_chunk(graphdef, optimizer)
    state = init_state(params, optimizer, 0)
    state, m = train_chunk(state, batches, hp)
    assert train_chunk._cache_size() == 1
    state, m = train_chunk(state, batches, hp.replace(ensemble_weight=jnp.asarray(0.5, jnp.float32)))  # new values, same program
    assert train_chunk._cache_size() == 1
    assert m.loss.shape == (config.pretrain.chunk_minibatches,) and np.all(np.isfinite(m.loss))


def test_all_padding_minibatches_do_not_move_the_parameters(tiny_arrays):
    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    empty = batches._replace(inputs=batches.inputs.replace(valid=jnp.zeros_like(batches.inputs.valid)))
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    optimizer = adamw_schedule(1e-3, 100, 1e-4, 1.0)
    train_chunk = make_train_chunk(graphdef, optimizer)
    state = init_state(params, optimizer, 0)
    moved, _ = train_chunk(state, batches, Hyperparams.pretrain(config))
    still, _ = train_chunk(moved, empty, Hyperparams.pretrain(config))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), still.params, moved.params))
    assert int(still.step) == int(moved.step)
    # Not computed at all (a part's last chunk is padded with such minibatches): inputs that would poison any
    # arithmetic leave the metrics zero and finite.
    poisoned = empty._replace(inputs=empty.inputs.replace(embeddings=jnp.full_like(empty.inputs.embeddings, jnp.nan)))
    after, metrics = train_chunk(moved, poisoned, Hyperparams.pretrain(config))
    assert all(np.all(np.asarray(m) == 0) for m in metrics)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), after.params, moved.params))


def test_the_running_average_keeps_the_capped_decay_of_each_step_and_leaves_integers_alone():
    """kept = prod_i min(decay, (1 + t_i) / (10 + t_i)) over the steps taken; ema <- kept ema + (1 - kept) p."""
    caps = [(1 + t) / (10 + t) for t in range(3, 6)]
    kept = average_decay(jnp.asarray(3), jnp.asarray(0.45), jnp.asarray(3), 8)  # 8 slots, 3 steps taken
    np.testing.assert_allclose(kept, np.prod([min(0.45, c) for c in caps]), rtol=1e-6)
    np.testing.assert_allclose(average_decay(jnp.asarray(1000), jnp.asarray(0.9), jnp.asarray(2), 4), 0.81, rtol=1e-6)
    assert float(average_decay(jnp.asarray(7), jnp.asarray(0.9), jnp.asarray(0), 4)) == 1.0  # no step: kept whole
    assert float(average_decay(jnp.asarray(50), jnp.asarray(0.0), jnp.asarray(2), 4)) == 0.0  # decay 0: none
    ema = {"w": jnp.array([1.0, -2.0]), "n": jnp.array(3, jnp.int32)}
    params = {"w": jnp.array([3.0, 0.0]), "n": jnp.array(7, jnp.int32)}
    out = average_parameters(ema, params, jnp.asarray(0.25))
    np.testing.assert_allclose(out["w"], [0.25 * 1.0 + 0.75 * 3.0, 0.25 * -2.0], rtol=1e-6)
    assert int(out["n"]) == 7 and out["n"].dtype == jnp.int32
    np.testing.assert_array_equal(average_parameters(ema, params, jnp.asarray(0.0))["w"], params["w"])


def test_a_chunk_averages_the_parameters_it_ends_with(tiny_arrays):
    """After a chunk the average moved toward its last parameters by the decay of the steps it took; the parameters
    are those of the same chunk without an average; with decay 0 the average is the parameters."""
    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    optimizer = adamw_schedule(1e-3, 100, 1e-4, 1.0)
    hp = Hyperparams.pretrain(config).replace(ema_decay=jnp.asarray(0.5, jnp.float32))
    start = init_state(params, optimizer, 0, average=True)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), start.ema, params))
    averaging = make_train_chunk(graphdef, optimizer, average=True)
    once, _ = averaging(start, batches, hp)
    twice, _ = averaging(once, batches, hp)
    plain, _ = make_train_chunk(graphdef, optimizer)(init_state(params, optimizer, 0), batches, hp)
    leaves = jax.tree.leaves
    for got, want in zip(leaves(once.params), leaves(plain.params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    n = batches.labels.shape[0]
    kept = average_decay(once.step, hp.ema_decay, jnp.asarray(n), n)
    want = average_parameters(once.ema, twice.params, kept)
    for got, expected in zip(leaves(twice.ema), leaves(want)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(leaves(twice.ema), leaves(twice.params)))
    zero, _ = averaging(start, batches, hp.replace(ema_decay=jnp.asarray(0.0, jnp.float32)))
    for got, expected in zip(leaves(zero.ema), leaves(zero.params)):
        np.testing.assert_array_equal(got, expected)
    served = averaged(twice)
    assert served.ema is None and averaged(served) is served
    assert all(np.array_equal(a, b) for a, b in zip(leaves(served.params), leaves(twice.ema)))


def test_validation_and_the_best_checkpoint_read_the_averaged_parameters(tiny_arrays, tmp_path):
    """One epoch of pretraining with and without the average (decay 0): the parameters step alike, so the plain
    run's checkpoint holds the last step's parameters and the averaging run's must hold their average, the model
    its validation scored and its final model is."""
    from salesrl_jax.run.checkpoints import restore_params
    from salesrl_jax.train.validation import make_validator

    base = tiny_config(tiny_arrays)
    results, best = {}, {}
    arrays = TurnArrays.open(tiny_arrays)
    graphdef, like = create_agent(base.model, arrays.dim, 0)
    for name, decay in (("avg", 0.9), ("plain", 0.0)):
        config = with_overrides(base, {"pretrain.ema_decay": decay, "pretrain.epochs": 1, "ppo.enabled": False})
        results[name] = train_and_evaluate(config, tmp_path / name, progress=False)
        best[name] = restore_params(tmp_path / name / "checkpoints" / "best", like)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(best["avg"]), jax.tree.leaves(best["plain"])))
    validate = make_validator(graphdef, arrays, base)
    for name in results:
        scored = validate(best[name])["log_loss"]
        assert scored == pytest.approx(results[name].best_valid["log_loss"], rel=1e-5)
        assert scored == pytest.approx(results[name].valid["log_loss"], rel=1e-5)  # the final model is the best


@pytest.mark.parametrize("feed_prediction", [False, True])
def test_ppo_update_jit_equals_eager_and_compiles_once(tiny_arrays, feed_prediction):
    config = tiny_config(tiny_arrays)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, feed_prediction=feed_prediction))
    arrays = TurnArrays.open(tiny_arrays)
    plan = batch_lib.ppo_plan(arrays, 0.2, 0, 0, 2, 128, 2)
    batch = _ppo_batch(batch_lib.gather_packed(arrays.part(plan[0].part), plan[0].minibatches, 128, 2),
                       plan[0].part, config.seed, config.model.ensemble_size)
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    hp = Hyperparams.ppo(config)
    from flax import nnx

    roll = jax.jit(lambda p, b, k: rollout(nnx.merge(graphdef, p), b, hp, k, "brier"))(params, batch,
                                                                                       jax.random.PRNGKey(1))
    assert roll.action.shape == (2, 128)
    one = lambda x: x[0]  # noqa: E731
    args = (jax.tree.map(one, batch.inputs), batch.labels[0], batch.bootstrap[0], jax.tree.map(one, roll), hp)
    eager, _ = ppo_loss(params, graphdef, *args)
    jitted, _ = jax.jit(ppo_loss, static_argnums=1)(params, graphdef, *args)
    np.testing.assert_allclose(eager, jitted, rtol=1e-4)
    # At the rollout's own parameters the ratio is 1: the surrogate is -mean(normalised advantage) = 0.
    _, m = ppo_loss(params, graphdef, *args)
    assert abs(float(m.policy_loss)) < 1e-5 and float(m.approx_kl) < 1e-6 and float(m.clip_fraction) == 0.0
    optimizer = adam_linear(1e-4, 100, 0.5)
    update = make_ppo_update(graphdef, optimizer, epochs=2, reward_kind="brier")
    state = init_state(params, optimizer, 0)
    state, stats = update(state, batch, hp)
    state, stats = update(state, batch, hp.replace(clip_eps=jnp.asarray(0.1, jnp.float32)))
    assert update._cache_size() == 1
    assert int(stats.env_steps) == int(np.asarray(batch.inputs.valid).sum()) and np.isfinite(float(stats.train.loss))


def test_an_all_padding_ppo_minibatch_does_not_move_the_optimizer(tiny_arrays):
    """A PPO update whose minibatches are all padding (a part's last, short update) takes no optimizer step and
    reports finite training metrics; one with rows moves the parameters."""
    config = tiny_config(tiny_arrays)
    arrays = TurnArrays.open(tiny_arrays)
    plan = batch_lib.ppo_plan(arrays, 0.2, 0, 0, 1, 128, 2)
    batch = _ppo_batch(batch_lib.gather_packed(arrays.part(plan[0].part), plan[0].minibatches, 128, 2),
                       plan[0].part, config.seed, config.model.ensemble_size)
    empty = batch._replace(inputs=batch.inputs.replace(valid=jnp.zeros_like(batch.inputs.valid)))
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    optimizer = adam_linear(1e-3, 100, 0.5)
    update = make_ppo_update(graphdef, optimizer, epochs=2, reward_kind="brier")
    state = init_state(params, optimizer, 0)
    still, stats = update(state, empty, Hyperparams.ppo(config))
    same = lambda a, b: jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))  # noqa: E731
    assert same(still.params, state.params) and same(still.opt_state, state.opt_state)
    assert all(np.isfinite(np.asarray(m)) for m in stats.train)
    moved, _ = update(state, batch, Hyperparams.ppo(config))
    assert not same(moved.params, state.params)


def test_gae_over_packed_rows_equals_gae_per_episode(tiny_arrays):
    rng = np.random.default_rng(3)
    lengths = [4, 1, 6, 3]
    n = sum(lengths) + 2  # two padding rows
    starts = np.zeros(n, bool)
    starts[np.cumsum([0] + lengths[:-1])] = True
    valid = np.arange(n) < sum(lengths)
    inputs = TurnInputs(jnp.zeros((n, 1)), jnp.zeros((n, 1)), jnp.asarray(starts), jnp.asarray(valid))
    rewards, values = rng.normal(size=n) * valid, rng.normal(size=n) * valid
    adv, ret = gae_flat(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32), episode_ends(inputs),
                        0.9, 0.8)
    offset = 0
    for length in lengths:
        sl = slice(offset, offset + length)
        done = np.zeros(length)
        done[-1] = 1
        want, want_ret = gae(jnp.asarray(rewards[sl], jnp.float32), jnp.asarray(values[sl], jnp.float32),
                             jnp.asarray(done, jnp.float32), 0.9, 0.8)
        np.testing.assert_allclose(adv[sl], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ret[sl], want_ret, rtol=1e-5, atol=1e-6)
        offset += length


def test_end_to_end_run_beats_a_constant_predictor(tiny_arrays, tmp_path):
    config = tiny_config(tiny_arrays)
    result = train_and_evaluate(config, tmp_path / "run", progress=False)
    arrays = TurnArrays.open(tiny_arrays)
    model = TrainedModel.load(tmp_path / "run")
    pred = predict_arrays(make_predict(model.graphdef), model.params, arrays, split="valid", valid_fraction=0.2,
                          split_seed=0, rows=512)
    last = pred.last
    train_rate = np.mean([o for p in arrays.iter_parts() for o in np.asarray(p.outcome)])
    constant = metrics.brier(np.full(last.sum(), train_rate), pred.outcome[last])
    assert metrics.brier(pred.prediction[last], pred.outcome[last]) < constant - 0.03
    assert metrics.roc_auc(pred.prediction[last], pred.outcome[last]) > 0.7
    assert result.throughput["pretrain_turns_per_s"] > 0 and result.throughput["ppo_env_steps_per_s"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["event"] for r in log} == {"pretrain", "ppo", "validation", "done"}
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    # The saved config is the resolved one: the mesh this process had (one device, one slice per minibatch).
    resolved = dataclasses.replace(config, parallel=ParallelConfig(devices=1, segments=1))
    assert saved["model"]["ensemble_size"] == 3 and model.config == resolved


def _params_equal(a, b):
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b))


def test_interrupted_runs_resume_to_the_uninterrupted_result(tiny_arrays, tmp_path):
    base = tiny_config(tiny_arrays, checkpoint_every=1)
    config = dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, epochs=2),
                                 ppo=dataclasses.replace(base.ppo, updates=3))
    straight = train_and_evaluate(config, tmp_path / "straight", progress=False)
    # Stop twice: once mid-pretraining, once mid-PPO, resuming each time from the latest checkpoint.
    for stop in (2, 6):
        partial = train_and_evaluate(config, tmp_path / "resumed", progress=False, stop_after_chunks=stop)
        assert partial.valid == {}
    resumed = train_and_evaluate(config, tmp_path / "resumed", progress=False)
    assert resumed.resumed_from is not None
    assert resumed.valid == straight.valid
    a, b = TrainedModel.load(tmp_path / "straight"), TrainedModel.load(tmp_path / "resumed")
    assert _params_equal(a.params, b.params)
    # The metrics log holds each step once.
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["event"] in ("pretrain", "ppo")]
    assert seqs == sorted(set(seqs))


def test_rerunning_a_finished_supervised_only_run_changes_nothing(tiny_arrays, tmp_path):
    """A finished run without PPO holds the pretraining optimizer's state: a rerun restores it (it once looked
    for PPO's) and only validates again."""
    base = tiny_config(tiny_arrays)
    config = dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, epochs=2),
                                 ppo=dataclasses.replace(base.ppo, enabled=False))
    first = train_and_evaluate(config, tmp_path / "run", progress=False)
    again = train_and_evaluate(config, tmp_path / "run", progress=False)
    assert again.resumed_from["phase"] == "done" and again.valid == first.valid


def test_kill_9_mid_training_then_resume(tiny_arrays, tmp_path):
    config = tiny_config(tiny_arrays, checkpoint_every=1, ppo=dataclasses.replace(tiny_config(tiny_arrays).ppo, enabled=False))
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(
        "from salesrl_jax.run.config import TrainConfig\n"
        f"RAW = {json.loads(config.to_json())!r}\n"
        "def get_config():\n    return TrainConfig.from_dict(RAW)\n")
    exe = str(Path(sys.executable).with_name("salesrl"))
    workdir = tmp_path / "run"
    proc = subprocess.Popen([exe, "train", "--config", str(cfg_file), "--workdir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (log.exists() and log.read_text().count('"pretrain"') >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / "result.json").exists()
    done = subprocess.run([exe, "train", "--config", str(cfg_file), "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed at" in done.stdout
    straight = train_and_evaluate(config, tmp_path / "straight", progress=False)
    assert json.loads((workdir / "result.json").read_text())["valid"] == pytest.approx(straight.valid, rel=1e-6)


def test_a_nan_loss_stops_the_run_and_keeps_the_good_checkpoint(tiny_arrays, tmp_path):
    config = tiny_config(tiny_arrays, checkpoint_every=1)
    train_and_evaluate(config, tmp_path / "run", progress=False, stop_after_chunks=2)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "latest").iterdir())
    exploding = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, learning_rate=1e30))
    with pytest.raises(TrainingDiverged, match=r"at pretrain epoch 1, chunk \d+"):
        train_and_evaluate(exploding, tmp_path / "boom", progress=False)
    assert not (tmp_path / "boom" / "result.json").exists()
    # A different config in the same workdir is refused rather than mixed, the difference named.
    with pytest.raises(ValueError, match=r"different config \(pretrain.learning_rate 0.003 -> 1e\+30\)"):
        train_and_evaluate(exploding, tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "latest").iterdir()) == before


def test_a_run_saved_with_another_or_no_checkpoint_seconds_resumes_to_the_same_result(tiny_arrays, tmp_path):
    """`OPERATIONAL_FIELDS`: a field that changes how a run goes, not what it computes, does not stop a run from
    resuming, whether it was saved with another value or before the field existed; any other field the saved config
    lacks or sets otherwise still does, named."""
    config = tiny_config(tiny_arrays, ppo=dataclasses.replace(tiny_config(tiny_arrays).ppo, enabled=False))
    straight = train_and_evaluate(config, tmp_path / "straight", progress=False).valid
    for name, saved_as in (("absent", lambda raw: {k: v for k, v in raw.items() if k != "checkpoint_seconds"}),
                           ("other", lambda raw: {**raw, "checkpoint_seconds": 123.0})):
        run = tmp_path / name
        train_and_evaluate(config, run, progress=False, stop_after_chunks=2)
        latest = run / "checkpoints" / "latest"
        meta_file = latest / str(max(int(p.name) for p in latest.iterdir() if p.name.isdigit())) / "meta" / "metadata"
        meta = json.loads(meta_file.read_text())
        # The latest as a version before the field, or a run given another value, would have written it.
        meta_file.write_text(json.dumps({**meta, "config": {k: v for k, v in meta["config"].items()
                                                            if k != "eval_rows_per_minibatch"}}))
        with pytest.raises(ValueError, match=r"different config \(eval_rows_per_minibatch absent -> 512\)"):
            train_and_evaluate(config, run, progress=False)
        meta_file.write_text(json.dumps({**meta, "config": saved_as(meta["config"])}))
        resumed = train_and_evaluate(config, run, progress=False)
        assert resumed.resumed_from is not None and resumed.valid == straight, name


def test_numeric_hyperparameters_vmap_as_a_sweep(tiny_arrays):
    """One compiled chunk trains two ensemble-loss weights at once, equal to two separate runs."""
    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    optimizer = adamw_schedule(1e-3, 100, 1e-4, 1.0)
    train_chunk = make_train_chunk(graphdef, optimizer)
    state = init_state(params, optimizer, 0)
    base = Hyperparams.pretrain(config)
    weights = jnp.asarray([0.0, 2.0], jnp.float32)
    sweep = base.replace(ensemble_weight=weights)
    states = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    in_axes = (0, None, Hyperparams(0, None, None, None, None, None, None, None, None, None))
    swept, metrics = jax.vmap(train_chunk, in_axes=in_axes)(states, batches, sweep)
    for i, w in enumerate(weights):
        single, m = train_chunk(state, batches, base.replace(ensemble_weight=w))
        np.testing.assert_allclose(metrics.loss[i], m.loss, rtol=1e-4, atol=1e-6)
    assert not np.allclose(metrics.loss[0], metrics.loss[1])


def test_a_validation_split_that_holds_out_nothing_is_refused_with_the_fix(tiny_archive, tmp_path):
    """Arrays split off a larger set by the same seeded hash (a test set carved out first) hold none of
    their own held-out ids at a smaller fraction: refused up front, naming the seed to change."""
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.arrays.split import validation_mask
    from salesrl_jax.data.readers import read_conversations
    from salesrl_jax.data.writers import write_conversations
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.run.config import DataConfig
    from tests.conftest import TINY_DIM

    conversations = list(read_conversations(tiny_archive))[:200]
    test = validation_mask([c.id for c in conversations], 0.3, 0)
    dev = tmp_path / "dev.jsonl"
    write_conversations(dev, [c for c, held in zip(conversations, test) if not held])
    arrays = tmp_path / "dev-arrays"
    embed_archive(dev, arrays, EmbedderConfig(dim=TINY_DIM), chunk_conversations=200, workers=1)
    config = tiny_config(arrays, data=DataConfig(train=arrays, valid_fraction=0.2, split_seed=0))
    with pytest.raises(ValueError, match="holds out no labelled conversation.*pick another --data.split-seed"):
        train_and_evaluate(config, tmp_path / "run", progress=False)
    assert validation_mask(TurnArrays.open(arrays).part(0).ids, 0.2, 1).any()  # another seed holds some out


def test_a_best_checkpoint_chosen_on_few_conversations_is_warned_about(tiny_arrays, tmp_path):
    base = tiny_config(tiny_arrays)
    config = dataclasses.replace(base, data=dataclasses.replace(base.data, valid_fraction=0.05),
                                 pretrain=dataclasses.replace(base.pretrain, epochs=1),
                                 ppo=dataclasses.replace(base.ppo, enabled=False))
    with pytest.warns(UserWarning, match=r"chosen on \d+ validation conversations only"):
        train_and_evaluate(config, tmp_path / "run", progress=False)


def test_input_dropout_keeps_the_expected_input_and_is_off_by_default(tiny_arrays):
    from salesrl_jax.train.supervised import drop_inputs

    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    inputs = jax.tree.map(lambda x: x[0], batches.inputs)
    dropped = [drop_inputs(inputs, jnp.float32(0.5), jax.random.PRNGKey(i)).embeddings for i in range(200)]
    mean = jnp.mean(jnp.stack(dropped), axis=0)
    assert float(jnp.mean(jnp.abs(mean - inputs.embeddings.astype(jnp.float32)))) < 0.12 * float(  # MC error ~0.06
        jnp.mean(jnp.abs(inputs.embeddings.astype(jnp.float32))))
    assert float(jnp.mean(dropped[0] == 0)) > 0.4
    assert Hyperparams.pretrain(config).input_dropout == 0.0
    with pytest.raises(ValueError, match="input_dropout"):
        dataclasses.replace(config.pretrain, input_dropout=1.0)


def _conversation_of_rows(starts) -> np.ndarray:
    return np.cumsum(np.asarray(starts)) - 1


def test_text_dropout_takes_whole_conversations_text_away_and_keeps_their_features(tiny_arrays):
    from salesrl_jax.train.supervised import drop_text

    config = tiny_config(tiny_arrays)
    _, batches = _first_chunk(tiny_arrays, config)
    inputs = jax.tree.map(lambda x: x[0], batches.inputs)
    dropped = drop_text(inputs, jnp.float32(0.5), jax.random.PRNGKey(0))
    before = np.asarray(inputs.embeddings, np.float32)
    after = np.asarray(dropped.embeddings)
    gone = np.all(after == 0, axis=1)
    kept = np.all(after == before, axis=1)
    assert np.all(gone | kept)  # a turn loses all of its text or none of it, never rescaled
    valid = np.asarray(inputs.valid)
    conversation = _conversation_of_rows(inputs.starts)
    fate = {}
    for c, g in zip(conversation[valid], gone[valid]):
        assert fate.setdefault(c, g) == g  # every turn of a conversation shares its fate
    shares = [np.mean([np.all(np.asarray(drop_text(inputs, jnp.float32(0.5), jax.random.PRNGKey(k)).embeddings)[
        valid & (conversation == c)] == 0) for c in fate]) for k in range(20)]
    assert len(fate) >= 5 and 0.35 < np.mean(shares) < 0.65  # a coin per conversation
    np.testing.assert_array_equal(np.asarray(dropped.features), np.asarray(inputs.features))
    np.testing.assert_array_equal(np.asarray(drop_text(inputs, jnp.float32(0.0), jax.random.PRNGKey(0)).embeddings),
                                  before)
    assert PretrainConfig().text_dropout == 0.8  # the default recipe (docs/benchmarks.md, session 26)
    assert float(Hyperparams.pretrain(config).text_dropout) == pytest.approx(config.pretrain.text_dropout)
    with pytest.raises(ValueError, match="text_dropout"):
        dataclasses.replace(config.pretrain, text_dropout=1.0)


def test_the_text_dropout_program_serves_a_run_without_it(tiny_arrays):
    config = tiny_config(tiny_arrays)
    arrays, batches = _first_chunk(tiny_arrays, config)
    graphdef, params = create_agent(config.model, arrays.dim, 0)
    one = jax.tree.map(lambda x: x[0], batches)
    key = jax.random.PRNGKey(3)
    hp = Hyperparams.pretrain(config)
    off, _ = supervised_loss(params, graphdef, one, hp.replace(text_dropout=jnp.float32(0.0)), key)
    zero, _ = supervised_loss(params, graphdef, one, hp.replace(text_dropout=jnp.float32(0.0)), key,
                              text_dropout=True)
    half, _ = supervised_loss(params, graphdef, one, hp.replace(text_dropout=jnp.float32(0.5)), key,
                              text_dropout=True)
    assert float(zero) == float(off)
    assert abs(float(half) - float(off)) > 1e-4


def test_text_dropout_empties_whole_n_gram_bags():
    from salesrl_jax.models.inputs import GramBags
    from salesrl_jax.train.supervised import drop_text

    rng = np.random.default_rng(0)
    n, k = 400, 6
    bags = GramBags(ids=jnp.asarray(rng.integers(1, 1000, (n, k)), jnp.int32),
                    counts=jnp.asarray(rng.integers(1, 4, (n, k)), jnp.float32))
    inputs = TurnInputs(bags, jnp.ones((n, 3)), jnp.arange(n) % 5 == 0, jnp.ones((n,), bool))
    dropped = drop_text(inputs, jnp.float32(0.25), jax.random.PRNGKey(1)).embeddings
    counts = np.asarray(dropped.counts)
    gone = np.all(counts == 0, axis=1)
    assert np.all(gone | np.all(counts == np.asarray(bags.counts), axis=1))
    by_conversation = gone.reshape(80, 5)  # a conversation starts every 5 rows
    assert np.all(by_conversation == by_conversation[:, :1])
    assert 0.1 < by_conversation[:, 0].mean() < 0.4
    np.testing.assert_array_equal(np.asarray(dropped.ids), np.asarray(bags.ids))


def test_runs_of_one_structure_share_their_programs_and_end_where_they_end_alone(tiny_arrays, tmp_path):
    """`shared_program`: a second run with other numbers (learning rates, weight decay, entropy) reuses the first
    run's jitted programs, and its parameters equal those of the same run built with fresh programs: the shared
    program reads each run's numbers, not the first run's. A run with another schedule length gets its own."""
    from salesrl_jax.run.checkpoints import read_meta, restore_params
    from salesrl_jax.run.config import with_overrides
    from salesrl_jax.train import loop

    config = tiny_config(tiny_arrays, ppo=dataclasses.replace(tiny_config(tiny_arrays).ppo, updates=2))
    other = with_overrides(config, {"pretrain.learning_rate": 1e-3, "pretrain.weight_decay": 0.1,
                                    "ppo.learning_rate": 3e-4, "ppo.entropy_coef": 0.02})

    def params(workdir):
        _, like = create_agent(config.model, TINY_DIM, 0)
        latest = workdir / "checkpoints" / "latest"
        restored = restore_params(latest, like, read_meta(latest)["params_sha256"])
        return jax.tree.leaves(jax.tree.map(np.asarray, restored))

    loop._PROGRAMS.clear()
    train_and_evaluate(config, tmp_path / "first", progress=False)
    programs = dict(loop._PROGRAMS)
    assert len(programs) == 2  # pretraining and PPO
    train_and_evaluate(other, tmp_path / "shared", progress=False)
    assert loop._PROGRAMS == programs  # reused, not rebuilt
    loop._PROGRAMS.clear()
    train_and_evaluate(other, tmp_path / "fresh", progress=False)
    assert all(program not in programs.values() for program in loop._PROGRAMS.values())
    for shared, fresh in zip(params(tmp_path / "shared"), params(tmp_path / "fresh")):
        np.testing.assert_array_equal(shared, fresh)
    assert any(not np.array_equal(a, b) for a, b in zip(params(tmp_path / "first"), params(tmp_path / "shared")))
    longer = with_overrides(config, {"pretrain.epochs": config.pretrain.epochs + 1})
    train_and_evaluate(longer, tmp_path / "longer", progress=False)
    assert len(loop._PROGRAMS) == 3  # a longer schedule is another pretraining program


def test_the_run_says_what_the_data_changed_of_the_recipe(tiny_arrays, tmp_path, capsys):
    """On stderr, before any work: the regime auto resolved to and each field it set, as config.json holds them."""
    config = tiny_config(tiny_arrays, regime="auto")
    train_and_evaluate(config, tmp_path / "run", progress=True, stop_after_chunks=1)
    err = capsys.readouterr().err
    labelled = TurnArrays.open(tiny_arrays).manifest["counts"]["labelled"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert f"{labelled:,} labelled conversations: regime small (auto given); " in err
    assert f"pretrain.rows_per_minibatch 128 -> {saved['pretrain']['rows_per_minibatch']}" in err
    assert "ppo.enabled True -> False" in err and not saved["ppo"]["enabled"]


def test_a_run_without_a_validation_split_trains_to_the_end_and_serves_its_last_model(tiny_arrays, tmp_path):
    # data.valid_fraction 0 trains on every conversation (for a length chosen elsewhere, e.g. by a run that held
    # some out): nothing is validated, and each validation point's model replaces the kept one.
    base = tiny_config(tiny_arrays)
    config = dataclasses.replace(base, data=dataclasses.replace(base.data, valid_fraction=0.0),
                                 pretrain=dataclasses.replace(base.pretrain, epochs=2, patience=1),
                                 ppo=dataclasses.replace(base.ppo, updates=2))
    run = tmp_path / "run"
    result = train_and_evaluate(config, run, progress=False)
    assert result.valid == {} and result.best_valid == {} and result.learned is None and result.recalibration is None
    assert "none (data.valid_fraction 0): the run serves its last model" in result.summary()
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] in ("validation", "early_stop")]
    kept = [e["at"] for e in events if e["event"] == "kept_unvalidated"]
    assert kept[:2] == ["pretrain epoch 1", "pretrain epoch 2"] and len(kept) == 3  # and PPO's one validation point
    assert json.loads((run / "result.json").read_text())["valid"] == {}
    served, latest = TrainedModel.load(run), TrainedModel(run / "checkpoints" / "latest")
    assert served.directory == run / "checkpoints" / "best"
    ended = {key: value for key, value in latest.meta["position"].items() if key != "phase"}  # "done" there
    assert {key: value for key, value in served.meta["position"].items() if key != "phase"} == ended
    for a, b in zip(jax.tree.leaves(served.params), jax.tree.leaves(latest.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Whatever reads its validation split says it has none, and how to go on.
    from salesrl_jax.eval.calibration import recalibrate_model
    from salesrl_jax.eval.confidence_fit import fit_confidence
    from salesrl_jax.eval.evaluate import evaluate_model

    for read in (lambda: evaluate_model(served, tiny_arrays, tmp_path / "eval", split="valid"),
                 lambda: fit_confidence(run), lambda: recalibrate_model(run, tmp_path / "calibrated")):
        with pytest.raises(ValueError, match=r"held out no validation split \(data.valid_fraction 0\): pass --data"):
            read()
    assert evaluate_model(served, tiny_arrays, tmp_path / "eval", plots=False).tables  # in-sample, but it runs

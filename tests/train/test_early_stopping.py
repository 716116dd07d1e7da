"""Early stopping (``pretrain.patience``, ``ppo.patience``): a phase stops after that many validations in a row
without a new best checkpoint, each phase with its own count, and a run killed after a stalled validation resumes
to the uninterrupted result."""

import dataclasses
import json
import shutil

import jax
import numpy as np

from salesrl_jax.run.checkpoints import read_meta
from salesrl_jax.run.trained_model import TrainedModel
from salesrl_jax.train.loop import train_and_evaluate
from tests.conftest import tiny_config

# A learning rate far below float32's resolution of the parameters: steps leave the predictions unchanged but for
# rounding (PPO's moved the log loss by 1e-10 once), so every validation after the first finds the same log loss to
# within `IMPROVEMENT_TOLERANCE`, which is not a new best. The count of stalled validations is then known.
FROZEN = 1e-12


def _stalling_config(arrays, **ppo):
    base = tiny_config(arrays, checkpoint_every=2)
    return dataclasses.replace(
        base, pretrain=dataclasses.replace(base.pretrain, epochs=6, learning_rate=FROZEN, patience=2),
        ppo=dataclasses.replace(base.ppo, updates=10, learning_rate=FROZEN, patience=2, **ppo))


def _log(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_each_phase_stops_after_patience_validations_without_a_new_best(tiny_arrays, tmp_path):
    config = _stalling_config(tiny_arrays)
    result = train_and_evaluate(config, tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    validations = [(r["at"], r["best"]) for r in log if r["event"] == "validation"]
    # Epoch 1 is the first best; epochs 2 and 3 find nothing better: pretraining stops there, 3 of 6 epochs. PPO
    # starts its own count: updates 2 and 4 find nothing better, so it stops after 4 of 10 updates.
    assert validations == [("pretrain epoch 1", True), ("pretrain epoch 2", False), ("pretrain epoch 3", False),
                           ("ppo update 2", False), ("ppo update 4", False)]
    stops = [(r["phase"], r["at"]) for r in log if r["event"] == "early_stop"]
    assert stops == [("pretrain", "pretrain epoch 3"), ("ppo", "ppo update 4")]
    assert {r["epoch"] for r in log if r["event"] == "pretrain"} == {0, 1, 2}
    assert [r["update"] for r in log if r["event"] == "ppo"] == [0, 1, 2, 3]
    assert log[-1]["event"] == "done" and result.valid and result.best_valid
    assert read_meta(tmp_path / "run" / "checkpoints" / "latest")["position"]["phase"] == "done"

    # With patience 0 every planned unit runs.
    full = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, patience=0),
                               ppo=dataclasses.replace(config.ppo, patience=0))
    train_and_evaluate(full, tmp_path / "all", progress=False)
    log = _log(tmp_path / "all")
    assert {r["epoch"] for r in log if r["event"] == "pretrain"} == set(range(6))
    assert len([r for r in log if r["event"] == "ppo"]) == 10
    assert not [r for r in log if r["event"] == "early_stop"]


def test_a_run_killed_after_a_stalled_validation_resumes_to_the_same_stop(tiny_arrays, tmp_path):
    config = _stalling_config(tiny_arrays)
    train_and_evaluate(config, tmp_path / "straight", progress=False)
    straight = _log(tmp_path / "straight")
    pretrain_units = len([r for r in straight if r["event"] == "pretrain"])
    # Killed after PPO update 3: its validation at update 2 stalled once; one more stall must still stop it at 4.
    partial = train_and_evaluate(config, tmp_path / "resumed", progress=False, stop_after_chunks=pretrain_units + 3)
    assert partial.valid == {}
    assert read_meta(tmp_path / "resumed" / "checkpoints" / "latest")["stalled"] == 1
    resumed = train_and_evaluate(config, tmp_path / "resumed", progress=False)
    assert resumed.resumed_from is not None
    log = _log(tmp_path / "resumed")
    assert [r["update"] for r in log if r["event"] == "ppo"] == [0, 1, 2, 3]
    assert [(r["phase"], r["at"]) for r in log if r["event"] == "early_stop"] == \
        [("pretrain", "pretrain epoch 3"), ("ppo", "ppo update 4")]
    a, b = TrainedModel.load(tmp_path / "straight"), TrainedModel.load(tmp_path / "resumed")
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.params, b.params))
    assert resumed.valid == json.loads((tmp_path / "straight" / "result.json").read_text())["valid"]


def test_a_run_resumed_from_a_latest_older_than_its_best_replays_to_the_same_result(tiny_arrays, tmp_path):
    """`TrainConfig.checkpoint_seconds` spaces the latest saves, so a kill can go back to a latest older than the
    kept best. The replayed validations are judged against the best as of the latest, not the newer one kept: the
    log, the early stop and the served model are the uninterrupted run's."""
    base = tiny_config(tiny_arrays, ppo=dataclasses.replace(tiny_config(tiny_arrays).ppo, enabled=False))
    config = dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, epochs=8, patience=2))
    train_and_evaluate(config, tmp_path / "straight", progress=False)
    straight = _log(tmp_path / "straight")
    validations = [(r["at"], r["best"]) for r in straight if r["event"] == "validation"]
    assert ("pretrain epoch 2", True) in validations and ("pretrain epoch 3", True) in validations
    per_epoch = len([r for r in straight if r["event"] == "pretrain" and r["epoch"] == 0])

    run = tmp_path / "run"
    train_and_evaluate(config, run, progress=False, stop_after_chunks=per_epoch)  # killed after epoch 1
    early = tmp_path / "latest-after-epoch-1"
    shutil.copytree(run / "checkpoints" / "latest", early)
    train_and_evaluate(config, run, progress=False, stop_after_chunks=2 * per_epoch)  # on past new bests
    assert read_meta(run / "checkpoints" / "best")["position"]["epoch"] >= 2
    # The kill that lost the latest saves since epoch 1: what a run whose saves were spaced goes back to.
    shutil.rmtree(run / "checkpoints" / "latest")
    shutil.copytree(early, run / "checkpoints" / "latest")
    resumed = train_and_evaluate(config, run, progress=False)
    assert resumed.resumed_from["epoch"] == 1
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in _log(run)] == strip
    a, b = TrainedModel.load(tmp_path / "straight"), TrainedModel.load(run)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.params, b.params))


def test_latest_saves_are_spaced_by_checkpoint_seconds_and_change_nothing(tiny_arrays, tmp_path):
    from salesrl_jax.run.checkpoints import Checkpoints

    config = tiny_config(tiny_arrays, checkpoint_every=2)
    spaced = dataclasses.replace(config, checkpoint_seconds=1e9)
    every, few = train_and_evaluate(config, tmp_path / "every", progress=False), \
        train_and_evaluate(spaced, tmp_path / "few", progress=False)
    saves = {name: Checkpoints(tmp_path / name).latest.latest_step() for name in ("every", "few")}
    assert saves["few"] == 2 < saves["every"]  # the two phase ends only: pretraining's, and PPO's
    assert few.valid == every.valid and few.best_valid == every.best_valid


def test_a_new_best_must_beat_the_last_by_more_than_rounding(tiny_arrays, tmp_path):
    """`Checkpoints.save_best`: a log loss lower by less than `IMPROVEMENT_TOLERANCE` (float rounding of a step that
    moved nothing) is not a new best; lower by more is, and it is the one kept."""
    from salesrl_jax.models.agent import create_agent
    from salesrl_jax.run.checkpoints import IMPROVEMENT_TOLERANCE, Checkpoints
    from salesrl_jax.train.state import adam_linear, init_state

    graphdef, params = create_agent(tiny_config(tiny_arrays).model, 16, 0)
    state = init_state(params, adam_linear(1e-3, 10, 1.0), 0)
    checkpoints = Checkpoints(tmp_path / "run")
    first = 0.6988787401082839
    assert checkpoints.save_best(state, {"valid": {"log_loss": first}}, first)
    rounding = first - IMPROVEMENT_TOLERANCE / 10
    assert not checkpoints.save_best(state, {"valid": {"log_loss": rounding}}, rounding)
    assert not checkpoints.save_best(state, {"valid": {"log_loss": first}}, first)
    better = first - 10 * IMPROVEMENT_TOLERANCE
    assert checkpoints.save_best(state, {"valid": {"log_loss": better}}, better)
    assert checkpoints.best_meta()["valid"]["log_loss"] == better
    checkpoints.close()

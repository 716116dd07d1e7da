"""Training that knows a useless model: a diverged run says whether its kept checkpoint beats the base rate, a
finished one says when it does not, one outcome only is refused, and a second run on a workdir is refused."""

import json
import shutil

import numpy as np
import pytest

from salesrl_jax.arrays.store import part_digest
from salesrl_jax.io.lock import OutputBusyError, claim_output
from salesrl_jax.train.loop import train_and_evaluate
from salesrl_jax.train.phases import TrainingDiverged
from tests.conftest import tiny_config


def _with_outcomes(tiny_arrays, tmp_path, value: int):
    arrays = tmp_path / "arrays"
    shutil.copytree(tiny_arrays, arrays)
    manifest = json.loads((arrays / "manifest.json").read_text())
    for entry in manifest["parts"]:
        outcome = np.load(arrays / entry["name"] / "outcome.npy")
        np.save(arrays / entry["name"] / "outcome.npy", np.where(outcome >= 0, value, outcome).astype(np.int8))
        entry["sha256"] = part_digest(arrays / entry["name"])
    (arrays / "manifest.json").write_text(json.dumps(manifest))
    return arrays


def test_one_outcome_only_is_refused(tiny_arrays, tmp_path):
    arrays = _with_outcomes(tiny_arrays, tmp_path, 0)
    with pytest.raises(ValueError, match="every labelled training conversation has outcome 0"):
        train_and_evaluate(tiny_config(arrays), tmp_path / "run", progress=False)


def test_a_diverged_run_says_whether_its_kept_checkpoint_learned_anything(tiny_arrays, tmp_path):
    from salesrl_jax.models.agent import create_agent
    from salesrl_jax.run.checkpoints import Checkpoints
    from salesrl_jax.train.loop import _kept_best
    from salesrl_jax.train.state import adam_linear, init_state

    graphdef, params = create_agent(tiny_config(tiny_arrays).model, 16, 0)
    state = init_state(params, adam_linear(1e-3, 10, 1.0), 0)
    checkpoints = Checkpoints(tmp_path / "run")
    assert "No checkpoint was kept" in _kept_best(checkpoints)
    checkpoints.save_best(state, {"valid": {"log_loss": 8.26, "base_rate_log_loss": 0.686}}, 8.26)
    assert "NO better than: it learned nothing usable" in _kept_best(checkpoints)
    checkpoints.save_best(state, {"valid": {"log_loss": 0.60, "base_rate_log_loss": 0.686}}, 0.60)
    assert "is better than always predicting the training base rate" in _kept_best(checkpoints)
    checkpoints.close()
    late = Checkpoints(tmp_path / "late")
    late.save_best(state, {"valid": {"log_loss": 0.70, "base_rate_log_loss": 0.686, "last_turn_log_loss": 0.6,
                                     "base_rate_last_turn_log_loss": 0.69}}, 0.70)
    assert "is better than always predicting the training base rate (0.6860), at the last turn only" in \
        _kept_best(late)
    late.close()


def test_nan_inputs_diverge_and_say_nothing_was_kept(tiny_arrays, tmp_path):
    arrays = tmp_path / "arrays"
    shutil.copytree(tiny_arrays, arrays)
    manifest = json.loads((arrays / "manifest.json").read_text())
    for entry in manifest["parts"]:
        embeddings = np.load(arrays / entry["name"] / "embeddings.npy")
        embeddings[:] = np.nan
        np.save(arrays / entry["name"] / "embeddings.npy", embeddings)
        entry["sha256"] = part_digest(arrays / entry["name"])
    (arrays / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainingDiverged, match="No checkpoint was kept"):
        train_and_evaluate(tiny_config(arrays), tmp_path / "run", progress=False)


def test_a_model_no_better_than_the_base_rate_is_said():
    from pathlib import Path

    from salesrl_jax.train.loop import RunResult

    valid = {"log_loss": 0.70, "base_rate_log_loss": 0.686, "last_turn_auc": 0.5, "last_turn_accuracy": 0.56,
             "last_turn_brier": 0.25, "last_turn_ece": 0.02}
    useless = RunResult(Path("run"), valid, dict(valid), {}, None)
    assert useless.learned is False and "does NOT beat it: it learned nothing" in useless.summary()
    useful = RunResult(Path("run"), valid, {**valid, "log_loss": 0.60}, {}, None)
    assert useful.learned is True and "beats it" in useful.summary()
    # A long call's outcome that shows only late: the all-turn average sits at the base rate, the last turn beats it.
    with_last = {**valid, "base_rate_last_turn_log_loss": 0.686}
    late = RunResult(Path("run"), with_last, {**with_last, "log_loss": 0.6970, "last_turn_log_loss": 0.64}, {}, None)
    assert late.learned is True and "beats it at the last turn only" in late.summary()
    neither = RunResult(Path("run"), with_last, {**with_last, "log_loss": 0.6970, "last_turn_log_loss": 0.69}, {}, None)
    assert neither.learned is False and "does NOT beat it" in neither.summary()


def test_a_second_run_on_a_workdir_is_refused(tiny_arrays, tmp_path):
    with claim_output(tmp_path / "run"):
        with pytest.raises(OutputBusyError, match="another salesrl run"):
            train_and_evaluate(tiny_config(tiny_arrays), tmp_path / "run", progress=False)


def test_the_last_turn_base_rate_counts_each_conversation_once(tiny_arrays, tmp_path):
    """Over all turns the constant is the turn-weighted rate; at the last turn, where each conversation counts once,
    it is the conversations' rate. Made to differ: every conversation longer than the median converts."""
    from salesrl_jax.arrays.split import split_conversations
    from salesrl_jax.arrays.store import TurnArrays
    from salesrl_jax.metrics import log_loss
    from salesrl_jax.models.agent import create_agent
    from salesrl_jax.train.validation import make_validator, training_base_rate

    arrays = tmp_path / "arrays"
    shutil.copytree(tiny_arrays, arrays)
    manifest = json.loads((arrays / "manifest.json").read_text())
    median = np.median(np.concatenate([np.diff(np.load(arrays / e["name"] / "offsets.npy")) for e in manifest["parts"]]))
    for entry in manifest["parts"]:
        lengths = np.diff(np.load(arrays / entry["name"] / "offsets.npy"))
        np.save(arrays / entry["name"] / "outcome.npy", (lengths > median).astype(np.int8))
        entry["sha256"] = part_digest(arrays / entry["name"])
    (arrays / "manifest.json").write_text(json.dumps(manifest))
    config = tiny_config(arrays)
    opened = TurnArrays.open(arrays)
    train = [(p.lengths[i], p.outcome[i]) for p in opened.iter_parts()
             for i in split_conversations(p, "train", config.data.valid_fraction, config.data.split_seed)]
    lengths, won = np.array([n for n, _ in train]), np.array([y for _, y in train])
    rates = training_base_rate(opened, config)
    assert rates.conversations == pytest.approx(won.mean())
    assert rates.turns == pytest.approx((lengths * won).sum() / lengths.sum())
    assert rates.turns > rates.conversations + 0.1  # the long ones converted
    graphdef, params = create_agent(config.model, opened.dim, 0)
    valid = make_validator(graphdef, opened, config)(params)
    last = np.array([p.outcome[i] for p in opened.iter_parts()
                     for i in split_conversations(p, "valid", config.data.valid_fraction, config.data.split_seed)])
    assert valid["base_rate_last_turn_log_loss"] == pytest.approx(
        log_loss(np.full(len(last), rates.conversations), last), rel=1e-6)

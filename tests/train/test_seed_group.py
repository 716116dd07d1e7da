"""Runs trained together (`train_together`: one compiled program, vmapped over seeds and numeric
hyperparameters) end where each ends alone, and a group stopped mid-run resumes to the same parameters."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from salesrl_jax.models.agent import create_agent
from salesrl_jax.run.checkpoints import read_meta, restore_params
from salesrl_jax.run.config import with_overrides
from salesrl_jax.train.loop import train_and_evaluate, train_seeds_and_evaluate, train_together
from tests.conftest import TINY_DIM, tiny_config


def _config(arrays):
    base = tiny_config(arrays)
    # Input dropout on, so the PRNG key matters: a seed's shorter epoch is padded with empty minibatches that
    # must not advance it.
    return dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, epochs=2, input_dropout=0.2),
                               ppo=dataclasses.replace(base.ppo, updates=2))


def _latest(workdir, config):
    _, like = create_agent(config.model, TINY_DIM, 0)
    latest = workdir / "checkpoints" / "latest"
    return jax.tree.map(np.asarray, restore_params(latest, like, read_meta(latest)["params_sha256"]))


def _close(a, b) -> tuple[float, float]:
    diffs = np.concatenate([np.abs(x - y).ravel() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    return float(diffs.mean()), float(diffs.max())


def test_seeds_vmapped_together_equal_each_alone(tiny_arrays, tmp_path):
    config = _config(tiny_arrays)
    together = train_seeds_and_evaluate(config, [3, 4], [tmp_path / "g3", tmp_path / "g4"], progress=False)
    for seed, grouped in zip((3, 4), together):
        alone = train_and_evaluate(dataclasses.replace(config, seed=seed), tmp_path / f"a{seed}", progress=False)
        mean, largest = _close(_latest(tmp_path / f"g{seed}", config), _latest(tmp_path / f"a{seed}", config))
        moved = _close(_latest(tmp_path / f"a{seed}", config),
                       jax.tree.map(np.asarray, create_agent(config.model, TINY_DIM, seed)[1]))[0]
        # Float tolerance: the vmapped program orders some sums differently, and Adam turns rounding in a nearly
        # zero gradient into a step now and then (the largest differences); on average the runs agree to about
        # 1e-4 of how far training moved the parameters (measured 4e-6 against 0.01), and on validation.
        assert mean < 2e-3 * moved and largest < 0.05, (seed, mean, moved, largest)
        assert grouped.valid["log_loss"] == pytest.approx(alone.valid["log_loss"], abs=1e-4)
        saved = json.loads((tmp_path / f"g{seed}" / "config.json").read_text())
        assert saved["seed"] == seed
        assert json.loads((tmp_path / f"g{seed}" / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "done"
    # The seeds differ from each other (so the equality above is not one run copied).
    assert _close(_latest(tmp_path / "g3", config), _latest(tmp_path / "g4", config))[0] > 1e-4
    assert together[0].throughput["pretrain_compile_s"] > 0

    # A group stopped mid-run (as a kill leaves it) resumes to the uninterrupted group's parameters exactly.
    dirs = [tmp_path / "s3", tmp_path / "s4"]
    stopped = train_seeds_and_evaluate(config, [3, 4], dirs, progress=False, stop_after_chunks=3)
    assert all(r.valid == {} for r in stopped)
    train_seeds_and_evaluate(config, [3, 4], dirs, progress=False)
    for seed, resumed in zip((3, 4), dirs):
        assert _close(_latest(resumed, config), _latest(tmp_path / f"g{seed}", config))[1] == 0.0


def test_seed_group_arguments_are_checked(tiny_arrays, tmp_path):
    with pytest.raises(ValueError, match="one workdir per seed"):
        train_seeds_and_evaluate(_config(tiny_arrays), [0, 1], [tmp_path / "a"])
    with pytest.raises(ValueError, match="must differ"):
        train_seeds_and_evaluate(_config(tiny_arrays), [0, 0], [tmp_path / "a", tmp_path / "b"])


def test_numeric_hyperparameters_vmapped_together_equal_each_alone(tiny_arrays, tmp_path):
    """A sweep in one program: the optimizers' numbers (learning rates, weight decay, clip norm; held in each run's
    optimizer state) and the losses' (`Hyperparams`, stacked per run) differ per run, one of them without the
    dropout the other uses; each run ends where it ends alone."""
    config = _config(tiny_arrays)
    settings = [{"pretrain.learning_rate": 3e-3, "pretrain.weight_decay": 0.0, "ppo.clip_eps": 0.1,
                 "ppo.learning_rate": 1e-3},
                {"pretrain.learning_rate": 5e-4, "pretrain.weight_decay": 0.05, "pretrain.max_grad_norm": 0.3,
                 "pretrain.input_dropout": 0.0, "pretrain.ensemble_weight": 0.2, "ppo.entropy_coef": 0.01}]
    configs = [with_overrides(config, {**s, "name": f"h{k}"}) for k, s in enumerate(settings)]  # the same seed
    dirs = [tmp_path / "h0", tmp_path / "h1"]
    together = train_together(configs, dirs, progress=False)
    for k, (c, grouped) in enumerate(zip(configs, together)):
        alone = train_and_evaluate(c, tmp_path / f"alone{k}", progress=False)
        mean, largest = _close(_latest(dirs[k], config), _latest(tmp_path / f"alone{k}", config))
        moved = _close(_latest(tmp_path / f"alone{k}", config),
                       jax.tree.map(np.asarray, create_agent(config.model, TINY_DIM, config.seed)[1]))[0]
        assert mean < 2e-3 * moved and largest < 0.05, (k, mean, moved, largest)
        assert grouped.valid["log_loss"] == pytest.approx(alone.valid["log_loss"], abs=1e-4)
        saved = json.loads((dirs[k] / "config.json").read_text())
        assert saved["pretrain"]["learning_rate"] == settings[k]["pretrain.learning_rate"]
    # Same seed, different numbers: the runs really differ.
    assert _close(_latest(dirs[0], config), _latest(dirs[1], config))[0] > 10 * _close(
        _latest(dirs[0], config), _latest(tmp_path / "alone0", config))[0]


def test_only_numeric_differences_train_together(tiny_arrays, tmp_path):
    config = _config(tiny_arrays)
    with pytest.raises(ValueError, match="model.hidden_dim"):
        train_together([config, with_overrides(config, {"model.hidden_dim": 16})], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="pretrain.epochs"):
        train_together([config, with_overrides(config, {"pretrain.epochs": 3})], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="its own workdir"):
        train_together([config, config], [tmp_path / "a", tmp_path / "a"])
    assert not (tmp_path / "a").exists()  # refused before anything is made


def test_a_member_that_stops_early_ends_as_it_would_alone(tiny_arrays, tmp_path):
    """In a group, a member whose validations stall (a PPO learning rate too small to move float32 parameters)
    stops after ``ppo.patience`` of them while the other trains on; it keeps its state, is not logged again, and
    ends as it ends alone. The group then resumes from a kill after the stop to the same parameters."""
    base = tiny_config(tiny_arrays, checkpoint_every=2)
    config = dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, epochs=2),
                                 ppo=dataclasses.replace(base.ppo, updates=8, patience=2))
    configs = [with_overrides(config, {"ppo.learning_rate": 1e-12, "name": "frozen"}),
               with_overrides(config, {"ppo.learning_rate": 1e-3, "ppo.patience": 2, "name": "moving"})]
    dirs = [tmp_path / "g0", tmp_path / "g1"]
    train_together(configs, dirs, progress=False)
    logs = {}
    for k, c in enumerate(configs):
        train_and_evaluate(c, tmp_path / f"a{k}", progress=False)
        for where in (dirs[k], tmp_path / f"a{k}"):
            log = [json.loads(line) for line in (where / "metrics.jsonl").read_text().splitlines()]
            logs[where] = ([r["update"] for r in log if r["event"] == "ppo"],
                           [r["at"] for r in log if r["event"] == "early_stop"])
        assert logs[dirs[k]] == logs[tmp_path / f"a{k}"]
        mean, largest = _close(_latest(dirs[k], config), _latest(tmp_path / f"a{k}", config))
        assert mean < 1e-4 and largest < 0.05, (k, mean, largest)
    assert logs[dirs[0]] == ([0, 1, 2, 3], ["ppo update 4"])  # stopped while the other trained on
    assert len(logs[dirs[1]][0]) > 4

    # Killed after the frozen member stopped, resumed: the same end.
    resumed = [tmp_path / "r0", tmp_path / "r1"]
    pretrain_units = len([line for line in (dirs[0] / "metrics.jsonl").read_text().splitlines()
                          if json.loads(line)["event"] == "pretrain"])
    train_together(configs, resumed, progress=False, stop_after_chunks=pretrain_units + 5)
    train_together(configs, resumed, progress=False)
    for k in range(2):
        assert _close(_latest(resumed[k], config), _latest(dirs[k], config))[1] == 0.0

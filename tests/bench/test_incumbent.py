"""The incumbent's stack (SB3 PPO + torch) as the side-by-side benchmark rebuilds it: its environment keeps the
outcome out of the observation, its history is the recency-weighted mean it claims, and each comparison runs and
reports consistent ratios (tiny widths, so the suite stays fast; the speed itself is in docs/benchmarks.md)."""

import importlib.util
import tempfile

import numpy as np
import pytest

from salesrl_jax.bench import incumbent
from salesrl_jax.bench.inference import TURNS_PER_CONVERSATION
from salesrl_jax.bench.suite import incumbent_tables

needs_extra = pytest.mark.skipif(importlib.util.find_spec("stable_baselines3") is None,
                                 reason="the incumbent extra is not installed (pip install 'salesrl-jax[incumbent]')")

TINY = incumbent.IncumbentShape(embedding_dim=48, extractor=(32, 16, 8), heads=(8, 8))


def _episode(env, seed):
    obs, _ = env.reset(seed=seed)
    observations, rewards, done = [obs], [], False
    while not done:
        obs, reward, done, truncated, _ = env.step(np.array([0.25], np.float32))
        assert not truncated
        rewards.append(reward)
        if not done:
            observations.append(obs)
    return np.stack(observations), np.array(rewards)


@needs_extra
def test_environment_observes_turns_not_the_outcome():
    cached = incumbent._Cached(TINY, 40)
    flipped = incumbent._Cached(TINY, 40)
    flipped.labels = 1.0 - flipped.labels
    obs, rewards = _episode(incumbent.make_env(TINY, cached), seed=3)
    obs_flipped, rewards_flipped = _episode(incumbent.make_env(TINY, flipped), seed=3)
    assert obs.shape == (TURNS_PER_CONVERSATION, TINY.obs_dim)
    np.testing.assert_array_equal(obs, obs_flipped)  # the outcome changes the rewards only
    assert not np.allclose(rewards, rewards_flipped)
    # reward: the Brier score of the action 0.25 against the outcome
    assert set(np.round(rewards, 6)) <= {round(1 - 0.25 ** 2, 6), round(1 - 0.75 ** 2, 6)}


@needs_extra
def test_history_is_the_recency_weighted_turns_so_far():
    cached = incumbent._Cached(TINY, 2 * TURNS_PER_CONVERSATION)
    e, decay = cached.embeddings, TINY.history_decay
    for row in (0, 3, TURNS_PER_CONVERSATION + 4):
        start = row - row % TURNS_PER_CONVERSATION
        h = sum(decay ** (row - i) * e[i] for i in range(start, row + 1))
        np.testing.assert_allclose(cached.observations[row, :TINY.embedding_dim], h / np.linalg.norm(h), atol=1e-5)
    np.testing.assert_array_equal(cached.observations[:, TINY.embedding_dim:], cached.features)
    # The environment observes the same rows (its conversation 1 is rows 10-19).
    env = incumbent.make_env(TINY, cached)
    env.reset(seed=0)
    env._conversation, env._row, env._turn = 1, TURNS_PER_CONVERSATION, 0
    first = env._observe()
    np.testing.assert_allclose(first, cached.observations[TURNS_PER_CONVERSATION], atol=1e-6)


@needs_extra
def test_comparisons_run_and_report_their_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger would make its folders
    stream = incumbent.streaming_comparison(TINY, models=("default",), turns=2 * TURNS_PER_CONVERSATION, rounds=1)
    assert set(stream["p50_ms"]) == {"incumbent_predict", "incumbent_torch_forward", "default",
                                     "default_with_confidence"}
    assert stream["p50_speedup"]["default"] == pytest.approx(
        stream["p50_ms"]["incumbent_predict"] / stream["p50_ms"]["default"])
    batch = incumbent.batch_comparison(TINY, models=("default",), batch=32, rounds=1, min_seconds=0.05)
    assert batch["macs_per_turn"]["incumbent"] == (
        TINY.obs_dim * 32 + 32 * 16 + 16 * 8 + 2 * (8 * 8 + 8 * 8) + 8 * 2)
    assert batch["macs_per_turn"]["default"] > 0
    assert batch["over_incumbent"]["default_int8"] == pytest.approx(
        batch["turns_per_s"]["default_int8"] / batch["turns_per_s"]["incumbent"])
    ppo = incumbent.ppo_comparison(TINY, incumbent.SB3PPOWork(n_steps=64, batch_size=32, n_epochs=1),
                                   models=("default",), updates=1, rounds=1, min_seconds=0.0)
    assert set(ppo["over_incumbent"]) == {"default_our_work", "default_sb3_work"}
    assert all(v > 0 for v in ppo["env_steps_per_s"].values())
    assert not list(tmp_path.glob("SB3-*")), "SB3's logger folders are not left in the temp directory"
    import stable_baselines3
    import torch

    table = incumbent_tables({"shape": incumbent.dataclasses.asdict(TINY), "torch_version": torch.__version__,
                              "torch_threads": 1, "stable_baselines3_version": stable_baselines3.__version__,
                              "ppo": ppo, "stream": stream, "batch": batch})
    assert "| ours, default | SB3 defaults |" in table and "| default_with_confidence |" in table
    assert f"{TINY.obs_dim}-float observation" in table


def test_a_missing_extra_is_a_clear_error(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    with pytest.raises(ValueError, match=r"needs torch: pip install 'salesrl-jax\[incumbent\]'"):
        incumbent.require_incumbent_extra()

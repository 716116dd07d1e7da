"""Determinism, paper statistics at the defaults, and the CLI summary."""

import hashlib
import math

import numpy as np
import pytest

from salesrl_jax.data.readers import read_conversations
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import generate
from salesrl_jax.sim.industries import INDUSTRY_NAMES


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    config = SimulatorConfig(num_conversations=300, shard_size=100, seed=5)
    generate(config, tmp_path / "a", fmt="jsonl.gz", workers=1)
    generate(config, tmp_path / "b", fmt="jsonl.gz", workers=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate(SimulatorConfig(num_conversations=300, shard_size=100, seed=6), tmp_path / "c", fmt="jsonl.gz", workers=1)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return generate(SimulatorConfig(num_conversations=12_000, shard_size=6_000), out, fmt="parquet", workers=1), out


def test_statistics_at_defaults_match_the_paper(default_run):
    result, _ = default_run
    stats = result.stats
    lengths = np.repeat(np.arange(len(stats.length_counts)), stats.length_counts)
    assert lengths.min() >= 3 and lengths.max() <= 27
    assert 7 <= np.median(lengths) <= 9
    assert abs(stats.converted / stats.conversations - 0.44) < 0.02
    assert set(stats.industry_counts) == set(INDUSTRY_NAMES)


def test_records_carry_ground_truth_and_timing(default_run):
    _, out = default_run
    for i, conv in enumerate(read_conversations(out)):
        if i == 200:
            break
        assert conv.has_ground_truth and conv.outcome in (0, 1)
        assert all(t.act for t in conv.turns)
        starts = [t.start_time for t in conv.turns]
        assert starts == sorted(starts) and all(t.duration > 0 for t in conv.turns)
        assert [t.speaker for t in conv.turns[:2]] == ["rep", "customer"]


def test_last_turn_oracle_is_calibrated_on_generated_data(default_run):
    result, _ = default_run
    probs = result.stats.oracle_at_fraction[:, -1]
    labels = result.stats.outcomes
    bins = np.clip((probs * 5).astype(int), 0, 4)
    for b in range(5):
        sel = bins == b
        if sel.sum() < 300:
            continue
        p = probs[sel].mean()
        assert abs(labels[sel].mean() - p) < 4 * math.sqrt(p * (1 - p) / sel.sum()) + 0.005


def test_held_out_industries_and_config_errors(tmp_path):
    result = generate(SimulatorConfig(num_conversations=50, exclude_industries=INDUSTRY_NAMES[1:]), tmp_path, workers=1)
    assert set(result.stats.industry_counts) == {INDUSTRY_NAMES[0]}
    with pytest.raises(ValueError, match="unknown industries"):
        SimulatorConfig(industries=("fishing",))
    with pytest.raises(ValueError, match="max_turns"):
        SimulatorConfig(max_turns=2)

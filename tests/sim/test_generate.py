"""Determinism, paper statistics at the defaults, and the CLI summary."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest

from salesrl_jax.data.readers import read_conversations
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import generate, simulated_config
from salesrl_jax.sim.industries import INDUSTRY_NAMES
from salesrl_jax.sim.params import DynamicsParams, OutcomeLogits, Outcomes


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


# The archives the simulator made before its coefficients became `DynamicsParams` fields: the defaults must keep
# reproducing them. Everything but the oracle is compared byte for byte (sha256 of each record without it, as JSON with
# sorted keys). The oracle (each turn's oracle_prob and the record's prior, written to 6 decimals) is computed in
# float32 by BLAS products whose summation order depends on the CPU's kernels (AVX2 and AVX-512 machines differ in
# about 1 value in 80 by 1e-6), so it is compared by its sum and three fixed random projections: within 4e-6 sqrt(n) of
# the reference, where a change of the dynamics moves them by orders of magnitude more. Made at 95902b3 (whose raw
# bytes matched the AVX-512 digests of session 25) and checked unchanged under OPENBLAS_CORETYPE=Sandybridge.
REFERENCE = [
    (dict(num_conversations=400, seed=0, shard_size=200),
     "c340876e677623fa81338d5645b3e19bb813307c82977b5b7dbb67c4138baf05", 4278,
     [2170.917108, -14.178097, 32.403707, 14.228991]),
    (dict(num_conversations=300, seed=3, pace=1.4, noise=0.6, max_turns=15, exclude_industries=("travel",),
          target_conversion_rate=0.3, shard_size=300),
     "67f416a21159933348be6e1adcfbfa497ed81a1b935632f8e5db4f2e6b5be337", 2754,
     [943.284168, -39.392464, 18.008805, 13.060939]),
]


def _without_oracle(files) -> tuple[str, np.ndarray]:
    """sha256 of the records with the oracle's values taken out, and those values in order."""
    digest, values = hashlib.sha256(), []
    for file in files:
        for line in file.read_text().splitlines():
            record = json.loads(line)
            values.append(record["metadata"].pop("prior"))
            values.extend(turn.pop("oracle_prob") for turn in record["turns"])
            digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest(), np.asarray(values)


def _files_digest(files) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("settings, expected, n, moments", REFERENCE)
def test_default_coefficients_reproduce_the_reference_archives(tmp_path, settings, expected, n, moments):
    result = generate(SimulatorConfig(**settings), tmp_path, fmt="jsonl", workers=1)
    digest, oracle = _without_oracle(result.files)
    assert digest == expected and len(oracle) == n
    observed = [oracle.sum(), *(np.random.default_rng(0).standard_normal((3, n)) @ oracle)]
    np.testing.assert_allclose(observed, moments, rtol=0, atol=4e-6 * math.sqrt(n))


def test_one_coefficient_changes_the_data_and_is_recorded(tmp_path):
    config = SimulatorConfig(num_conversations=200, seed=0)
    base = generate(config, tmp_path / "base", fmt="jsonl", workers=1)
    params = DynamicsParams(outcomes=dataclasses.replace(Outcomes(), cap=OutcomeLogits(3.0, 1.6)))
    changed = generate(config, tmp_path / "changed", fmt="jsonl", workers=1, params=params)
    assert _files_digest(base.files) != _files_digest(changed.files)
    assert "dynamics" not in json.loads((tmp_path / "base" / "manifest.json").read_text())
    recorded = json.loads((tmp_path / "changed" / "manifest.json").read_text())["dynamics"]
    assert recorded["outcomes"]["cap"]["intercept"] == 3.0


def test_a_killed_generation_resumes_to_the_same_bytes(tmp_path):
    config = SimulatorConfig(num_conversations=300, seed=0, shard_size=100)
    whole = generate(config, tmp_path / "whole", fmt="csv", workers=1)
    out = tmp_path / "killed"
    first = generate(config, out, fmt="csv", workers=1)
    # As a kill leaves it: one shard finished, one half-written under its temporary name, no manifest.
    (out / "manifest.json").unlink()
    first.files[2].unlink()
    first.files[1].rename(out / f".{first.files[1].name}.tmp-999")
    (out / "manifest.partial.json").write_text(json.dumps(
        {"simulator_version": 1, "config": dataclasses.asdict(config), "format": "csv"}))
    resumed = generate(config, out, fmt="csv", workers=1)
    assert [f.read_bytes() for f in resumed.files] == [f.read_bytes() for f in whole.files]
    assert not list(out.glob(".*tmp*")) and not (out / "manifest.partial.json").exists()
    assert resumed.stats.conversations == 300 and resumed.stats.converted == whole.stats.converted
    assert np.array_equal(resumed.stats.oracle_at_fraction, whole.stats.oracle_at_fraction)  # read back
    with pytest.raises(ValueError, match="different config"):  # a partial run of other arguments is refused
        (out / "manifest.json").unlink()
        (out / "manifest.partial.json").write_text(json.dumps({"simulator_version": 1, "config": {}, "format": "csv"}))
        generate(config, out, fmt="csv", workers=1)


def test_industry_dynamics_are_opt_in_and_recorded(tmp_path):
    config = SimulatorConfig(num_conversations=200, seed=0)
    base = generate(config, tmp_path / "base", fmt="jsonl", workers=1)
    assert simulated_config(tmp_path / "base") == config and simulated_config(tmp_path / "none") is None
    # A manifest from before the field existed reads as the default, which is the simulator it was made by.
    manifest = json.loads((tmp_path / "base" / "manifest.json").read_text())
    del manifest["config"]["industry_dynamics"]
    (tmp_path / "base" / "manifest.json").write_text(json.dumps(manifest))
    assert simulated_config(tmp_path / "base") == config
    varied = generate(dataclasses.replace(config, industry_dynamics=1.0), tmp_path / "varied", fmt="jsonl", workers=1)
    assert _files_digest(base.files) != _files_digest(varied.files)
    manifest = json.loads((tmp_path / "varied" / "manifest.json").read_text())
    assert manifest["config"]["industry_dynamics"] == 1.0
    with pytest.raises(ValueError, match="industry_dynamics"):
        SimulatorConfig(industry_dynamics=-0.5)

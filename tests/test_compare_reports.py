"""scripts/compare_reports.py: side by side, with the oracle row on synthetic data and without it on real data."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from salesrl_jax.eval.report import evaluation_tables
from salesrl_jax.models.predict import TurnPredictions

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_reports.py"


def report(directory: Path, with_oracle: bool, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 14, size=200)
    conversation = np.repeat(np.arange(200), lengths)
    outcome = rng.integers(0, 2, size=200)[conversation]
    turn_index = np.concatenate([np.arange(n) for n in lengths])
    prediction = np.clip(0.5 + (outcome - 0.5) * 0.1 * turn_index / 13 + rng.normal(0, 0.1, len(outcome)), 0.01, 0.99)
    oracle = np.clip(prediction + rng.normal(0, 0.02, len(outcome)), 0.01, 0.99) if with_oracle else np.full(
        len(outcome), np.nan)
    pred = TurnPredictions(prediction, np.zeros_like(prediction), oracle, outcome, turn_index,
                           lengths[conversation], conversation, [f"c{i}" for i in range(200)], [None] * 200)
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps(evaluation_tables(pred)))
    return f"{directory.name}={directory}"


def run(argv, capsys) -> list[str]:
    spec = importlib.util.spec_from_file_location("compare_reports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(argv)
    return capsys.readouterr().out.strip().splitlines()


def test_synthetic_reports_get_the_oracle_row_and_gaps(tmp_path, capsys):
    lines = run([report(tmp_path / "a", True, 0), report(tmp_path / "b", True, 1)], capsys)
    assert "AUC gap to oracle" in lines[0] and len(lines) == 2 + 3
    assert lines[-1].startswith("| oracle (ceiling) |")


def test_real_data_reports_without_an_oracle_show_auc_by_fraction(tmp_path, capsys):
    lines = run([report(tmp_path / "model", False, 0), report(tmp_path / "baseline", False, 1)], capsys)
    assert "AUC at 25% / 50% / 75% / 100% seen" in lines[0] and len(lines) == 2 + 2
    assert not any("oracle" in line for line in lines[2:])
    last_auc = float(lines[2].split("|")[2])
    assert 0.5 < last_auc <= 1.0

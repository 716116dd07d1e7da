"""Evaluation tables (by turn index, by fraction seen, per industry) and `salesrl evaluate`'s report."""

import json

import numpy as np
import pytest

from salesrl_jax.cli import main
from salesrl_jax.eval.report import evaluation_tables
from salesrl_jax.models.predict import TurnPredictions


def predictions(lengths, seed=0):
    rng = np.random.default_rng(seed)
    n = len(lengths)
    outcome = rng.integers(0, 2, n)
    turn_index = np.concatenate([np.arange(k) for k in lengths])
    conversation = np.repeat(np.arange(n), lengths)
    # A model that sees the outcome more clearly as turns go by; the "oracle" is a bit better.
    signal = (turn_index + 1) / 10
    y = outcome[conversation]
    prediction = np.clip(0.5 + (y - 0.5) * signal + rng.normal(0, 0.1, len(y)), 0.01, 0.99)
    oracle = np.clip(0.5 + (y - 0.5) * (signal + 0.1), 0.01, 0.99)
    return TurnPredictions(prediction.astype(np.float32), np.zeros(len(y), np.float32), oracle.astype(np.float32),
                           y.astype(np.int8), turn_index.astype(np.int32), np.repeat(lengths, lengths).astype(np.int32),
                           conversation, [f"c{i}" for i in range(n)], ["saas" if i % 2 else "travel" for i in range(n)])


def test_by_turn_counts_the_conversations_still_running_and_by_fraction_picks_ceil_f_t():
    lengths = np.array([3] * 40 + [5] * 40 + [8] * 40)
    pred = predictions(lengths)
    tables = evaluation_tables(pred)
    counts = {row["turn"]: row["model"]["n"] for row in tables["by_turn"]}
    assert counts[1] == 120 and counts[3] == 120 and counts[4] == 80 and counts[6] == 40
    assert 9 not in counts  # nobody reaches turn 9
    # 25% of an 8-turn conversation is turn 2; of a 3-turn one, turn 1 (ceil(0.75) = 1).
    quarter = tables["by_fraction"][0]
    chosen = np.maximum(np.ceil(0.25 * pred.length), 1) - 1
    mask = pred.turn_index == chosen
    assert quarter["model"]["n"] == 120 and mask.sum() == 120
    assert quarter["model"]["brier"] == pytest.approx(float(np.mean((pred.prediction[mask] - pred.outcome[mask]) ** 2)))
    assert tables["last_turn"]["oracle"]["auc"] >= tables["last_turn"]["model"]["auc"] - 0.05
    assert {row["industry"] for row in tables["by_industry"]} == {"saas", "travel"}
    json.dumps(tables)  # serialisable as written to metrics.json
    assert tables["by_turn_left_out"] is None  # 40 conversations reach turn 8: nothing left out
    last = tables["last_turn"]["model"]
    assert last["auc_lo"] <= last["auc"] <= last["auc_hi"] and last["auc_hi"] - last["auc_lo"] < 0.3
    assert all(row["model"]["auc_lo"] <= row["model"]["auc_hi"] for row in tables["by_turn"])


def test_turns_with_too_few_conversations_are_said_to_be_left_out():
    from salesrl_jax.eval.report import format_tables

    tables = evaluation_tables(predictions(np.array([3] * 40 + [9] * 10)))
    assert [row["turn"] for row in tables["by_turn"]] == [1, 2, 3]
    assert tables["by_turn_left_out"] == {"from_turn": 4, "to_turn": 9, "min_conversations": 30}
    assert "(turns 4-9 left out: fewer than 30 conversations still running)" in format_tables(tables)


def test_evaluate_command_writes_the_report_and_plots(tiny_trained, tiny_arrays, tmp_path, capsys):
    for extra in ([], ["--quantized"]):
        out = tmp_path / ("int8" if extra else "f32")
        main(["evaluate", "--model", str(tiny_trained), "--data", str(tiny_arrays), "--out", str(out), *extra])
        assert "**By turn index**" in capsys.readouterr().out
        for name in ("report.md", "metrics.json", "predictions.parquet", "reliability.png", "auc_by_fraction.png",
                     "trajectories.png"):
            assert (out / name).stat().st_size > 100, name
        import pyarrow.parquet as pq

        rows = pq.read_table(out / "predictions.parquet").to_pylist()
        assert len(rows) == json.loads((out / "metrics.json").read_text())["turns"]
        assert all(0 <= r["prediction"] <= 1 and r["outcome"] in (0, 1) for r in rows)
        assert "AUC 95% CI" in (out / "report.md").read_text() and "NaN" not in (out / "metrics.json").read_text()
    f32 = json.loads((tmp_path / "f32" / "metrics.json").read_text())["last_turn"]["model"]
    int8 = json.loads((tmp_path / "int8" / "metrics.json").read_text())["last_turn"]["model"]
    assert abs(f32["auc"] - int8["auc"]) < 0.01

"""scripts/reference_selection.py: the selection bias of the strongest of several variants, by bootstrap."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import load_script


def _noisy(rng, labels, noise):
    return 1 / (1 + np.exp(-(labels + rng.normal(0, noise, size=len(labels)))))


def test_copies_of_one_variant_carry_no_selection_and_independent_equals_do():
    script = load_script("reference_selection")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=600).astype(float)
    one = _noisy(rng, labels, 2.0)
    model = _noisy(rng, labels, 2.0)
    copies = script.selection(model, {f"v{i}": one for i in range(4)}, labels, rounds=300, seed=0)
    assert copies["bias"] == pytest.approx(0.0, abs=1e-12)  # the maximum of copies is the copy, resample by resample
    # four independent variants of equal true AUC: their maximum gains from noise, so the bias is positive
    independent = script.selection(model, {f"v{i}": _noisy(rng, labels, 2.0) for i in range(4)}, labels,
                                   rounds=300, seed=0)
    assert independent["bias"] > 0.005
    assert independent["corrected"] == pytest.approx(independent["max"] - independent["bias"])
    assert independent["model_minus_corrected"] == pytest.approx(independent["model_minus_max"] + independent["bias"])
    assert 0 <= independent["p_model_above_max"] <= 1


def test_the_script_reads_crossval_predictions_and_refuses_a_run_without_baselines(tmp_path):
    script = load_script("reference_selection")
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 9, size=300)
    outcome = np.repeat(rng.integers(0, 2, size=300), lengths).astype(np.int8)
    rows = {"conversation_id": np.repeat([f"c{i}" for i in range(300)], lengths),
            "turn_index": np.concatenate([np.arange(n) for n in lengths]).astype(np.int32),
            "length": np.repeat(lengths, lengths).astype(np.int32), "outcome": outcome}
    columns = {name: _noisy(rng, outcome.astype(float), 2.0) for name in ("model", *script.TFIDF)}
    pq.write_table(pa.table({**rows, **columns}), tmp_path / "oof.parquet")
    out = script.main(script.Config(str(tmp_path / "oof.parquet"), turns=(2, 4), rounds=200))
    assert list(out) == ["2", "4", "last"] and out["last"]["strongest"] in script.TFIDF
    pq.write_table(pa.table({**rows, "model": columns["model"]}), tmp_path / "plain.parquet")
    with pytest.raises(SystemExit, match="TF-IDF variants"):
        script.main(script.Config(str(tmp_path / "plain.parquet")))

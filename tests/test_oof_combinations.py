"""scripts/oof_combinations.py: combinations of crossval's out-of-fold predictions, aligned across runs."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salesrl_jax.metrics.binary import roc_auc
from tests.conftest import load_script


def _oof(path, rows, **columns):
    table = {key: rows[key] for key in ("conversation_id", "turn_index", "length", "outcome", "fold")}
    pq.write_table(pa.table({**table, **columns}), path)
    return str(path)


@pytest.fixture()
def rows():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=200)
    conversation = np.repeat(np.arange(200), lengths)
    return {"conversation_id": np.array([f"c{c}" for c in conversation]),
            "turn_index": np.concatenate([np.arange(n) for n in lengths]).astype(np.int32),
            "length": np.repeat(lengths, lengths).astype(np.int32),
            "outcome": np.repeat(rng.integers(0, 2, size=200), lengths).astype(np.int8),
            "fold": np.repeat(np.arange(200) % 5, lengths).astype(np.int32)}


def test_columns_from_another_run_are_matched_by_conversation_and_turn(rows, tmp_path):
    script = load_script("oof_combinations")
    rng = np.random.default_rng(1)
    signal = rows["outcome"] + rng.normal(0, 1.5, size=len(rows["outcome"]))
    a = 1 / (1 + np.exp(-signal))
    b = 1 / (1 + np.exp(-(rows["outcome"] + rng.normal(0, 1.5, size=len(a)))))
    main = _oof(tmp_path / "a.parquet", rows, model_uncalibrated=a, tfidf_plain_whole=b)
    shuffled = rng.permutation(len(a))  # the other run's rows in another order
    other = _oof(tmp_path / "b.parquet", {k: v[shuffled] for k, v in rows.items()}, embedding_lr=a[shuffled])

    config = script.Config(main, extra=(f"{other}:embedding_lr=copy",), turns=(2,),
                           combine=("model_uncalibrated+copy", "model_uncalibrated+tfidf_plain_whole"))
    table = script.main(config)
    last = rows["turn_index"] == rows["length"] - 1
    labels = rows["outcome"].astype(float)
    # A column added to its own copy (matched back from the shuffled run) ranks like the column.
    assert table["model_uncalibrated+copy"]["last"] == pytest.approx(roc_auc(a[last], labels[last]))
    assert table["tfidf_plain_whole"]["last"] == pytest.approx(roc_auc(b[last], labels[last]))
    assert table["strongest TF-IDF"]["last"] == table["tfidf_plain_whole"]["last"]
    # Two independent noisy views of the outcome together rank it better than either.
    both = table["model_uncalibrated+tfidf_plain_whole"]["last"]
    assert both > max(table["model_uncalibrated"]["last"], table["tfidf_plain_whole"]["last"])


def test_runs_with_other_folds_are_refused(rows, tmp_path):
    script = load_script("oof_combinations")
    p = np.full(len(rows["outcome"]), 0.5)
    main = _oof(tmp_path / "a.parquet", rows, model_uncalibrated=p)
    other = _oof(tmp_path / "b.parquet", {**rows, "fold": (rows["fold"] + 1) % 5}, embedding_lr=p)
    with pytest.raises(SystemExit, match="folds differ"):
        script.main(script.Config(main, extra=(f"{other}:embedding_lr=x",), combine=("model_uncalibrated+x",)))
    renamed = {**rows, "conversation_id": np.char.add(rows["conversation_id"], "x")}
    with pytest.raises(SystemExit, match="not the same conversations.*c0x#0 is missing|c0#0 is missing"):
        script.main(script.Config(main, extra=(f"{_oof(tmp_path / 'c.parquet', renamed, embedding_lr=p)}"
                                               ":embedding_lr=x",), combine=("model_uncalibrated+x",)))
    with pytest.raises(SystemExit, match="FILE:COLUMN=NAME"):
        script.main(script.Config(main, extra=(other,)))
    # A fold assignment the files do not hold (a run without --repeats holds assignment 0 only): one line, no traceback.
    with pytest.raises(SystemExit, match="no fold assignment 1"):
        script.main(script.Config(main, repeat=1))

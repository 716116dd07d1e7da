"""How far combining predictors goes on a real corpus: the AUC by turn index of sums of the out-of-fold predictions
that `salesrl crossval` wrote, beside each input and the strongest TF-IDF variant at each turn.

    python scripts/oof_combinations.py runs/cv-p4g/oof_predictions.parquet \
        --extra runs/cv-minilm-p4g/oof_predictions.parquet:embedding_lr=minilm_lr \
        --combine model_uncalibrated+tfidf_plain_whole model_uncalibrated+minilm_lr+tfidf_plain_whole

Each combination adds its columns' logits, each standardised over all its pooled out-of-fold predictions: weights
fixed in advance, nothing fitted to the outcomes. It is an analysis of what the predictors carry together, not a
method to report as a model: the standardisation sees the pooled predictions of every fold. ``--extra FILE:COL=NAME``
brings a column from another crossval run on the same corpus (the same folds: crossval's are a seeded function of
the archive), matched by conversation and turn; the folds are checked to agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tyro

from salesrl_jax import help_text
from salesrl_jax.baselines.fit import TFIDF_METHODS
from salesrl_jax.metrics.binary import roc_auc
from salesrl_jax.pipelines.crossval import read_oof

TFIDF = TFIDF_METHODS  # the four variants, named as crossval names them


@dataclasses.dataclass(frozen=True)
class Config:
    oof: tyro.conf.Positional[str]
    """A crossval run's oof_predictions.parquet (its model and baselines)."""
    extra: tuple[str, ...] = ()
    """Columns from other crossval runs on the same corpus, as FILE:COLUMN=NAME."""
    combine: tuple[str, ...] = ("model_uncalibrated+tfidf_plain_whole",)
    """Combinations to score, each as COLUMN+COLUMN[+...] (names from --oof or --extra)."""
    turns: tuple[int, ...] = (2, 3, 4, 6, 8, 12)
    """Turn indices to report (conversations still running there), besides the last turn."""
    repeat: int = 0
    """The fold assignment to read from each file, of runs with --repeats (0: the first, fold seed --fold-seed)."""


def _read(path: str, repeat: int) -> dict[str, np.ndarray]:
    try:
        return read_oof(path, repeat)
    except ValueError as error:  # no such fold assignment in the file: one line naming it
        raise SystemExit(str(error)) from None


def _keys(rows: dict[str, np.ndarray]) -> np.ndarray:
    return np.char.add(np.char.add(rows["conversation_id"].astype(str), "#"), rows["turn_index"].astype(str))


def load_columns(config: Config) -> dict[str, np.ndarray]:
    """The main file's columns plus every extra column, aligned to the main file's rows."""
    rows = _read(config.oof, config.repeat)
    keys = _keys(rows)
    for spec in config.extra:
        try:
            path, rest = spec.rsplit(":", 1)
            column, name = rest.split("=", 1)
        except ValueError:
            raise SystemExit(f"--extra {spec!r}: expected FILE:COLUMN=NAME") from None
        other = _read(path, config.repeat)
        where = dict(zip(_keys(other).tolist(), range(len(other["fold"]))))
        missing = [k for k in keys.tolist() if k not in where]
        if missing or len(where) != len(keys):
            example = f" ({missing[0]} is missing)" if missing else f" ({len(where)} rows against {len(keys)})"
            raise SystemExit(f"{path}: not the same conversations and turns as {config.oof}{example}")
        index = np.array([where[k] for k in keys.tolist()])
        if not np.array_equal(other["fold"][index], rows["fold"]):
            raise SystemExit(f"{path}: its folds differ from {config.oof}'s: the runs are not comparable")
        if column not in other:
            raise SystemExit(f"{path}: no column {column!r} (it has {sorted(other)})")
        rows[name] = other[column][index]
    return rows


def combined(rows: dict[str, np.ndarray], spec: str) -> np.ndarray:
    """sigmoid(sum_c (logit p_c - mean) / std) over the columns c of ``spec`` (COLUMN+COLUMN...)."""
    total = 0.0
    for column in spec.split("+"):
        if column not in rows:
            raise SystemExit(f"--combine {spec!r}: no column {column!r} (there are {sorted(rows)})")
        p = np.clip(rows[column].astype(np.float64), 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p))
        total = total + (logit - logit.mean()) / logit.std()
    return 1.0 / (1.0 + np.exp(-total))


def auc_table(rows: dict[str, np.ndarray], columns: dict[str, np.ndarray], turns) -> dict[str, dict]:
    """{name: {turn or "last": AUC}} over the conversations still running at each turn (1-based)."""
    labels, index, length = rows["outcome"].astype(np.float64), rows["turn_index"], rows["length"]
    masks = {**{k: index == k - 1 for k in turns}, "last": index == length - 1}
    return {name: {k: roc_auc(values[m], labels[m]) for k, m in masks.items()} for name, values in columns.items()}


def main(config: Config) -> dict[str, dict]:
    rows = load_columns(config)
    tfidf = {c: rows[c] for c in TFIDF if c in rows}
    single = sorted({c for spec in config.combine for c in spec.split("+")})
    table = auc_table(rows, {**tfidf, **{c: rows[c] for c in single if c not in tfidf},
                             **{spec: combined(rows, spec) for spec in config.combine}}, config.turns)
    if tfidf:
        table["strongest TF-IDF"] = {k: max(table[c][k] for c in tfidf) for k in table[next(iter(tfidf))]}
    header = list(next(iter(table.values())))
    width = max(len(name) for name in table) + 2
    print("AUC".ljust(width) + "".join(f"{str(k):>8}" for k in header))
    for name, values in table.items():
        print(name.ljust(width) + "".join(f"{values[k]:8.3f}" for k in header))
    return table


if __name__ == "__main__":
    main(help_text.cli(Config))

"""`salesrl crossval`: k-fold cross-validation of the library's recipe and of strong baselines on one archive.

Per fold (folds stratified by outcome, a conversation never split):

* **the model**: the training folds' cached arrays (embedded once for the whole archive, through the
  cache) train the config with early stopping on an inner validation split of the training folds only
  (the best checkpoint by its log loss; each fold its own split, ``data.split_seed + fold``), are
  recalibrated on that same inner split as every training run is (the config's ``recalibration``, temperature
  scaling by default: the slope of the logit alone; a Platt intercept fitted on 150-180 conversations did not
  carry over to the held-out fold, docs/benchmarks.md), and predict every turn of the held-out fold (the
  recalibrated model, and the best checkpoint before it as ``model_uncalibrated``);
  with ``seeds > 1`` the held-out predictions are the mean over independently seeded models;
* **the baselines** (`salesrl_jax.baselines`): fitted on the same training conversations, predicting
  the same prefixes (the variants fitted on prefixes read at most ``baseline_max_prefixes`` of them: past it, a
  random subset of each training conversation's, said in the report and in ``metrics.json``'s
  ``baseline_prefixes``).

Every prediction after turn t reads turns 1..t only. The pooled out-of-fold predictions are scored by
turn index k over the conversations still running at k (what a live system faces) and at the last
turn: AUC, Brier, log loss and ECE, each with a bootstrap interval over conversations, and the paired
interval of the AUC difference between the model and the strongest TF-IDF variant at that point. By
fraction seen is reported beside them only, labelled: choosing turn ceil(f T) uses the total length T.

**Repeated cross-validation** (``repeats`` R > 1): the whole procedure again under R fold assignments (fold seeds
``fold_seed .. fold_seed + R - 1``), so that every conversation has R out-of-fold predictions per method. On a
corpus of about 1,000 conversations one assignment moves a model-minus-baseline AUC difference by about 0.01 (the
baselines' as much as the model's), which is the size of the differences being measured. Every figure is then the
mean over the repetitions of the figure one repetition gives, and every interval resamples conversations once for
all repetitions (`salesrl_jax.metrics.bootstrap`, "Repeated cross-validation"): averaging removes the noise of
the fold assignment, the interval keeps the noise of the conversations.

Outputs in OUT: ``report.md``, ``metrics.json`` (schema below), ``oof_predictions.parquet`` (with a ``repeat``
column), plots, and one folder per fold (its arrays, models and predictions; ``repeat-R/fold-K`` for repetitions
after the first). A killed run rerun with the same arguments keeps its finished folds.

``metrics.json``: ``{"methods": {name: {"by_turn": {k: {auc, auc_lo, auc_hi, brier, brier_lo, brier_hi,
log_loss, log_loss_lo, log_loss_hi, ece, ece_lo, ece_hi, ece_null, ece_null_hi, n}}, "last": {...},
"by_fraction": {f: {...}}}},
"paired": {point: {"reference", "diff", "lo", "hi", "by_repeat", "by_fold"}}, "mean_auc_turns_4_12": {name: value},
"mean_auc_turns_4_12_difference": {"reference", "diff", "lo", "hi", "by_repeat", "by_fold"} (the model less the TF-IDF
variant with the highest mean, its paired interval resampling conversations once for the four turn indices; with the
baselines only),
"conversations", "folds", "repeats", "fold_seeds", "seeds", "data", "embedder", "baseline_prefixes" (with the
baselines: {"read", "of"}, the training prefixes the prefix-fitted variants read, summed over folds)}``; a point is
a turn index ("1", "2", ...) or "last"; ``by_repeat``: the difference in each repetition, against the reference the
means chose (one entry without repeats); ``by_fold``: per repetition, the difference within each held-out fold against
that same reference (null where a fold holds one outcome), which is what one held-out file of that size would read.
``ece_null`` and ``ece_null_hi``: the median and 95th percentile of the ECE a perfectly calibrated predictor with
the same predictions would read at this n (`salesrl_jax.metrics.bootstrap.calibrated_null`): the sampling floor
an ECE bar must be read against.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable

import numpy as np

from salesrl_jax import metrics
from salesrl_jax.arrays.build import archive_hash, embed_archive
from salesrl_jax.arrays.split import stratified_folds
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.arrays.subset import write_subset
from salesrl_jax.baselines.fit import MAX_PREFIX_ROWS
from salesrl_jax.data.readers import ArchiveReader
from salesrl_jax.data.validation import reading_limits, reading_record
from salesrl_jax.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from salesrl_jax.io.resumable_map import check_run_record
from salesrl_jax.metrics.bootstrap import (
    bootstrap_interval,
    calibrated_null,
    estimate,
    paired_difference,
    paired_mean_auc_difference,
)
from salesrl_jax.metrics.positions import FRACTIONS, turn_at_fraction
from salesrl_jax.models.predict import predict_arrays, shared_predict
from salesrl_jax.run.checkpoints import find_checkpoint
from salesrl_jax.run.config import TrainConfig, with_overrides
from salesrl_jax.run.trained_model import TrainedModel
from salesrl_jax.train.loop import train_and_evaluate

TURN_POINTS = (1, 2, 3, 4, 6, 8, 12, 16)
MIN_AT_POINT = 30  # fewer conversations still running at a turn: reported, but marked as thin
MODEL = "model"
METRICS: dict[str, Callable] = {"auc": metrics.roc_auc, "brier": metrics.brier, "log_loss": metrics.log_loss,
                                "ece": metrics.expected_calibration_error}


@dataclasses.dataclass
class CrossvalResult:
    out: Path
    metrics: dict

    def summary(self) -> str:
        return format_summary(self.metrics) + f"\n\nreport: {self.out / 'report.md'}"


# --- one fold ---------------------------------------------------------------------------------

def write_columns(path: Path, columns: dict[str, np.ndarray | list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), tmp)


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def read_oof(path: str | os.PathLike[str], repeat: int = 0) -> dict[str, np.ndarray]:
    """The out-of-fold predictions of one fold assignment (``repeat``) from a run's ``oof_predictions.parquet``,
    column by column: every conversation's turns once, as a run without repeats wrote them."""
    columns = _read_columns(Path(path))
    repeats = columns.pop("repeat", np.zeros(len(columns["turn_index"]), np.int32))
    if not (repeats == repeat).any():
        raise ValueError(f"{path}: holds no fold assignment {repeat} (it has {sorted(set(repeats.tolist()))})")
    keep = repeats == repeat
    return {name: values[keep] for name, values in columns.items()}


def _model_fold(config: TrainConfig, seeds: int, train_arrays: TurnArrays, test_arrays: TurnArrays,
                fold_dir: Path, fold: int) -> dict[str, np.ndarray | list]:
    """Train (early stopping on the inner split), recalibrate on the inner split, predict the held-out fold.

    Each fold draws its own inner split (``data.split_seed + fold``): the split is a seeded hash of the id, so
    one seed held out the same conversations in every fold, and their base rate then biased every fold's
    stopping and recalibration alike (PersuasionForGood: 0.568 against 0.527 for the rest; every fold's Platt
    intercept came out positive and the pooled last-turn predictions averaged 0.592 against a rate of 0.536).

    Folds and seeds (and the recalibrated model, whose graph is its source's) share one compiled predictor
    (`shared_predict`)."""
    calibrated, raw = [], []
    for s in range(seeds):
        seed_dir = fold_dir / f"seed-{s}"
        run_config = with_overrides(config, {"data.train": str(train_arrays.path), "seed": config.seed + s,
                                             "data.split_seed": config.data.split_seed + fold})
        # The run recalibrates its best model on the inner split (``recalibration``, temperature by default) where
        # that split shows it miscalibrated (``recalibration_level``), and its directory serves that; the best
        # checkpoint is the model before it.
        train_and_evaluate(run_config, seed_dir / "model", progress=False)
        served, best = find_checkpoint(seed_dir / "model"), find_checkpoint(seed_dir / "model", served=False)

        def predicted(directory: Path):
            model = TrainedModel(directory)
            return predict_arrays(shared_predict(model.graphdef), model.params, test_arrays,
                                  rows=model.config.eval_rows_per_minibatch)

        calibrated.append(predicted(served))
        # Not recalibrated (an inner split too small to fit on): the served model is the best, predicted once.
        raw.append(calibrated[-1] if served == best else predicted(best))
    first = calibrated[0]
    return {"conversation_id": [first.ids[c] for c in first.conversation], "turn_index": first.turn_index,
            "length": first.length, "outcome": first.outcome,
            MODEL: np.mean([p.prediction for p in calibrated], axis=0).astype(np.float32),
            f"{MODEL}_uncalibrated": np.mean([p.prediction for p in raw], axis=0).astype(np.float32)}


def _in_fold(fold_of: dict[str, int], fold: int, held_out: bool) -> Callable:
    """``keep(part)`` for `write_subset`: the labelled conversations of ``fold`` (held out) or of the others."""
    def keep(part) -> np.ndarray:
        return np.array([(fold_of.get(i) == fold) == held_out for i in part.ids]) & (np.asarray(part.outcome) >= 0)

    return keep


# --- scoring ----------------------------------------------------------------------------------

def _point_metrics(probs: np.ndarray, labels: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    """Every metric of ``probs`` (``[n]``, or ``[R, n]`` over repetitions: their mean) with its intervals."""
    out: dict[str, float] = {"n": int(len(labels))}
    for name, fn in METRICS.items():
        out[name] = estimate(fn, probs, labels) if len(labels) else float("nan")
        out[f"{name}_lo"], out[f"{name}_hi"] = bootstrap_interval(fn, probs, labels, rounds=rounds, seed=seed)
    out["ece_null"], out["ece_null_hi"] = calibrated_null(metrics.expected_calibration_error, probs, rounds=rounds,
                                                          seed=seed)
    return out


def aligned_rows(pooled: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """``[R, n]`` indices of the rows in ``mask``, one row per repetition (the ``repeat`` column; R = 1 without
    it), each conversation in the same column of every row. Without repetitions the rows keep their order."""
    repeat = pooled.get("repeat")
    if repeat is None or not len(repeat) or int(repeat.max()) == 0:
        return np.flatnonzero(mask)[None]
    ids = np.asarray(pooled["conversation_id"])
    rows = []
    for r in range(int(repeat.max()) + 1):
        chosen = np.flatnonzero(mask & (repeat == r))
        rows.append(chosen[np.argsort(ids[chosen], kind="stable")])
    if any(len(x) != len(rows[0]) or (ids[x] != ids[rows[0]]).any() for x in rows[1:]):
        raise AssertionError("the repetitions predicted different conversations at one point")  # never bad input
    return np.stack(rows)


def score_predictions(pooled: dict[str, np.ndarray], methods: list[str], rounds: int = 1000, seed: int = 0) -> dict:
    """Metrics of every method at every point, with bootstrap intervals, and the paired model - TF-IDF intervals;
    over repetitions of the cross-validation (a ``repeat`` column), the means of the repetitions' figures."""
    turn, length, outcome = pooled["turn_index"], pooled["length"], pooled["outcome"].astype(np.float64)
    points: dict[str, np.ndarray] = {str(k): turn == k - 1 for k in TURN_POINTS if (turn == k - 1).any()}
    points["last"] = turn == length - 1
    rows = {point: aligned_rows(pooled, mask) for point, mask in points.items()}

    def at(method: str, where: np.ndarray) -> np.ndarray:  # [n] for one repetition, [R, n] for several
        probs = pooled[method][where].astype(np.float64)
        return probs[0] if len(where) == 1 else probs

    result: dict = {"methods": {}, "paired": {}}
    for method in methods:
        entry = {"by_turn": {}, "last": None, "by_fraction": {}}
        for point, where in rows.items():
            scored = _point_metrics(at(method, where), outcome[where[0]], rounds, seed)
            if point == "last":
                entry["last"] = scored
            else:
                entry["by_turn"][point] = scored
        for f in FRACTIONS[:-1]:
            where = aligned_rows(pooled, turn == turn_at_fraction(f, length))
            entry["by_fraction"][str(f)] = {"auc": estimate(metrics.roc_auc, at(method, where), outcome[where[0]]),
                                            "n": int(where.shape[1])}
        result["methods"][method] = entry
    tfidf = [m for m in methods if m.startswith("tfidf")]
    if MODEL in methods and tfidf:
        for point, where in rows.items():
            def auc_at(m: str) -> float:
                scores = result["methods"][m]
                return (scores["last"] if point == "last" else scores["by_turn"][point])["auc"]

            reference = max(tfidf, key=lambda m: np.nan_to_num(auc_at(m), nan=-1.0))
            model, base, labels = at(MODEL, where), at(reference, where), outcome[where[0]]
            diff, lo, hi = paired_difference(metrics.roc_auc, model, base, labels, rounds=rounds, seed=seed)
            by_repeat = [float(metrics.roc_auc(a, labels) - metrics.roc_auc(b, labels))
                         for a, b in zip(np.atleast_2d(model), np.atleast_2d(base))]
            result["paired"][point] = {"reference": reference, "diff": diff, "lo": lo, "hi": hi,
                                       "by_repeat": by_repeat}
            if "fold" in pooled:  # what one held-out fold shows: a test file of that size reads one such draw
                result["paired"][point]["by_fold"] = [_by_fold(pooled, r, reference, outcome) for r in where]
    mid = [str(k) for k in (4, 6, 8, 12) if str(k) in points]
    result["mean_auc_turns_4_12"] = {m: float(np.mean([result["methods"][m]["by_turn"][k]["auc"] for k in mid]))
                                     if mid else float("nan") for m in methods}
    means = {m: v for m, v in result["mean_auc_turns_4_12"].items() if m.startswith("tfidf")}
    if MODEL in methods and means and mid:
        reference = max(means, key=lambda m: np.nan_to_num(means[m], nan=-1.0))

        def mean_auc(method: str, repeat: int) -> float:
            return float(np.mean([metrics.roc_auc(pooled[method][rows[k][repeat]], outcome[rows[k][0]])
                                  for k in mid]))

        repeats = len(rows["last"])
        ids = np.asarray(pooled["conversation_id"])
        diff, lo, hi = paired_mean_auc_difference(
            [(ids[rows[k][0]], at(MODEL, rows[k]), at(reference, rows[k]), outcome[rows[k][0]]) for k in mid],
            rounds=rounds, seed=seed)
        result["mean_auc_turns_4_12_difference"] = {
            "reference": reference, "diff": diff, "lo": lo, "hi": hi,
            "by_repeat": [mean_auc(MODEL, r) - mean_auc(reference, r) for r in range(repeats)]}
        if "fold" in pooled:  # each fold's mean of its four differences (None where one holds one outcome)
            per_point = [[_by_fold(pooled, r, reference, outcome) for r in rows[k]] for k in mid]
            result["mean_auc_turns_4_12_difference"]["by_fold"] = [
                [None if any(p[r][f] is None for p in per_point) else float(np.mean([p[r][f] for p in per_point]))
                 for f in range(len(per_point[0][r]))] for r in range(repeats)]
    return result


def _by_fold(pooled: dict[str, np.ndarray], rows: np.ndarray, reference: str, outcome: np.ndarray) -> list:
    """The model's AUC less ``reference``'s in each fold of one assignment's ``rows`` (None where a fold holds one
    outcome only)."""
    fold = pooled["fold"][rows]
    out = []
    for k in np.unique(fold):
        chosen = rows[fold == k]
        labels = outcome[chosen]
        out.append(float(metrics.roc_auc(pooled[MODEL][chosen], labels)
                         - metrics.roc_auc(pooled[reference][chosen], labels)) if 0 < labels.mean() < 1 else None)
    return out


# --- reports ----------------------------------------------------------------------------------

def _cell(entry: dict, key: str) -> str:
    value = entry.get(key, float("nan"))
    if value is None or not np.isfinite(value):
        return "-"
    lo, hi = entry.get(f"{key}_lo"), entry.get(f"{key}_hi")
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and np.isfinite(lo) else f"{value:.3f}"


def format_summary(result: dict, design: str | None = None) -> str:
    """The AUC by turn of every method, the paired differences and the mean over turns 4-12, as Markdown;
    ``design`` says where the predictions come from (default: the cross-validation's folds)."""
    methods = list(result["methods"])
    points = list(result["methods"][methods[0]]["by_turn"])
    repeats = result.get("repeats", 1)
    if design is None:
        design = f"{result['folds']} folds" + (f" x {repeats} fold assignments (means over them)"
                                               if repeats > 1 else "")
    lines = [f"AUC by turn index (conversations still running; 95% bootstrap intervals), {result['conversations']} "
             f"conversations, {design}",
             "| method | " + " | ".join(f"turn {p}" for p in points) + " | last turn |",
             "|---|" + "---:|" * (len(points) + 1)]
    for m in methods:
        entry = result["methods"][m]
        lines.append(f"| {m} | " + " | ".join(f"{entry['by_turn'][p]['auc']:.3f}" for p in points)
                     + f" | {entry['last']['auc']:.3f} |")
    lines.append("| n | " + " | ".join(str(result["methods"][methods[0]]["by_turn"][p]["n"]) for p in points)
                 + f" | {result['methods'][methods[0]]['last']['n']} |")
    if result["paired"]:
        # Over several assignments, each one's difference; over one, each fold's (a single held-out file's draw).
        folds = repeats == 1 and all("by_fold" in p for p in result["paired"].values())
        each = " | in each assignment" if repeats > 1 else (" | in each fold" if folds else "")
        lines += ["", "model minus the strongest TF-IDF variant at each point (paired bootstrap, 95%)",
                  f"| point | reference | AUC difference | interval{each} |",
                  "|---|---|---:|---|" + ("---|" if each else "")]
        for point, p in result["paired"].items():
            values = p.get("by_repeat", []) if repeats > 1 else (p["by_fold"][0] if folds else [])
            per = (" | " + _per_fold(values, with_mean=folds)) if each else ""
            lines.append(f"| {point} | {p['reference']} | {p['diff']:+.3f} | [{p['lo']:+.3f}, {p['hi']:+.3f}]{per} |")
    if "mean_auc_turns_4_12_difference" in result:
        lines += ["", _mean_difference_line(result)]
    return "\n".join(lines)


def _per_fold(values: list, with_mean: bool) -> str:
    """Differences in a row ("-" where a fold holds one outcome), and with ``with_mean`` their mean: the pooled
    difference mixes the folds' models, and a method whose scale differs between folds loses more to pooling."""
    text = " ".join("-" if d is None else f"{d:+.3f}" for d in values)
    known = [d for d in values if d is not None]
    return text + (f"; mean {np.mean(known):+.3f}" if with_mean and known else "")


def _mean_difference_line(result: dict) -> str:
    d = result["mean_auc_turns_4_12_difference"]
    each = (f" (in each assignment: {' '.join(f'{x:+.3f}' for x in d['by_repeat'])})"
            if result.get("repeats", 1) > 1 else "")
    if not each and "by_fold" in d:
        each = f" (in each fold: {_per_fold(d['by_fold'][0], with_mean=True)})"
    interval = f" [{d['lo']:+.3f}, {d['hi']:+.3f}]" if "lo" in d else ""
    return (f"Mean AUC over turns 4, 6, 8, 12, model minus the strongest TF-IDF variant on that mean "
            f"({d['reference']}): {d['diff']:+.3f}{interval}{each}")


def last_turn_table(result: dict) -> list[str]:
    """Every method's metrics at the last turn with their intervals, beside the ECE a calibrated predictor reads at
    this size, as Markdown lines."""
    lines = ["| method | AUC | Brier | log loss | ECE | ECE if calibrated (median, 95th pct) |",
             "|---|---|---|---|---|---|"]
    for m, entry in result["methods"].items():
        last = entry["last"]
        floor = (f"{last['ece_null']:.3f}, {last['ece_null_hi']:.3f}" if np.isfinite(last.get("ece_null", np.nan))
                 else "-")
        lines.append(f"| {m} | " + " | ".join(_cell(last, k) for k in METRICS) + f" | {floor} |")
    return lines + ["", "ECE if calibrated: the ECE a perfectly calibrated predictor with the same predictions reads "
                    "at this number of conversations (outcomes drawn from the predictions). A measured ECE below its "
                    "95th percentile cannot be told from perfect calibration here."]


def _pooling_note(result: dict) -> str:
    each = ("the per-fold differences and their mean are printed beside the pooled one. One fold, or one held-out "
            "test file, is one draw of a few hundred conversations (`scripts/replicate_summary.py` summarises several "
            "held-out files' reports)." if result.get("repeats", 1) == 1 else
            "each fold's difference is in `metrics.json` (`by_fold`), beside the pooled one.")
    return (f"Every AUC above is computed on the {result['folds']} folds' out-of-fold predictions pooled, which mixes "
            f"{result['folds']} models: a method whose predictions sit on a different scale in each fold (the "
            "whole-dialogue TF-IDF variants, which are not recalibrated on prefixes) can lose more AUC to pooling than "
            f"a recalibrated one, so {each}")


def write_crossval_report(result: dict, out: Path) -> Path:
    methods = list(result["methods"])
    repeats = result.get("repeats", 1)
    seeds = ", ".join(map(str, result.get("fold_seeds", [])))
    repeated = (f" The whole cross-validation ran under {repeats} fold assignments (fold seeds {seeds}): every figure "
                "is the mean over them of what one gives, and every interval resamples conversations once for all of "
                "them." if repeats > 1 else "")
    lines = [f"# Cross-validation: {result['data']}", "",
             f"{result['conversations']} labelled conversations, {result['folds']} folds stratified by outcome "
             f"(a conversation never split), {result['seeds']} model seed(s) per fold. Every prediction after turn "
             f"t reads turns 1..t only.{repeated}", "",
             f"The model's text: `{result.get('embedder', 'unrecorded')}` (`embedder.kind auto` reads a small archive of "
             "real conversations as n-grams, simulator data as hashed embeddings).", "", format_summary(result), "",
             _pooling_note(result), "",
             "## Last turn (95% bootstrap intervals over conversations)", "", *last_turn_table(result)]
    lines += ["", "## By turn index, every metric", ""]
    for m in methods:
        lines += [f"**{m}**", "", "| turn | n | AUC | Brier | log loss | ECE |", "|---:|---:|---|---|---|---|"]
        for point, entry in result["methods"][m]["by_turn"].items():
            thin = " (thin)" if entry["n"] < MIN_AT_POINT else ""
            lines.append(f"| {point}{thin} | {entry['n']} | " + " | ".join(_cell(entry, k) for k in METRICS) + " |")
        lines.append("")
    lines += ["## Mean AUC over turns 4, 6, 8, 12", "", "| method | mean AUC |", "|---|---:|"]
    lines += [f"| {m} | {v:.3f} |" for m, v in result["mean_auc_turns_4_12"].items()]
    if "mean_auc_turns_4_12_difference" in result:
        lines += ["", _mean_difference_line(result)]
    read = result.get("baseline_prefixes", {})
    if read and read["read"] < read["of"]:
        lines += ["", f"The TF-IDF variants fitted on prefixes read {read['read']:,} of the folds' {read['of']:,} "
                  "training prefixes (`--baseline-max-prefixes`): a random subset of each training conversation's. "
                  "The whole-dialogue variants read every training conversation, and every held-out prefix is "
                  "predicted."]
    lines += ["", "## By fraction seen (uses the total length T, which a live system does not know)", "",
              "| method | " + " | ".join(f"{float(f):.0%}" for f in FRACTIONS[:-1]) + " |",
              "|---|" + "---:|" * (len(FRACTIONS) - 1)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{v['auc']:.3f}" for v in result["methods"][m]["by_fraction"].values())
                     + " |")
    lines += ["", "![AUC by turn](auc_by_turn.png)", "", "![reliability at the last turn](reliability.png)", ""]
    return write_text_atomic(out / "report.md", "\n".join(lines))


def plot_auc_by_turn(result: dict, path: Path) -> None:
    """Every method's AUC by turn index with its bootstrap band (`score_predictions`' result)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m, entry in result["methods"].items():
        points = list(entry["by_turn"])
        x = [int(p) for p in points]
        ax.plot(x, [entry["by_turn"][p]["auc"] for p in points], marker="o", lw=2.2 if m == MODEL else 1.2, label=m)
        ax.fill_between(x, [entry["by_turn"][p]["auc_lo"] for p in points],
                        [entry["by_turn"][p]["auc_hi"] for p in points], alpha=0.12)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="turn index k (conversations still running)", ylabel="ROC-AUC", title="AUC by turn, 95% bootstrap")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_results(result: dict, pooled: dict[str, np.ndarray], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_auc_by_turn(result, out / "auc_by_turn.png")
    last = pooled["turn_index"] == pooled["length"] - 1
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    reference = result["paired"].get("last", {}).get("reference")
    for m in [MODEL, reference] if reference else [MODEL]:
        rel = metrics.reliability(pooled[m][last].astype(np.float64), pooled["outcome"][last].astype(np.float64))
        keep = rel.counts > 0
        ax.plot(rel.mean_prob[keep], rel.frequency[keep], marker="o", label=m)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="reliability, last turn")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)


# --- the command ------------------------------------------------------------------------------

def crossval(data: str | os.PathLike[str], out: str | os.PathLike[str], *, folds: int = 5,
             config: TrainConfig | None = None, seeds: int = 1, fold_seed: int = 0, baselines: bool = True,
             bootstrap: int = 1000, progress: bool = True, label_key: str | None = None,
             repeats: int = 1, speakers: Mapping[str, str] | Iterable[str] = (),
             baseline_max_prefixes: int | None = MAX_PREFIX_ROWS) -> CrossvalResult:
    """Cross-validate ``config`` (the default recipe if None) and the baselines on archive ``data`` (see the
    module docstring), under ``repeats`` fold assignments (fold seeds ``fold_seed``, ``fold_seed + 1``, ...);
    resumable: finished folds are kept. ``label_key`` and ``speakers`` say how the archive reads
    (`salesrl_jax.data.validation.reading_limits`), for the model and the baselines alike."""
    from tqdm import tqdm

    config = config or TrainConfig()
    if baselines and importlib.util.find_spec("sklearn") is None:
        raise ValueError("the baselines need scikit-learn: pip install 'salesrl-jax[baselines]' (or pass --no-baselines)")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    limits = reading_limits(label_key, speakers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_config = json.loads(config.to_json())
    run_config["data"].pop("train")  # set per fold
    # Not the number of repeats: each repetition's folds are what they would be alone, so a run can be extended.
    check_run_record(out / "crossval.json", {"data_sha256": archive_hash(data), "folds": folds, "seeds": seeds,
                                             "fold_seed": fold_seed, "baselines": baselines, "config": run_config,
                                             "inner_split_seed": "data.split_seed + fold",
                                             "recalibration": "temperature",
                                             **reading_record(limits),
                                             # Only where it differs from the default, so that earlier runs resume.
                                             **({"baseline_max_prefixes": baseline_max_prefixes}
                                                if baselines and baseline_max_prefixes != MAX_PREFIX_ROWS else {})},
                     "a cross-validation")
    cache = out / "embeddings.sqlite" if config.embedder.is_remote else None
    arrays = embed_archive(data, out / "arrays", config.embedder, cache_path=cache, label_key=label_key,
                           speakers=limits.speaker_names).arrays
    ids, outcomes = [], []
    for part in arrays.iter_parts():
        labelled = np.flatnonzero(np.asarray(part.outcome) >= 0)
        ids += [part.ids[c] for c in labelled]
        outcomes += [int(part.outcome[c]) for c in labelled]
    if len(ids) < folds:
        raise ValueError(f"{data}: {len(ids)} labelled conversations cannot fill {folds} folds "
                         f"({arrays.labels_note()})")
    table = None
    if baselines:
        from salesrl_jax.baselines.fit import fit_baselines
        from salesrl_jax.baselines.prefixes import build_prefixes

        table = build_prefixes(ArchiveReader(data, limits=limits), arrays, data)

    bar = tqdm(total=repeats * folds * (1 + baselines), unit="step", desc="crossval",
               disable=None if progress else True, dynamic_ncols=True)
    pooled_parts = []
    prefixes_read = {"read": 0, "of": 0}
    for repeat in range(repeats):
        seed = fold_seed + repeat
        fold_of = dict(zip(ids, stratified_folds(ids, np.array(outcomes), folds, seed).tolist()))
        table_fold = np.array([fold_of[i] for i in table.ids]) if baselines else None
        for k in range(folds):
            # The first assignment's folds where a run without repeats keeps them, so that it can be extended.
            fold_dir = out / f"fold-{k}" if repeat == 0 else out / f"repeat-{repeat}" / f"fold-{k}"
            model_file, base_file = fold_dir / "model.parquet", fold_dir / "baselines.parquet"
            base_fit = fold_dir / "baselines.json"  # what the fits read and chose
            if not model_file.exists():
                bar.set_postfix(repeat=repeat, fold=k, step="model")
                train_arrays = write_subset(arrays, _in_fold(fold_of, k, held_out=False), fold_dir / "train-arrays")
                test_arrays = write_subset(arrays, _in_fold(fold_of, k, held_out=True), fold_dir / "test-arrays")
                write_columns(model_file, _model_fold(config, seeds, train_arrays, test_arrays, fold_dir, k))
            bar.update(1)
            if baselines and not base_file.exists():
                bar.set_postfix(repeat=repeat, fold=k, step="baselines")
                fitted = fit_baselines(table, np.flatnonzero(table_fold != k), np.flatnonzero(table_fold == k),
                                       seed=seed, max_prefix_rows=baseline_max_prefixes)
                write_json_atomic(base_fit, {"prefix_rows": fitted.prefix_rows, "of": fitted.of,
                                             "chosen_c": fitted.chosen_c})
                write_columns(base_file, {"conversation_id": [table.ids[c] for c in table.conversation[fitted.rows]],
                                          "turn_index": table.turn_index[fitted.rows], **fitted.probs})
            if baselines:
                bar.update(1)
                if base_fit.exists():  # a fold finished before this record existed is left out of the count
                    fit = json.loads(base_fit.read_text())
                    prefixes_read = {"read": prefixes_read["read"] + fit["prefix_rows"],
                                     "of": prefixes_read["of"] + fit["of"]}
            joined = _join_fold(model_file, base_file if baselines else None, k)
            joined["repeat"] = np.full(len(joined["turn_index"]), repeat, np.int32)
            pooled_parts.append(joined)
    bar.close()

    pooled = {key: np.concatenate([p[key] for p in pooled_parts]) for key in pooled_parts[0]}
    write_columns(out / "oof_predictions.parquet", pooled)
    methods = [MODEL, f"{MODEL}_uncalibrated"] + [m for m in pooled if m not in (
        MODEL, f"{MODEL}_uncalibrated", "conversation_id", "turn_index", "length", "outcome", "fold", "repeat")]
    result = score_predictions(pooled, methods, rounds=bootstrap, seed=fold_seed)
    result.update(conversations=len(ids), folds=folds, repeats=repeats,
                  fold_seeds=list(range(fold_seed, fold_seed + repeats)), seeds=seeds, data=str(data),
                  embedder=arrays.identity.key, **({"baseline_prefixes": prefixes_read} if baselines else {}))
    write_json_atomic(out / "metrics.json", result)
    plot_results(result, pooled, out)
    write_crossval_report(result, out)
    return CrossvalResult(out, result)


def _join_fold(model_file: Path, base_file: Path | None, fold: int) -> dict[str, np.ndarray]:
    """One fold's model and baseline predictions on the same rows (conversation id, turn index)."""
    model = _read_columns(model_file)
    model["fold"] = np.full(len(model["turn_index"]), fold, np.int32)
    if base_file is None:
        return model
    base = _read_columns(base_file)
    order = rows_in_order(base["conversation_id"], base["turn_index"], model["conversation_id"], model["turn_index"])
    if len(order) != len(base["turn_index"]):
        raise AssertionError("the model and the baselines predicted different prefixes")  # never bad input
    return {**model, **{k: v[order] for k, v in base.items() if k not in ("conversation_id", "turn_index")}}


def rows_in_order(ids, turns, wanted_ids, wanted_turns) -> np.ndarray:
    """The index among rows ``(ids, turns)`` of each wanted (conversation id, turn index), in the wanted order;
    every wanted row must be there (the model and the baselines predict the same prefixes)."""
    position = {(c, int(t)): i for i, (c, t) in enumerate(zip(ids, turns))}
    order = np.array([position.get((c, int(t)), -1) for c, t in zip(wanted_ids, wanted_turns)], np.int64)
    if (order < 0).any():
        raise AssertionError("the model and the baselines predicted different prefixes")  # never bad input
    return order

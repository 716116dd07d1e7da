"""Evaluation of the confidence module: does low confidence find the wrong predictions and the unfamiliar
conversations, and do the intervals hold their nominal coverage?

* **Selective prediction** (all turns): AURC of the module's confidence against the baseline ``|p - 0.5|``, the
  oracle's ``|q - 0.5|`` (simulator data) and the optimal ranking, for two losses: the 0/1 error at 0.5 and the
  squared error ``(y - p)^2``; the error-detection AUROC.
* **Intervals** by turn index: coverage of the true probability (simulator data only: real data has no known
  probability, so only the width is reported there), beside the 95% range of coverage a valid interval would show
  there (the test turns of one index, one per conversation, and the calibration turns of its bucket are both finite
  samples: `salesrl_jax.metrics.selective.valid_coverage_range`), and mean width; then one summary of the turn
  indices with at least 500 conversations (`coverage_summary`): which lie outside nominal +- 2 points, and which
  outside their valid range.
* **Out of distribution** (``--ood-data``): AUROC of the confidence, and of the familiarity alone, separating the
  in-distribution conversations (positive) from the others, by turn index and per conversation at turn 4;
  AURC on the mixed set; calibration of the predictions on the out-of-distribution set alone; the intervals on both
  sets, by turn index: mean width (the synthetic-to-real check asks that they widen out of distribution) and, where
  a set has a known true probability, coverage (does the level hold on conversations unlike the calibration split?).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from salesrl_jax import metrics
from salesrl_jax.metrics import selective
from salesrl_jax.models.predict import TurnPredictions

MIN_COUNT = 30
OOD_TURN = 4  # "per conversation after 4 turns": the confidence after the 4th turn
COVERAGE_MIN_CONVERSATIONS = 500  # the turn indices the coverage summary judges (the confidence issue's bar)
COVERAGE_BAND = 0.02  # ... and how far from nominal their coverage may read


def _losses(pred: TurnPredictions) -> dict[str, np.ndarray]:
    p, y = pred.prediction.astype(np.float64), pred.outcome.astype(np.float64)
    return {"error": ((p >= 0.5) != (y == 1)).astype(np.float64), "squared": (y - p) ** 2}


def _confidences(pred: TurnPredictions) -> dict[str, np.ndarray]:
    out = {"module": np.asarray(pred.confidence.confidence, np.float64),
           "baseline |p-0.5|": np.abs(pred.prediction - 0.5).astype(np.float64)}
    if np.isfinite(pred.oracle).all():
        out["oracle |q-0.5|"] = np.abs(pred.oracle - 0.5).astype(np.float64)
    return out


def selective_table(pred: TurnPredictions) -> dict:
    """AURC per confidence and loss, and error-detection AUROC (0/1 error), over all turns."""
    losses, confidences = _losses(pred), _confidences(pred)
    table: dict = {}
    for loss_name, loss in losses.items():
        row = {name: selective.aurc(c, loss) for name, c in confidences.items()}
        row["optimal"] = selective.optimal_aurc(loss)
        table[f"aurc_{loss_name}"] = row
    table["error_auroc"] = {name: selective.error_detection_auroc(c, losses["error"])
                            for name, c in confidences.items()}
    return table


def _width(pred: TurnPredictions, mask: np.ndarray) -> float:
    return float(np.mean(pred.confidence.p_high[mask] - pred.confidence.p_low[mask]))


def _coverage(pred: TurnPredictions, mask: np.ndarray) -> float | None:
    """Coverage of the true probability by the intervals of the ``mask`` turns; None where it is unknown."""
    if not np.isfinite(pred.oracle[mask]).all():
        return None
    return selective.interval_coverage(pred.confidence.p_low[mask], pred.confidence.p_high[mask], pred.oracle[mask])


def interval_rows(pred: TurnPredictions, level: float | None = None,
                  calibration_turns: Callable[[int], int] | None = None) -> list[dict]:
    """Coverage (where the true probability is known) and width of the intervals, by turn index and last turn;
    with the nominal ``level`` also the range of coverage a valid interval would show (``calibration_turns``: a
    function of the 0-based turn index giving the calibration turns its quantile came from)."""
    conf = pred.confidence
    has_oracle = bool(np.isfinite(pred.oracle).all())
    rows = []
    masks = [(str(k), pred.turn_index == k - 1) for k in range(1, int(pred.length.max()) + 1)]
    for name, mask in masks + [("last", pred.last)]:
        n = int(mask.sum())
        if n < MIN_COUNT:
            continue
        row = {"turn": name, "n": n, "width": _width(pred, mask),
               "confidence": float(np.mean(conf.confidence[mask])),
               "low_share": float(np.mean(conf.low_confidence[mask]))}
        if has_oracle:
            row["coverage"] = _coverage(pred, mask)
            if level is not None:
                m = calibration_turns(int(name) - 1) if calibration_turns and name != "last" else None
                row["valid_lo"], row["valid_hi"] = selective.valid_coverage_range(n, level, m)
        rows.append(row)
    return rows


def coverage_summary(rows: list[dict], level: float, min_n: int = COVERAGE_MIN_CONVERSATIONS,
                     band: float = COVERAGE_BAND) -> dict | None:
    """The coverage of `interval_rows` at the turn indices with at least ``min_n`` conversations, judged two ways:
    against the fixed band ``level +- band``, and against each index's 95% range of a valid interval (what
    the finite test and calibration samples allow). None without coverage (no true probability) or such indices.

    ``{"turns": [first, last], "min": {"turn", "coverage"}, "max": {...}, "band": [lo, hi], "outside_band": [turns],
    "outside_valid_range": [turns]}``; turns are 1-based indices as strings, as in the rows."""
    judged = [r for r in rows if r["turn"] != "last" and r["n"] >= min_n and r.get("coverage") is not None]
    if not judged:
        return None
    low, high = min(judged, key=lambda r: r["coverage"]), max(judged, key=lambda r: r["coverage"])
    lo, hi = level - band, level + band
    return {"turns": [judged[0]["turn"], judged[-1]["turn"]], "min_conversations": min_n,
            "min": {"turn": low["turn"], "coverage": low["coverage"]},
            "max": {"turn": high["turn"], "coverage": high["coverage"]},
            "band": [lo, hi], "outside_band": [r["turn"] for r in judged if not lo <= r["coverage"] <= hi],
            "outside_valid_range": [r["turn"] for r in judged if "valid_lo" in r
                                    and not r["valid_lo"] <= r["coverage"] <= r["valid_hi"]]}


def confidence_tables(pred: TurnPredictions, level: float | None = None,
                      calibration_turns: Callable[[int], int] | None = None) -> dict:
    """The selective-prediction and interval tables of predictions with confidence outputs (``calibration_turns``:
    see `interval_rows`), and with a nominal ``level`` the `coverage_summary`."""
    rows = interval_rows(pred, level, calibration_turns)
    return {"interval_level": level, "selective": selective_table(pred), "intervals": rows,
            "coverage_summary": None if level is None else coverage_summary(rows, level)}


def in_vs_out_auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """AUROC of a score ranking the ``inside`` turns above the ``outside`` ones (0.5: it cannot tell them apart)."""
    return selective.separation_auroc(np.concatenate([inside, outside]),
                                      np.concatenate([np.ones(len(inside)), np.zeros(len(outside))]))


OOD_SCORES = ("confidence", "familiarity")  # the combined confidence, and the module's novelty p-value alone


def ood_tables(inside: TurnPredictions, outside: TurnPredictions) -> dict:
    """How the confidence (and the familiarity alone) tell ``inside`` (in-distribution test) from ``outside``."""
    by_turn = []
    for k in range(1, int(max(inside.length.max(), outside.length.max())) + 1):
        a, b = inside.turn_index == k - 1, outside.turn_index == k - 1
        if a.sum() < MIN_COUNT or b.sum() < MIN_COUNT:
            continue
        by_turn.append({"turn": k, "n_in": int(a.sum()), "n_out": int(b.sum()), **{
            f"auroc_{name}": in_vs_out_auroc(getattr(inside.confidence, name)[a], getattr(outside.confidence, name)[b])
            for name in OOD_SCORES},
            "width_in": _width(inside, a), "width_out": _width(outside, b),
            "coverage_in": _coverage(inside, a), "coverage_out": _coverage(outside, b)})
    a, b = inside.turn_index == OOD_TURN - 1, outside.turn_index == OOD_TURN - 1
    at_turn = {name: in_vs_out_auroc(getattr(inside.confidence, name)[a], getattr(outside.confidence, name)[b])
               if a.any() and b.any() else None for name in OOD_SCORES}
    mixed = {}
    loss_in, loss_out = _losses(inside), _losses(outside)
    conf_in, conf_out = _confidences(inside), _confidences(outside)
    both_conf = {name: np.concatenate([c, conf_out[name]]) for name, c in conf_in.items() if name in conf_out}
    for loss_name in ("error", "squared"):
        loss = np.concatenate([loss_in[loss_name], loss_out[loss_name]])
        mixed[f"aurc_{loss_name}"] = {**{name: selective.aurc(c, loss) for name, c in both_conf.items()},
                                      "optimal": selective.optimal_aurc(loss)}
    every_in, every_out = np.ones(len(inside.prediction), bool), np.ones(len(outside.prediction), bool)
    calibration = {}
    for name, mask in (("all_turns", every_out), ("last_turn", outside.last)):
        calibration[name] = metrics.summary(outside.prediction[mask], outside.outcome[mask]) \
            if len(np.unique(outside.outcome[mask])) == 2 else None
    return {"conversations_in": len(inside.ids), "conversations_out": len(outside.ids),
            f"auroc_at_turn_{OOD_TURN}": at_turn, "by_turn": by_turn, "mixed": mixed,
            "ood_calibration": calibration,
            "mean": {**{name: {"in": float(np.mean(getattr(inside.confidence, name))),
                               "out": float(np.mean(getattr(outside.confidence, name)))} for name in OOD_SCORES},
                     **{name: {"in": of(inside, every_in), "out": of(outside, every_out)}
                        for name, of in (("interval_width", _width), ("coverage", _coverage))}}}


def _ood_coverage_lines(coverage: dict, level: float | None) -> list[str]:
    """The intervals' coverage on both sets where the other set has a true probability, and what to do where it
    falls short: split-conformal validity holds for conversations like the calibration split's, and the gate widens
    the intervals only for the least familiar turns, so a shifted population (an industry whose buyers answer
    differently, docs/benchmarks.md, session 25) can read several points below nominal."""
    if coverage.get("out") is None:
        return []
    lines = [f"Interval coverage of the true probability over all turns: {coverage['in']:.3f} in, "
             f"{coverage['out']:.3f} out" + (f" (nominal {level:.0%})" if level else "")]
    if level and coverage["out"] < level - COVERAGE_BAND:
        lines.append(f"The intervals do not hold their level on the other set ({coverage['out']:.3f} against "
                     f"{level:.2f}): refit them on its conversations before trusting them there (`salesrl confidence "
                     "--model MODEL --data ITS_ARRAYS --split all`).")
    return lines


def _f(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3f}"


def format_confidence(tables: dict) -> list[str]:
    """Markdown lines of the confidence section (and the OOD section when present)."""
    conf = tables.get("confidence")
    if not conf:
        return []
    sel = conf["selective"]
    names = list(sel["aurc_error"])
    lines = ["", "**Confidence: selective prediction over all turns** (AURC: lower is better; error AUROC: higher "
                 "is better)", "", "| loss | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for loss in ("error", "squared"):
        lines.append(f"| AURC, {loss} | " + " | ".join(_f(sel[f'aurc_{loss}'][n]) for n in names) + " |")
    lines.append("| error AUROC | " + " | ".join(_f(sel["error_auroc"].get(n)) for n in names) + " |")
    level = conf.get("interval_level")
    lines += ["", "**Intervals by turn index**" + (f" (nominal coverage {level:.0%})" if level else ""), "",
              "| turn | n | coverage [95% range of a valid interval] | mean width | mean confidence | "
              "low-confidence share |",
              "|---|---|---|---|---|---|"]
    for row in conf["intervals"]:
        span = f" [{row['valid_lo']:.3f}, {row['valid_hi']:.3f}]" if "valid_lo" in row else ""
        lines.append(f"| {row['turn']} | {row['n']} | {_f(row.get('coverage'))}{span} | {_f(row['width'])} | "
                     f"{_f(row['confidence'])} | {_f(row['low_share'])} |")
    summary = conf.get("coverage_summary")
    if summary:
        first, last = summary["turns"]
        lo, hi = summary["band"]
        lines += ["", f"Coverage at turns {first}-{last} (at least {summary['min_conversations']} conversations each): "
                      f"{summary['min']['coverage']:.3f} (turn {summary['min']['turn']}) to "
                      f"{summary['max']['coverage']:.3f} (turn {summary['max']['turn']}); outside {lo:.2f}-{hi:.2f}: "
                      + (", ".join(f"turn {t}" for t in summary["outside_band"]) or "none")
                      + "; outside the range of a valid interval: "
                      + (", ".join(f"turn {t}" for t in summary["outside_valid_range"]) or "none") + "."]
    ood = tables.get("ood")
    if ood:
        at = ood[f"auroc_at_turn_{OOD_TURN}"]
        lines += ["", f"**Out of distribution** ({ood['conversations_in']:,} in-distribution vs "
                      f"{ood['conversations_out']:,} other conversations): AUROC at turn {OOD_TURN}, confidence "
                      f"{_f(at['confidence'])}, familiarity {_f(at['familiarity'])}; mean confidence "
                      f"{ood['mean']['confidence']['in']:.3f} in, {ood['mean']['confidence']['out']:.3f} out; mean "
                      f"interval width {ood['mean']['interval_width']['in']:.3f} in, "
                      f"{ood['mean']['interval_width']['out']:.3f} out", "",
                  "| turn | n in | n out | AUROC, confidence | AUROC, familiarity | width in | width out | coverage in "
                  "| coverage out |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['turn']} | {r['n_in']} | {r['n_out']} | {_f(r['auroc_confidence'])} | "
                  f"{_f(r['auroc_familiarity'])} | {_f(r['width_in'])} | {_f(r['width_out'])} | "
                  f"{_f(r['coverage_in'])} | {_f(r['coverage_out'])} |" for r in ood["by_turn"]]
        mixed = ood["mixed"]
        names = list(mixed["aurc_error"])
        lines += ["", "Mixed set AURC: " + "; ".join(
            f"{loss}: " + ", ".join(f"{n} {_f(mixed[f'aurc_{loss}'][n])}" for n in names) for loss in ("error",
                                                                                                         "squared"))]
        lines += _ood_coverage_lines(ood["mean"]["coverage"], level)
        cal = ood["ood_calibration"]
        if cal.get("last_turn"):
            c = cal["last_turn"]
            lines.append(f"Out-of-distribution set alone, last turn: AUC {_f(c.get('auc'))}, Brier "
                         f"{_f(c.get('brier'))}, ECE {_f(c.get('ece'))}")
    return lines

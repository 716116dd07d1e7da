"""Evaluation of per-turn predictions: tables (last turn, by turn index, by fraction seen, per
industry; the oracle beside the model), a Markdown report and PNG plots.

By turn index ``k`` means: over the conversations still running at turn ``k``, the prediction made
after turn ``k``. That is what a live system faces. The model's AUC at each point carries a 95%
percentile bootstrap interval over conversations (each conversation contributes one prediction per
point), and ``predictions.parquet`` holds every turn's prediction, so any other figure can be
recomputed. By fraction ``f`` means the prediction after
turn ``ceil(f T)`` of a ``T``-turn conversation; choosing that turn uses ``T``, which a live system
does not know, so those rows are printed beside the by-turn rows, never alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from salesrl_jax import metrics
from salesrl_jax.eval.confidence_report import format_confidence
from salesrl_jax.io.atomic import atomic_path, write_json_atomic
from salesrl_jax.metrics import selective
from salesrl_jax.metrics.bootstrap import bootstrap_interval
from salesrl_jax.metrics.positions import FRACTIONS, turn_at_fraction
from salesrl_jax.models.confidence import VALUE_FIELDS
from salesrl_jax.models.predict import TurnPredictions

MIN_COUNT = 30  # rows of a table with fewer conversations are left out (too noisy to read)
COLUMNS = ("n", "accuracy", "auc", "auc_ci", "brier", "log_loss", "ece")
BOOTSTRAP_ROUNDS = 300  # resamples per interval: the 2.5/97.5 percentiles move by about 0.003 AUC at n = 500


def _summary(probs: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    if len(probs) == 0:
        return {}
    out = metrics.summary(probs, outcome)
    if len(np.unique(outcome)) < 2:
        out["auc"] = float("nan")
    return out


def _pair(pred: TurnPredictions, mask: np.ndarray) -> dict[str, dict[str, float]]:
    row = {"model": _summary(pred.prediction[mask], pred.outcome[mask])}
    if row["model"] and len(np.unique(pred.outcome[mask])) == 2:
        row["model"]["auc_lo"], row["model"]["auc_hi"] = bootstrap_interval(
            metrics.roc_auc, pred.prediction[mask], pred.outcome[mask], rounds=BOOTSTRAP_ROUNDS)
    oracle = pred.oracle[mask]
    if len(oracle) and np.isfinite(oracle).all():
        row["oracle"] = _summary(oracle, pred.outcome[mask])
    return row


def evaluation_tables(pred: TurnPredictions) -> dict:
    """All the tables, as plain dicts (JSON-serialisable)."""
    tables: dict = {"conversations": len(pred.ids), "turns": int(len(pred.prediction))}
    tables["last_turn"] = _pair(pred, pred.last)
    by_turn = []
    longest = int(pred.length.max())
    for k in range(1, longest + 1):
        mask = pred.turn_index == k - 1
        if mask.sum() < MIN_COUNT:
            break
        by_turn.append({"turn": k, **_pair(pred, mask)})
    tables["by_turn"] = by_turn
    # Said, not silently dropped: the turns with too few conversations still running to read a metric.
    tables["by_turn_left_out"] = {"from_turn": len(by_turn) + 1, "to_turn": longest,
                                  "min_conversations": MIN_COUNT} if len(by_turn) < longest else None
    by_fraction = []
    for f in FRACTIONS:
        by_fraction.append({"fraction": f, **_pair(pred, pred.turn_index == turn_at_fraction(f, pred.length))})
    tables["by_fraction"] = by_fraction
    industries = np.array([pred.industries[c] or "(none)" for c in pred.conversation])
    per_industry = []
    for name in sorted(set(industries[pred.last])):
        mask = pred.last & (industries == name)
        if mask.sum() >= MIN_COUNT:
            per_industry.append({"industry": name, **_pair(pred, mask)})
    tables["by_industry"] = per_industry
    tables["mean_uncertainty"] = float(pred.uncertainty.mean())
    return tables


def _cell(entry: dict, key: str) -> str:
    if key == "auc_ci":
        lo, hi = entry.get("auc_lo", float("nan")), entry.get("auc_hi", float("nan"))
        return "-" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]"
    return _fmt(entry.get(key, float("nan")), key)


def _fmt(value: float, key: str) -> str:
    if key == "n":
        return f"{int(value):,}"
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _table(rows: list[dict], key: str, label) -> list[str]:
    has_oracle = any("oracle" in r for r in rows)
    head = [key] + [f"model {c.replace('auc_ci', 'AUC 95% CI')}" for c in COLUMNS]
    if has_oracle:
        head += ["oracle auc", "oracle brier", "AUC gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["model"]
        cells = [label(r[key])] + [_cell(m, c) for c in COLUMNS]
        if has_oracle:
            o = r.get("oracle", {})
            gap = o.get("auc", float("nan")) - m.get("auc", float("nan"))
            cells += [_fmt(o.get("auc", float("nan")), "auc"), _fmt(o.get("brier", float("nan")), "brier"),
                      _fmt(gap, "auc")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_tables(tables: dict) -> str:
    """The tables as Markdown (also what the command line prints)."""
    lines = [f"{tables['conversations']:,} conversations, {tables['turns']:,} turns; "
             f"mean ensemble uncertainty {tables['mean_uncertainty']:.3f}", "", "**Last turn**", ""]
    lines += _table([{"point": "last turn", **tables["last_turn"]}], "point", str)
    lines += ["", "**By turn index** (conversations still running at turn k: what a live system faces)", ""]
    lines += _table(tables["by_turn"], "turn", str)
    left_out = tables.get("by_turn_left_out")
    if left_out:
        lines += ["", f"(turns {left_out['from_turn']}-{left_out['to_turn']} left out: fewer than "
                      f"{left_out['min_conversations']} conversations still running)"]
    lines += ["", "**By fraction seen** (turn ceil(f T): uses the total length T, unknown live; read beside the "
              "by-turn table)", ""]
    lines += _table(tables["by_fraction"], "fraction", lambda f: f"{int(f * 100)}%")
    if tables["by_industry"]:
        lines += ["", "**Per industry, last turn**", ""]
        lines += _table(tables["by_industry"], "industry", str)
    lines += format_confidence(tables)
    return "\n".join(lines)


def write_predictions(pred: TurnPredictions, path: Path) -> Path:
    """Every turn's prediction beside what it is scored against, one row per turn (Parquet, atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"conversation_id": [pred.ids[c] for c in pred.conversation], "turn_index": pred.turn_index,
               "length": pred.length, "outcome": pred.outcome, "prediction": pred.prediction,
               "uncertainty": pred.uncertainty}
    if pred.confidence is not None:
        columns.update({name: np.asarray(getattr(pred.confidence, name))
                        for name in VALUE_FIELDS + ("low_confidence",)})
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    # Null, never NaN, where the simulator's oracle is unknown (real data).
    table = table.append_column("oracle", pa.array(pred.oracle, mask=~np.isfinite(pred.oracle)))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_report(pred: TurnPredictions, out_dir: Path, title: str, header: str = "", trajectories: int = 6,
                 tables: dict | None = None, plots: bool = True, markdown: list[str] = ()) -> Path:
    """``report.md`` + ``metrics.json`` + ``predictions.parquet`` + PNG plots in ``out_dir`` (``plots=False``: the
    report without them, for callers that read only the numbers: a study's 30 evaluations); ``markdown``: further
    sections, after the tables. Returns the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = tables if tables is not None else evaluation_tables(pred)
    write_json_atomic(out_dir / "metrics.json", tables)
    write_predictions(pred, out_dir / "predictions.parquet")
    text = [f"# {title}", "", header, "", format_tables(tables), *markdown, ""]
    if plots:
        text += _plots(pred, tables, out_dir, trajectories)
    path = out_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def _plots(pred: TurnPredictions, tables: dict, out_dir: Path, trajectories: int) -> list[str]:
    """The report's figures, written to ``out_dir``; returns their markdown lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_oracle = bool(np.isfinite(pred.oracle).all())

    # Reliability diagram at the last turn and over all turns.
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for mask, name in ((pred.last, "last turn"), (np.ones_like(pred.last), "all turns")):
        rel = metrics.reliability(pred.prediction[mask], pred.outcome[mask])
        filled = rel.counts > 0
        ax.plot(rel.mean_prob[filled], rel.frequency[filled], marker="o", label=f"model, {name}")
    if has_oracle:
        rel = metrics.reliability(pred.oracle[pred.last], pred.outcome[pred.last])
        filled = rel.counts > 0
        ax.plot(rel.mean_prob[filled], rel.frequency[filled], marker="s", ls=":", label="oracle, last turn")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Reliability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "reliability.png", dpi=110)
    plt.close(fig)

    # AUC and accuracy versus fraction seen and versus turn index, model vs oracle.
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, rows, key, xlabel in ((axes[0], tables["by_fraction"], "fraction", "fraction of the conversation seen"),
                                  (axes[1], tables["by_turn"], "turn", "turn index (conversations still running)")):
        x = [r[key] for r in rows]
        for who, style in (("model", "-"), ("oracle", ":")):
            if all(who in r for r in rows):
                ax.plot(x, [r[who]["auc"] for r in rows], style, marker="o", label=f"{who} AUC")
                ax.plot(x, [r[who]["accuracy"] for r in rows], style, marker="^", label=f"{who} accuracy")
        ax.set(xlabel=xlabel, ylim=(0.4, 1.0))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "auc_by_fraction.png", dpi=110)
    plt.close(fig)

    # A few probability trajectories with their oracle curves.
    fig, ax = plt.subplots(figsize=(7, 4))
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(pred.ids), size=min(trajectories, len(pred.ids)), replace=False)
    for i, conv in enumerate(sorted(chosen)):
        mask = pred.conversation == conv
        turns = pred.turn_index[mask] + 1
        line, = ax.plot(turns, pred.prediction[mask], marker=".", label=f"{pred.ids[conv]} (y={pred.outcome[mask][0]})")
        if has_oracle:
            ax.plot(turns, pred.oracle[mask], ls=":", color=line.get_color())
    ax.set(xlabel="turn", ylabel="P(sale)", ylim=(0, 1), title="Trajectories (dotted: oracle)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out_dir / "trajectories.png", dpi=110)
    plt.close(fig)

    text = ["![reliability](reliability.png)", "", "![auc](auc_by_fraction.png)", "",
            "![trajectories](trajectories.png)", ""]
    if pred.confidence is not None:
        _confidence_plot(pred, out_dir / "confidence.png", has_oracle)
        text += ["![confidence](confidence.png)", ""]
    return text


def _confidence_plot(pred: TurnPredictions, path: Path, has_oracle: bool) -> None:
    """Risk-coverage curves (0/1 error) of the confidences, and one conversation's interval over its turns."""
    import matplotlib.pyplot as plt

    conf = pred.confidence
    loss = ((pred.prediction >= 0.5) != (pred.outcome == 1)).astype(np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    scores = {"confidence module": conf.confidence, "|p - 0.5|": np.abs(pred.prediction - 0.5)}
    if has_oracle:
        scores["oracle |q - 0.5|"] = np.abs(pred.oracle - 0.5)
    for name, score in scores.items():
        coverage, risk = selective.risk_coverage(score, loss)
        axes[0].plot(coverage, risk, label=f"{name} (AURC {np.mean(risk):.3f})")
    axes[0].set(xlabel="coverage (most confident first)", ylabel="error rate of the kept turns",
                title="Risk-coverage, all turns")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    longest = int(np.argmax([int((pred.conversation == c).sum()) for c in range(min(len(pred.ids), 200))]))
    mask = pred.conversation == longest
    turns = pred.turn_index[mask] + 1
    axes[1].fill_between(turns, conf.p_low[mask], conf.p_high[mask], alpha=0.25, label="interval")
    axes[1].plot(turns, pred.prediction[mask], marker=".", label="P(sale)")
    axes[1].plot(turns, conf.confidence[mask], ls="--", label="confidence")
    if has_oracle:
        axes[1].plot(turns, pred.oracle[mask], ls=":", label="oracle")
    axes[1].set(xlabel="turn", ylim=(0, 1), title=f"{pred.ids[longest]} (outcome {int(pred.outcome[mask][0])})")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

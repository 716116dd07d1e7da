"""The model against the baselines over replicated held-out test files: mean, spread and sign of each difference.

    for s in 0 1 2 3 4 5 6 7; do
        salesrl split --data runs/casino.jsonl --out runs/sp$s --seed $s
        salesrl embed --data runs/sp$s/development.jsonl --out runs/sp$s/dev
        salesrl embed --data runs/sp$s/test.jsonl --out runs/sp$s/test
        salesrl train --data runs/sp$s/dev --workdir runs/sp$s/run
        salesrl evaluate --model runs/sp$s/run --data runs/sp$s/test --baselines
    done
    python scripts/replicate_summary.py runs/sp*/run/eval-test

One test file of a few hundred conversations is one draw: on CaSiNo the model's last-turn AUC minus a fixed TF-IDF
variant's moved by 0.04 (standard deviation) between random 80/20 splits. Each report's reference, the strongest of
four variants at each point *on that file*, is also chosen on those few hundred conversations, which flatters it (the
maximum of four noisy AUCs). So this prints, from each ``EVAL_DIR`` that `salesrl evaluate --baselines` wrote (its
``metrics.json``):

* every method's AUC by turn index, the mean over the replicates (turns 4-12: the mean over turns 4, 6, 8, 12);
* the model minus each TF-IDF variant: the mean over the replicates, their standard deviation and how many are
  above 0 (a fixed reference: no selection);
* the model minus each replicate's own strongest variant (what each report says): the same three figures.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

POINTS = ("2", "3", "4", "6", "8", "12", "last", "4-12")
TFIDF = "tfidf_"


def load(directory: Path) -> dict:
    """The ``baselines`` part of ``directory/metrics.json``; a clear error where it is missing."""
    path = directory / "metrics.json"
    if not path.exists():
        raise SystemExit(f"{path}: not found (pass the directories `salesrl evaluate --baselines` wrote)")
    metrics = json.loads(path.read_text())
    if "baselines" not in metrics:
        raise SystemExit(f"{path}: no baselines section (run `salesrl evaluate ... --baselines`)")
    return metrics["baselines"]


def auc_at(baselines: dict, method: str, point: str) -> float:
    """A method's AUC at a turn index, the last turn, or on the mean over turns 4-12 (NaN where not reported)."""
    if point == "4-12":
        return float(baselines["mean_auc_turns_4_12"].get(method, np.nan))
    entry = baselines["methods"][method]["last"] if point == "last" else baselines["methods"][method][
        "by_turn"].get(point, {})
    return float(entry.get("auc", np.nan))


def strongest_difference(baselines: dict, point: str) -> float:
    """The report's own figure: the model minus its strongest TF-IDF variant at ``point``."""
    entry = baselines["mean_auc_turns_4_12_difference"] if point == "4-12" else baselines["paired"].get(point, {})
    return float(entry.get("diff", np.nan))


def _spread(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not len(values):
        return ""
    sd = f" (sd {values.std(ddof=1):.3f})" if len(values) > 1 else ""
    return f"{values.mean():+.3f}{sd}, {int((values > 0).sum())}/{len(values)} above 0"


def summary(reports: list[dict]) -> list[str]:
    methods = [m for m in reports[0]["methods"] if all(m in r["methods"] for r in reports)]
    auc = {m: np.array([[auc_at(r, m, p) for p in POINTS] for r in reports]) for m in methods}
    lines = [f"{len(reports)} replicates; AUC, the mean over them", "",
             "| method | " + " | ".join(p if p in ("last", "4-12") else f"turn {p}" for p in POINTS) + " |",
             "|---|" + "---:|" * len(POINTS)]
    lines += [f"| {m} | " + " | ".join(f"{v:.3f}" for v in np.nanmean(auc[m], axis=0)) + " |" for m in methods]
    lines += ["", "model minus a fixed variant, and minus each replicate's strongest: mean (sd), replicates above 0", "",
              "| reference | " + " | ".join(POINTS) + " |", "|---|" + "---|" * len(POINTS)]
    for m in [m for m in methods if m.startswith(TFIDF)]:
        diff = auc["model"] - auc[m]
        lines.append(f"| {m} | " + " | ".join(_spread(diff[:, j]) for j in range(len(POINTS))) + " |")
    strongest = np.array([[strongest_difference(r, p) for p in POINTS] for r in reports])
    lines.append("| each report's strongest | " + " | ".join(_spread(strongest[:, j]) for j in range(len(POINTS)))
                 + " |")
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, metavar="EVAL_DIR",
                        help="a directory `salesrl evaluate --baselines` wrote (its metrics.json)")
    args = parser.parse_args(argv)
    print("\n".join(summary([load(d) for d in args.reports])))


if __name__ == "__main__":
    main(sys.argv[1:])

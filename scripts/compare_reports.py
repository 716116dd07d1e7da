"""Side-by-side table of several `salesrl evaluate` reports (their metrics.json), with the oracle.

Usage: python scripts/compare_reports.py NAME=REPORT_DIR [NAME=REPORT_DIR ...]
"""

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if not argv or any("=" not in a for a in argv):
        raise SystemExit(__doc__)
    reports = [(name, json.loads((Path(path) / "metrics.json").read_text()))
               for name, path in (a.split("=", 1) for a in argv)]
    # Real data has no oracle: then the table shows AUC by fraction seen instead of the gap to it.
    has_oracle = "oracle" in reports[0][1]["last_turn"]
    fractions = "AUC gap to oracle" if has_oracle else "AUC"
    head = ["model", "last AUC", "last ECE", "last Brier", f"{fractions} at 25% / 50% / 75% / 100% seen",
            "AUC at turn 2 / 4 / 8 / 12"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    rows = reports + ([("oracle (ceiling)", None)] if has_oracle else [])
    for name, m in rows:
        ref = m or reports[0][1]
        who = "model" if m else "oracle"
        last = ref["last_turn"][who]
        if not has_oracle:
            seen = " / ".join(f"{r[who]['auc']:.3f}" for r in ref["by_fraction"])
        elif m:
            seen = " / ".join(f"{r['oracle']['auc'] - r[who]['auc']:.3f}" for r in ref["by_fraction"])
        else:
            seen = "0 / 0 / 0 / 0"
        by_turn = {r["turn"]: r for r in ref["by_turn"]}
        turns = " / ".join(f"{by_turn[k][who]['auc']:.3f}" for k in (2, 4, 8, 12) if k in by_turn)
        print(f"| {name} | {last['auc']:.3f} | {last['ece']:.3f} | {last['brier']:.3f} | {seen} | {turns} |")


if __name__ == "__main__":
    main(sys.argv[1:])

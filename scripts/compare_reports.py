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
    head = ["model", "last AUC", "last ECE", "last Brier", "AUC gap to oracle at 25% / 50% / 75% / 100% seen",
            "AUC at turn 2 / 4 / 8"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    rows = reports + [("oracle (ceiling)", None)]
    for name, m in rows:
        ref = m or reports[0][1]
        who = "model" if m else "oracle"
        last = ref["last_turn"][who]
        gaps = " / ".join(f"{r['oracle']['auc'] - r[who]['auc']:.3f}" for r in ref["by_fraction"])
        by_turn = {r["turn"]: r for r in ref["by_turn"]}
        turns = " / ".join(f"{by_turn[k][who]['auc']:.3f}" for k in (2, 4, 8) if k in by_turn)
        print(f"| {name} | {last['auc']:.3f} | {last['ece']:.3f} | {last['brier']:.3f} | "
              f"{gaps if m else '0 / 0 / 0 / 0'} | {turns} |")


if __name__ == "__main__":
    main(sys.argv[1:])

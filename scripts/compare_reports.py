"""Side-by-side table of several `salesrl evaluate` reports (their metrics.json), with the oracle.

    python scripts/compare_reports.py NAME=REPORT_DIR [NAME=REPORT_DIR ...]
"""

import argparse
import json
import sys
from pathlib import Path


def _named_report(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=REPORT_DIR")
    return name, Path(path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=_named_report, metavar="NAME=REPORT_DIR",
                        help="a row's name and the directory `salesrl evaluate --out` wrote")
    args = parser.parse_args(argv)
    reports = [(name, json.loads((path / "metrics.json").read_text())) for name, path in args.reports]
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

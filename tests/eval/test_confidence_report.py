"""The coverage summary of the confidence report: which turn indices it judges, and against what."""

from salesrl_jax.eval.confidence_report import coverage_summary, format_confidence


def _row(turn, n, coverage, lo=None, hi=None):
    row = {"turn": turn, "n": n, "coverage": coverage, "width": 0.5, "confidence": 0.5, "low_share": 0.1}
    if lo is not None:
        row["valid_lo"], row["valid_hi"] = lo, hi
    return row


def test_coverage_summary_judges_the_indices_with_enough_conversations_against_the_band_and_the_valid_range():
    rows = [_row("1", 5000, 0.905, 0.89, 0.91), _row("2", 3000, 0.875, 0.88, 0.92),  # below the band and range
            _row("3", 900, 0.921, 0.87, 0.93),  # above the band, inside its range
            _row("4", 499, 0.70, 0.85, 0.95),  # too few conversations: not judged however far off
            _row("last", 5000, 0.60, 0.89, 0.91)]  # the last turn is not a turn index
    summary = coverage_summary(rows, 0.9)
    assert summary["turns"] == ["1", "3"]
    assert summary["min"] == {"turn": "2", "coverage": 0.875} and summary["max"] == {"turn": "3", "coverage": 0.921}
    assert summary["outside_band"] == ["2", "3"] and summary["outside_valid_range"] == ["2"]
    assert summary["band"] == [0.9 - 0.02, 0.9 + 0.02]
    assert coverage_summary(rows, 0.9, min_n=6000) is None
    assert coverage_summary([_row("1", 5000, None)], 0.9) is None  # real data: no true probability to cover
    inside = coverage_summary([_row("1", 5000, 0.899, 0.89, 0.91), _row("2", 600, 0.915)], 0.9)
    assert inside["outside_band"] == [] and inside["outside_valid_range"] == []  # a row without a range is not judged


def test_the_report_states_the_summary():
    rows = [_row("1", 5000, 0.905, 0.89, 0.91), _row("2", 3000, 0.875, 0.88, 0.92)]
    selective = {f"aurc_{loss}": {"module": 0.2} for loss in ("error", "squared")}
    selective["error_auroc"] = {"module": 0.6}
    tables = {"confidence": {"interval_level": 0.9, "selective": selective, "intervals": rows,
                             "coverage_summary": coverage_summary(rows, 0.9)}}
    text = "\n".join(format_confidence(tables))
    assert ("Coverage at turns 1-2 (at least 500 conversations each): 0.875 (turn 2) to 0.905 (turn 1); outside "
            "0.88-0.92: turn 2; outside the range of a valid interval: turn 2.") in text


def test_the_out_of_distribution_section_warns_where_the_intervals_lose_their_level():
    from salesrl_jax.eval.confidence_report import _ood_coverage_lines

    assert _ood_coverage_lines({"in": 0.9, "out": None}, 0.9) == []  # real dialogues: nothing to cover
    holding = _ood_coverage_lines({"in": 0.901, "out": 0.889}, 0.9)
    assert holding == ["Interval coverage of the true probability over all turns: 0.901 in, 0.889 out (nominal 90%)"]
    short = _ood_coverage_lines({"in": 0.898, "out": 0.853}, 0.9)
    assert len(short) == 2 and "do not hold their level on the other set (0.853 against 0.90)" in short[1]
    assert "salesrl confidence --model MODEL --data ITS_ARRAYS --split all" in short[1]

"""scripts/wide_term_stream_cost.py runs both models on a few turns and prints their p50s and the ratio."""

import re

from tests.conftest import load_script


def test_prints_both_p50s_and_their_ratio(capsys):
    module = load_script("wide_term_stream_cost")
    module.main(module.Config(repeats=1, turns=40))
    out = capsys.readouterr().out
    match = re.search(r"with the wide term \[([\d.]+)\], without \[([\d.]+)\]; ratio of medians ([\d.]+)", out)
    assert match, out
    with_wide, without, ratio = map(float, match.groups())
    assert with_wide > 0 and without > 0 and abs(ratio - with_wide / without) < 0.02

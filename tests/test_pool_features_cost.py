"""scripts/pool_features_cost.py times both models on a small width and prints each figure and its ratio."""

import re

from tests.conftest import load_script


def test_prints_each_figure_for_both_models_and_their_ratios(capsys):
    module = load_script("pool_features_cost")
    module.main(module.Config(repeats=1, turns=30, min_seconds=0.01, dim=32, ppo_rows=64))
    out = capsys.readouterr().out
    stream = re.search(r"streaming p50 ms, 32-d embedding cached: on \[([\d.]+)\], off \[([\d.]+)\]; "
                       r"ratio of medians on/off ([\d.]+)", out)
    assert stream, out
    on, off, ratio = map(float, stream.groups())
    assert on > 0 and off > 0 and abs(ratio - on / off) < 0.01
    batch = re.search(r"float32 on ([\d,]+), int8 on ([\d,]+), float32 off ([\d,]+), int8 off ([\d,]+); "
                      r"on/off float32 ([\d.]+), int8 ([\d.]+)", out)
    assert batch, out
    f_on, i_on, f_off, i_off = (float(x.replace(",", "")) for x in batch.groups()[:4])
    assert abs(float(batch.group(5)) - f_on / f_off) < 0.01 and abs(float(batch.group(6)) - i_on / i_off) < 0.01
    assert re.search(r"PPO env steps/s, incumbent-sized, 32-d: on \[[\d.]+\], off \[[\d.]+\]; ratio of medians", out)

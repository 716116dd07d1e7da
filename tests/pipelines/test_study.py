"""`salesrl study`: the smoke study end to end (a structural and a numeric variant, two seeds), a killed study
resuming to the same table, the intervals against hand-computed cases, and study files with mistakes."""

import json
import math
import shutil
from pathlib import Path

import pytest

from salesrl_jax.cli import main
from salesrl_jax.pipelines.study import mean_interval, paired_test, run_study

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "studies" / "smoke.py"


def test_mean_interval_and_paired_test_by_hand():
    mean, lo, hi = mean_interval([0.80, 0.82, 0.84])
    # s = 0.02, t_{0.975, 2} = 4.302653: half width 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert mean == pytest.approx(0.82) and lo == pytest.approx(0.82 - 0.049683, abs=1e-6)
    assert hi == pytest.approx(0.82 + 0.049683, abs=1e-6)
    assert math.isnan(mean_interval([0.7])[1]) and mean_interval([0.7])[0] == 0.7
    test = paired_test([0.80, 0.83, 0.86], [0.78, 0.80, 0.81])  # differences 0.02, 0.03, 0.05
    assert test["diff"] == pytest.approx(0.1 / 3) and test["pairs"] == 3
    # t = mean / (s / sqrt(3)) with s = 0.015275: t = 3.7796, two-sided p with 2 df = 0.0634
    assert test["p"] == pytest.approx(0.0634, abs=5e-4)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    with pytest.warns(UserWarning):  # tiny runs: few validation conversations, said
        main(["study", str(SMOKE), "--workdir", str(out)])
    return out


def test_the_smoke_study_writes_every_output(smoke):
    for name in ("table.md", "table.csv", "table.json", "forest.png", "study.json"):
        assert (smoke / name).stat().st_size > 100, name
    table = json.loads((smoke / "table.json").read_text())["synthetic"]
    assert set(table["variants"]) == {"full", "no_history", "lr_1e-2", "int8"}
    # The int8 row is the full model's runs evaluated quantized: no training of its own.
    assert not (smoke / "runs" / "int8" / "seed-0" / "result.json").exists()
    assert (smoke / "runs" / "int8" / "seed-0" / "eval-synthetic" / "metrics.json").exists()
    int8, full_auc = table["variants"]["int8"]["last_auc"], table["variants"]["full"]["last_auc"]
    assert abs(int8["mean"] - full_auc["mean"]) < 0.02
    full = table["variants"]["full"]["last_auc"]
    assert len(full["seeds"]) == 2 and full["lo"] <= full["mean"] <= full["hi"]
    assert table["variants"]["full"]["vs_base"]["diff"] == 0
    assert table["baselines"]["majority"]["last_auc"] == 0.5
    configs = {p.parent.parent.name: json.loads((p.parent / "config.json").read_text())
               for p in smoke.glob("runs/*/seed-0/result.json")}
    assert configs["no_history"]["model"]["history"] == "none"  # structure changed
    assert configs["lr_1e-2"]["pretrain"]["learning_rate"] == 1e-2 and configs["full"]["model"]["history"] == "weighted"
    assert "| no_history |" in (smoke / "table.md").read_text()
    # TensorBoard: one run per variant and seed, its scalars beside metrics.jsonl.
    events = sorted(smoke.glob("runs/*/seed-*/tensorboard/events.out.tfevents.*"))
    assert len(events) == 6
    logged = json.loads((smoke / "runs" / "full" / "seed-0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert b"log_loss" in events[0].read_bytes() and "log_loss" in logged


def test_a_killed_study_resumes_to_the_same_table(smoke, tmp_path):
    work = tmp_path / "killed"
    shutil.copytree(smoke / "data", work / "data")  # the same data, to save generating it again
    partial = run_study(SMOKE, work, progress=False, max_runs=2)
    assert partial.runs_trained == 2 and not (work / "table.md").exists()
    resumed = run_study(SMOKE, work, progress=False)
    assert resumed.runs_trained == 4 and resumed.runs_reused == 4  # 2 from before, 2 the int8 row shares
    assert (work / "table.json").read_text() == (smoke / "table.json").read_text()
    again = run_study(SMOKE, work, progress=False)
    assert again.runs_trained == 0 and (work / "table.md").read_text() == (smoke / "table.md").read_text()


@pytest.mark.parametrize("mistake, named", [
    ('overrides={"model.no_such_field": 1}', "model.no_such_field"),
    ('variants=(Variant("full", overide={"x": 1}),)', "overide"),
])
def test_a_study_file_with_a_mistake_fails_up_front_naming_it(tmp_path, mistake, named):
    text = SMOKE.read_text()
    if mistake.startswith("overrides"):
        text = text.replace("        overrides=TINY,", f"        {mistake},")
    else:
        text = text.replace('        variants=(Variant("full"),', f"        {mistake[:-2]}, Variant('b'),")
        text = text.replace('                  Variant("no_history", config="configs/ablations/no_history.py"),\n'
                            '                  Variant("lr_1e-2", overrides={"pretrain.learning_rate": 1e-2}),\n'
                            '                  Variant("int8", quantized=True)),', "),")
    bad = tmp_path / "bad_study.py"
    bad.write_text(text)
    with pytest.raises(ValueError, match=named) as err:
        run_study(bad, tmp_path / "w", progress=False)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "w").exists()  # nothing made, nothing trained


def test_text_baselines_read_the_archives_and_a_missing_archive_is_said(smoke, tmp_path):
    pytest.importorskip("sklearn")
    import dataclasses

    from salesrl_jax.pipelines.study import fit_study_baselines
    from salesrl_jax.run.study import load_study

    study = dataclasses.replace(load_study(SMOKE), baselines=("majority", "tfidf_plain_whole"))
    train, test = smoke / "data" / "train", smoke / "data" / "test-synthetic"
    rows = fit_study_baselines(study, train / "arrays", train / "archive", test / "arrays", test / "archive",
                               tmp_path / "with-text")
    assert set(rows) == {"majority", "tfidf_plain_whole"}
    assert rows["tfidf_plain_whole"]["last_auc"] > 0.6  # the simulator's text carries the outcome
    assert math.isfinite(rows["tfidf_plain_whole"]["oracle_gap"])  # scored on the same turns, oracle beside
    with pytest.warns(UserWarning, match="no archives"):
        rows = fit_study_baselines(study, train / "arrays", None, test / "arrays", None, tmp_path / "without")
    assert set(rows) == {"majority"}

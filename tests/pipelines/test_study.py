"""`salesrl study`: the smoke study end to end (a structural and a numeric variant, a sweep, two seeds), a killed
study resuming to the same table, the intervals against hand-computed cases, and study files with mistakes."""

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
    # Two seeds far apart: t_{0.975, 1} = 12.7 reaches past an accuracy's range, so the ends stop at its bounds.
    assert mean_interval([0.55, 0.79], bounds=(0.0, 1.0)) == (pytest.approx(0.67), 0.0, 1.0)
    assert mean_interval([0.55, 0.79])[2] > 1.0
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
    assert set(table["variants"]) == {"full", "no_history", "lr_1e-2", "int8", "lr_sweep"}
    # The int8 row is the full model's runs evaluated quantized: no training of its own.
    assert not (smoke / "runs" / "int8" / "seed-0" / "result.json").exists()
    assert (smoke / "runs" / "int8" / "seed-0" / "eval-synthetic" / "metrics.json").exists()
    # A study's evaluations are numbers only: the report without figures (they cost a tenth of a 20k study).
    evaluation = smoke / "runs" / "full" / "seed-0" / "eval-synthetic"
    assert "AUC 95% CI" in (evaluation / "report.md").read_text() and not list(evaluation.glob("*.png"))
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
    # The sweep: its new setting trained (seeds 0 and 1), its 1e-2 setting shares the lr_1e-2 variant's runs, and
    # the row is the setting with the lower mean validation log loss, evaluated from that setting's models.
    choice = json.loads((smoke / "runs" / "lr_sweep" / "choice.json").read_text())
    assert [e["setting"] for e in choice["settings"]] == [{"pretrain.learning_rate": 3e-4},
                                                          {"pretrain.learning_rate": 1e-2}]
    swept = json.loads((smoke / "runs" / "lr_sweep" / "setting-0" / "seed-1" / "config.json").read_text())
    assert swept["pretrain"]["learning_rate"] == 3e-4 and swept["seed"] == 1
    assert not (smoke / "runs" / "lr_sweep" / "setting-1").exists()
    shared = [json.loads((smoke / "runs" / "lr_1e-2" / f"seed-{s}" / "result.json").read_text())["best_valid"]
              ["log_loss"] for s in (0, 1)]
    assert choice["settings"][1]["valid_log_loss"] == shared
    means = [e["mean"] for e in choice["settings"]]
    assert means[0] != means[1] and choice["chosen"] == int(means[1] < means[0])
    # Evaluated from the chosen setting's models: the lr_1e-2 variant's own, exactly when 1e-2 was chosen.
    same = table["variants"]["lr_sweep"]["last_auc"]["seeds"] == table["variants"]["lr_1e-2"]["last_auc"]["seeds"]
    assert same == (choice["chosen"] == 1)
    assert "## Sweep `lr_sweep`" in (smoke / "table.md").read_text() and (smoke / "sweeps.json").exists()
    # TensorBoard: one run per variant and seed, its scalars beside metrics.jsonl.
    events = sorted(smoke.glob("runs/**/seed-*/tensorboard/events.out.tfevents.*"))
    assert len(events) == 8
    logged = json.loads((smoke / "runs" / "full" / "seed-0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert b"log_loss" in events[0].read_bytes() and "log_loss" in logged


def test_a_killed_study_resumes_to_the_same_table(smoke, tmp_path):
    work = tmp_path / "killed"
    shutil.copytree(smoke / "data", work / "data")  # the same data, to save generating it again
    # The first program (the full model, lr_1e-2 and the sweep's new setting: six runs) trains, then it stops.
    partial = run_study(SMOKE, work, progress=False, max_runs=2)
    assert partial.runs_trained == 6 and not (work / "table.md").exists()
    # What finished is evaluated already (a study stopped by a time limit keeps its finished rows' numbers).
    assert (work / "runs" / "full" / "seed-0" / "eval-synthetic" / "metrics.json").exists()
    assert not (work / "runs" / "no_history" / "seed-0" / "eval-synthetic").exists()
    resumed = run_study(SMOKE, work, progress=False)
    assert resumed.runs_trained == 2 and resumed.runs_reused == 6  # no_history's two seeds, then the table
    assert (work / "table.json").read_text() == (smoke / "table.json").read_text()
    again = run_study(SMOKE, work, progress=False)
    assert again.runs_trained == 0 and (work / "table.md").read_text() == (smoke / "table.md").read_text()
    # The study file changed since (every variant now trains 3 epochs): its finished runs are refused, not reused.
    changed = tmp_path / "smoke_epochs.py"
    changed.write_text(SMOKE.read_text().replace('"pretrain.epochs": 2', '"pretrain.epochs": 3'))
    with pytest.raises(ValueError, match=r"seed-0: trained with other pretrain.epochs than the study now asks for "
                                         r"\(pretrain.epochs: saved 2, now 3\); use a new --workdir"):
        run_study(changed, work, progress=False)


def test_a_finished_run_from_before_a_new_config_field_is_refused(tmp_path):
    """A run saved before a field existed (here the session-26 text dropout) trained without it: a study that
    now asks for the field's default must not take that run as its own."""
    from salesrl_jax.pipelines.study import check_finished_run
    from salesrl_jax.run.config import TrainConfig

    config = TrainConfig(name="full")
    run = tmp_path / "run"
    run.mkdir()
    saved = json.loads(config.to_json())
    (run / "config.json").write_text(json.dumps({**saved, "name": "another_variant"}))
    (run / "result.json").write_text("{}")
    check_finished_run(config, run)  # the same config under another variant's name: the same run
    del saved["pretrain"]["text_dropout"]
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"pretrain.text_dropout: saved 'absent', now 0.8"):
        check_finished_run(config, run)
    (run / "result.json").unlink()
    check_finished_run(config, run)  # unfinished: resuming checks the config itself


def test_a_changed_data_set_is_refused_not_silently_reused(smoke, tmp_path):
    """A study file whose simulated data set changed (here the training seed) meets the old data in its workdir:
    refused, naming the field and the way out, before anything trains on either."""
    work = tmp_path / "changed"
    shutil.copytree(smoke / "data", work / "data")
    changed = tmp_path / "smoke_seed.py"
    changed.write_text(SMOKE.read_text().replace("Synthetic(400, seed=21)", "Synthetic(400, seed=23)"))
    with pytest.raises(ValueError, match=r"generated with other seed \(seed=21\) than the study's 'train' data set "
                                         r"asks for; its runs were trained on that data: use a new --workdir"):
        run_study(changed, work, progress=False)
    assert not (work / "runs").exists()


@pytest.mark.parametrize("mistake, named", [
    ('overrides={"model.no_such_field": 1}', "model.no_such_field"),
    ('variants=(Variant("full", overide={"x": 1}),)', "overide"),
    ('sweeps=(Sweep("s", grid={"model.hidden_dim": (8, 16)}),)', "model.hidden_dim"),
    ('sweeps=(Sweep("s", grid={"pretrain.learning_rte": (1e-3,)}),)', "pretrain.learning_rte"),
    ('"data.valid_fraction": 0.0', "sweep 'lr_sweep' chooses its setting by validation log loss"),
])
def test_a_study_file_with_a_mistake_fails_up_front_naming_it(tmp_path, mistake, named):
    text = SMOKE.read_text()
    if mistake.startswith('"data'):
        text = text.replace('"data.valid_fraction": 0.2', mistake)
        assert mistake in text
    elif mistake.startswith("overrides"):
        text = text.replace("        overrides=TINY,", f"        {mistake},")
    elif mistake.startswith("sweeps"):
        text = text.replace('        sweeps=(Sweep("lr_sweep", grid={"pretrain.learning_rate": (3e-4, 1e-2)}),),',
                            f"        {mistake},")
        assert mistake in text
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
    note = json.loads((tmp_path / "with-text" / "fit.json").read_text())
    assert note["training_prefixes"] == note["of"]  # under the bound: every prefix
    # Over the bound, the prefix-fitted baselines see a subset of each conversation's prefixes, and the table says so.
    bounded = dataclasses.replace(study, baselines=("tfidf_tagged_prefix",), baseline_max_prefixes=500)
    work = tmp_path / "bounded"
    fit_study_baselines(bounded, train / "arrays", train / "archive", test / "arrays", test / "archive",
                        work / "baselines" / "synthetic")
    note = json.loads((work / "baselines" / "synthetic" / "fit.json").read_text())
    assert abs(note["training_prefixes"] - 500) < 100 and note["of"] > 2 * 500
    for run in ("full", "no_history", "lr_1e-2", "int8", "lr_sweep"):  # the smoke study's evaluations, to tabulate
        for seed in (0, 1):
            target = work / "runs" / run / f"seed-{seed}" / "eval-synthetic"
            target.mkdir(parents=True)
            (target / "metrics.json").write_text(
                (smoke / "runs" / run / f"seed-{seed}" / "eval-synthetic" / "metrics.json").read_text())
    from salesrl_jax.pipelines.study import markdown, tabulate

    text = markdown(bounded, tabulate(bounded, work, {"synthetic": {}}))
    assert f"saw {note['training_prefixes']:,} of the {note['of']:,} training prefixes" in text
    with pytest.warns(UserWarning, match="no archives"):
        rows = fit_study_baselines(study, train / "arrays", None, test / "arrays", None, tmp_path / "without")
    assert set(rows) == {"majority"}
    # Real data has no oracle: its NaN is saved as null, and the cached rows read it back as NaN (a finished
    # study on real data then rebuilds its table instead of failing on None).
    cached = tmp_path / "real" / "metrics.json"
    cached.parent.mkdir()
    cached.write_text(json.dumps({"majority": {**rows["majority"], "oracle_gap": None}}))
    (tmp_path / "real" / "fit.json").write_text((tmp_path / "without" / "fit.json").read_text())
    again = fit_study_baselines(study, train / "arrays", None, test / "arrays", None, tmp_path / "real")
    assert math.isnan(again["majority"]["oracle_gap"]) and again["majority"]["last_auc"] == rows["majority"]["last_auc"]
    # A cache is refitted, not read, when it was written before a column existed or with other baseline settings.
    for stale_rows, stale_study in (
            ({k: v for k, v in rows["majority"].items() if k != "last_accuracy"}, study),
            ({**rows["majority"], "last_auc": 0.123}, dataclasses.replace(study, baseline_max_prefixes=7))):
        cached.write_text(json.dumps({"majority": stale_rows}))
        fit_study_baselines(stale_study, train / "arrays", None, test / "arrays", None, tmp_path / "real")
        refitted = fit_study_baselines(study, train / "arrays", None, test / "arrays", None, tmp_path / "real")
        assert refitted["majority"] == rows["majority"]


def test_a_changed_sweep_choice_drops_the_old_choices_evaluations(tmp_path):
    from salesrl_jax.pipelines.study import choose_setting
    from salesrl_jax.run.study import Sweep

    def runs(losses):  # result.json of each setting x seed, with the given best validation log loss
        dirs = {}
        for k, per_seed in enumerate(losses):
            for seed, loss in zip((0, 1), per_seed):
                d = tmp_path / "runs" / "lr" / f"setting-{k}" / f"seed-{seed}"
                d.mkdir(parents=True, exist_ok=True)
                (d / "result.json").write_text(json.dumps({"best_valid": {"log_loss": loss}}))
                dirs[f"lr/setting-{k}", seed] = d
        return dirs

    two = Sweep("lr", grid={"pretrain.learning_rate": (1e-3, 2e-3)})
    choice = choose_setting(two, (0, 1), runs([(0.60, 0.62), (0.64, 0.66)]), tmp_path)
    assert choice["chosen"] == 0 and choice["settings"][0]["mean"] == pytest.approx(0.61)
    evaluation = tmp_path / "runs" / "lr" / "seed-0" / "eval-test"
    evaluation.mkdir(parents=True)
    assert choose_setting(two, (0, 1), runs([(0.60, 0.62), (0.64, 0.66)]), tmp_path)["chosen"] == 0
    assert evaluation.exists()  # the same choice: its evaluations are kept
    three = Sweep("lr", grid={"pretrain.learning_rate": (1e-3, 2e-3, 4e-3)})
    assert choose_setting(three, (0, 1), runs([(0.60, 0.62), (0.64, 0.66), (0.58, 0.59)]), tmp_path)["chosen"] == 2
    assert not evaluation.exists()  # evaluated from the old choice's models: gone, so the row is evaluated again

"""Post-hoc recalibration: Platt's fit recovers a known map, folding it into the policy head changes the
probabilities exactly as the map says (batch and streaming alike), and `salesrl calibrate` writes a model
every command loads."""

import json

import numpy as np
import pytest

from salesrl_jax import metrics
from salesrl_jax.arrays import TurnArrays
from salesrl_jax.cli import main
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.recalibration import PlattScaling, check_recalibratable, fit_platt, logits_of
from salesrl_jax.run.trained_model import TrainedModel
from tests.conftest import tiny_model


def test_fit_platt_recovers_a_known_map():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=40_000)
    y = (rng.uniform(size=z.shape) < PlattScaling(0.5, -0.7)(z)).astype(np.float64)
    fit = fit_platt(z, y)
    assert abs(fit.slope - 0.5) < 0.03 and abs(fit.intercept + 0.7) < 0.03
    # Already calibrated logits stay (nearly) where they are.
    calibrated = fit_platt(z, (rng.uniform(size=z.shape) < PlattScaling(1.0, 0.0)(z)).astype(np.float64))
    assert abs(calibrated.slope - 1) < 0.05 and abs(calibrated.intercept) < 0.05
    # Temperature scaling: the slope alone, the intercept held at 0 (the maximum likelihood along b = 0).
    tempered = (rng.uniform(size=z.shape) < PlattScaling(0.4, 0.0)(z)).astype(np.float64)
    temperature = fit_platt(z, tempered, intercept=False)
    assert temperature.intercept == 0.0 and abs(temperature.slope - 0.4) < 0.03
    nll = [metrics.log_loss(PlattScaling(a, 0.0)(z), tempered) for a in (temperature.slope - 0.01, temperature.slope,
                                                                         temperature.slope + 0.01)]
    assert nll[1] < min(nll[0], nll[2])
    with pytest.raises(ValueError, match="outcomes in"):
        fit_platt(z[:3], np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="one shape"):
        fit_platt(z[:3], y[:4])


def test_logits_of_inverts_the_sigmoid():
    z = np.linspace(-12, 12, 25)
    np.testing.assert_allclose(logits_of(1 / (1 + np.exp(-z))), z, atol=1e-6)


def test_a_model_that_feeds_back_its_prediction_is_refused():
    with pytest.raises(ValueError, match="feed_prediction"):
        check_recalibratable(tiny_model(feed_prediction=True))


def test_calibrate_writes_a_model_whose_probabilities_follow_the_fitted_map(tiny_trained, tiny_arrays, tmp_path,
                                                                            capsys, tiny_archive):
    out = tmp_path / "recalibrated"
    main(["calibrate", "--model", str(tiny_trained), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "Platt scaling" in printed and "wrote" in printed
    model, recalibrated = TrainedModel.load(tiny_trained), TrainedModel.load(out)
    fit = recalibrated.meta["recalibration"]
    scaling = PlattScaling(fit["slope"], fit["intercept"])
    arrays = TurnArrays.open(tiny_arrays)
    predict = make_predict(model.graphdef)
    split = dict(split="valid", valid_fraction=model.config.data.valid_fraction,
                 split_seed=model.config.data.split_seed, rows=512)
    before = predict_arrays(predict, model.params, arrays, **split)
    after = predict_arrays(predict, recalibrated.params, arrays, **split)
    assert fit["turns"] == len(before.prediction)
    # Folded into the policy head: exactly the map applied to the old logits, to float32 rounding.
    np.testing.assert_allclose(after.prediction, scaling(logits_of(before.prediction)), rtol=1e-4, atol=2e-6)
    # The ensemble (the uncertainty signal) is untouched, and so is the ranking.
    np.testing.assert_array_equal(after.uncertainty, before.uncertainty)
    # A monotone map keeps the ranking; float32 rounding may tie (or untie) a few near-equal pairs, each worth
    # half a pair of the AUC's denominator.
    positives = int(np.sum(before.outcome))
    one_pair = 1.0 / (positives * (len(before.outcome) - positives))
    assert abs(metrics.roc_auc(after.prediction, after.outcome)
               - metrics.roc_auc(before.prediction, before.outcome)) <= 2 * one_pair
    # Maximum likelihood over a family holding the identity: the fit turns' log loss cannot rise.
    assert metrics.log_loss(after.prediction, after.outcome) <= metrics.log_loss(before.prediction, before.outcome) + 1e-6
    # The streaming scorer serves the same recalibrated probabilities.
    from salesrl_jax.data.readers import read_conversations

    conv = next(iter(read_conversations(tiny_archive)))
    old_session, new_session = Scorer.load(tiny_trained).session(), Scorer.load(out).session()
    for turn in conv.turns:
        old = old_session.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        new = new_session.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        assert new.probability == pytest.approx(float(scaling(logits_of(np.array([old.probability])))[0]), abs=1e-5)
    # A second export into the same directory is refused rather than mixed with the first.
    with pytest.raises(SystemExit, match="already holds a checkpoint"):
        main(["calibrate", "--model", str(tiny_trained), "--out", str(out)])
    assert json.loads(json.dumps(recalibrated.meta))["config"] == model.meta["config"]


def test_calibrate_on_other_arrays_uses_all_their_conversations(tiny_trained, tiny_arrays, tmp_path):
    main(["calibrate", "--model", str(tiny_trained), "--out", str(tmp_path / "out"), "--data", str(tiny_arrays),
          "--split", "all"])
    fit = TrainedModel.load(tmp_path / "out").meta["recalibration"]
    arrays = TurnArrays.open(tiny_arrays)
    assert fit["split"] == "all" and fit["turns"] == arrays.num_turns and fit["conversations"] == arrays.num_conversations
    main(["calibrate", "--model", str(tiny_trained), "--out", str(tmp_path / "tempered"), "--data", str(tiny_arrays),
          "--split", "all", "--form", "temperature"])
    tempered = TrainedModel.load(tmp_path / "tempered").meta["recalibration"]
    assert tempered["form"] == "temperature" and tempered["intercept"] == 0.0


def test_fit_platt_stays_finite_on_separable_data():
    z = np.linspace(-3, 3, 200)
    fit = fit_platt(z, (z > 0).astype(np.float64))
    assert np.isfinite(fit.slope) and fit.slope > 1 and np.isfinite(PlattScaling(fit.slope, fit.intercept)(z)).all()


def test_calibrate_on_last_turns_and_warn_on_few_conversations(tiny_trained, tiny_arrays, tmp_path):
    import warnings

    import numpy as np

    from salesrl_jax.arrays.subset import write_subset
    from salesrl_jax.eval.calibration import recalibrate_model

    tempered = recalibrate_model(tiny_trained, tmp_path / "temperature", data=tiny_arrays, split="all",
                                 form="temperature")
    assert tempered.scaling.intercept == 0.0 and tempered.fit["form"] == "temperature"
    assert "Temperature scaling" in tempered.summary()
    assert TrainedModel.load(tmp_path / "temperature").meta["recalibration"]["form"] == "temperature"
    result = recalibrate_model(tiny_trained, tmp_path / "last", data=tiny_arrays, split="all", turns="last")
    arrays = TurnArrays.open(tiny_arrays)
    assert result.fit["fitted_on"] == "last" and result.fit["turns"] == arrays.num_conversations
    assert "last turns only" in result.summary()
    few = write_subset(arrays, lambda part: np.arange(part.num_conversations) < 20, tmp_path / "few")
    with pytest.warns(UserWarning, match="fitted on 40 conversations only"):
        recalibrate_model(tiny_trained, tmp_path / "few-model", data=few.path, split="all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough conversations: no warning
        recalibrate_model(tiny_trained, tmp_path / "all", data=tiny_arrays, split="all")


def test_recalibrating_an_ngram_model_scales_its_wide_term_too(ngram_trained, ngram_arrays, tmp_path):
    """The wide term is part of the logit: the folded model serves sigmoid(a z + b) of the source's whole logit z
    (before session 18 the slope reached the deep head only, so an n-gram model served another map)."""
    import numpy as np

    from salesrl_jax.eval.calibration import recalibrate_model

    model = TrainedModel.load(ngram_trained)
    assert "wide_map" in model.params["encoder"]["project"]
    result = recalibrate_model(ngram_trained, tmp_path / "platt", data=ngram_arrays, split="all")
    assert abs(result.scaling.slope - 1.0) > 0.05  # a map that moves the wide term measurably
    predict = make_predict(model.graphdef)
    arrays = TurnArrays.open(ngram_arrays)
    before = predict_arrays(predict, model.params, arrays, rows=512)
    after = predict_arrays(predict, TrainedModel.load(tmp_path / "platt").params, arrays, rows=512)
    np.testing.assert_allclose(after.prediction, result.scaling(logits_of(before.prediction)), rtol=1e-4, atol=2e-6)


def test_a_finished_run_serves_its_best_model_recalibrated_on_its_validation_split(tiny_trained, tiny_arrays):
    """`salesrl train` hands over a calibrated model: the run directory serves checkpoints/calibrated, the best
    checkpoint with the temperature fitted on the validation split folded in (the fit `salesrl crossval` measures)."""
    from salesrl_jax.run.recalibration import fit_recalibration

    served, best = TrainedModel.load(tiny_trained), TrainedModel.load(tiny_trained / "checkpoints" / "best")
    assert served.directory == tiny_trained / "checkpoints" / "calibrated"
    fit = served.meta["recalibration"]
    assert fit["form"] == "temperature" and fit["intercept"] == 0.0 and fit["split"] == "valid"
    assert fit["from_sha256"] == best.params_digest != served.params_digest
    assert fit["after"]["log_loss"] <= fit["before"]["log_loss"]
    assert json.loads((tiny_trained / "result.json").read_text())["recalibration"]["slope"] == fit["slope"]
    assert fit_recalibration(best, None, "valid", "all", "temperature")[0].slope == pytest.approx(fit["slope"],
                                                                                                   rel=1e-9)
    arrays = TurnArrays.open(tiny_arrays)
    predict = make_predict(best.graphdef)
    before = predict_arrays(predict, best.params, arrays, rows=512)
    after = predict_arrays(predict, served.params, arrays, rows=512)
    np.testing.assert_allclose(after.prediction, PlattScaling(fit["slope"], 0.0)(logits_of(before.prediction)),
                               rtol=1e-4, atol=2e-6)


def test_the_recalibration_follows_the_best_checkpoint(tiny_trained, tmp_path):
    """A rerun keeps a recalibration made for the current best; a damaged one is fitted again; a new best
    removes it (the run directory must never serve a recalibration of another model)."""
    import shutil
    from typing import NamedTuple

    from salesrl_jax.run.checkpoints import Checkpoints, find_checkpoint
    from salesrl_jax.run.recalibration import recalibrate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_trained, run)
    target = run / "checkpoints" / "calibrated"
    step = next(p for p in target.iterdir() if p.name.isdigit())
    written = step.stat().st_mtime_ns
    again = recalibrate_run(run, level=1.0)  # as the tiny run's config asks (`tiny_config`)
    assert again.path == target and step.stat().st_mtime_ns == written and again.scaling.intercept == 0.0
    shutil.rmtree(step / "params")  # damaged: fitted and written again
    redone = recalibrate_run(run, level=1.0)
    assert {**redone.fit, "from": ""} == {**again.fit, "from": ""} and TrainedModel.load(run).directory == target
    class State(NamedTuple):
        params: dict

    checkpoints = Checkpoints(run)
    try:
        assert checkpoints.save_best(State({"w": np.zeros(2, np.float32)}), {}, valid_log_loss=-1.0)
    finally:
        checkpoints.close()
    assert not target.exists() and find_checkpoint(run) == run / "checkpoints" / "best"


def test_no_recalibration_where_there_is_none_to_fit(tiny_trained, tiny_arrays, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from salesrl_jax.run import recalibration
    from salesrl_jax.run.config import DataConfig
    from salesrl_jax.train.loop import _recalibrate
    from tests.conftest import tiny_config

    config = tiny_config(tiny_arrays)
    for off in (dataclasses.replace(config, recalibration="none"),
                dataclasses.replace(config, data=DataConfig(train=tiny_arrays, valid_fraction=0.0)),
                dataclasses.replace(config, model=tiny_model(feed_prediction=True))):
        assert _recalibrate(off, tmp_path / "never-read") is None
    # A slope that is not positive would reverse the ranking (or switch the wide term off): the best is served.
    run = tmp_path / "run"
    shutil.copytree(tiny_trained, run)
    shutil.rmtree(run / "checkpoints" / "calibrated")
    monkeypatch.setattr(recalibration, "fit_recalibration",
                        lambda *args, **kwargs: (PlattScaling(-0.2, 0.0), {"conversations": 120}))
    with pytest.warns(UserWarning, match="not recalibrated: its fitted slope -0.2000 is not positive"):
        assert recalibration.recalibrate_run(run) is None
    assert TrainedModel.load(run).directory == run / "checkpoints" / "best"
    # Nor on a validation split of a few dozen conversations: a temperature fitted there can be anything.
    monkeypatch.setattr(recalibration, "fit_recalibration",
                        lambda *args, **kwargs: (PlattScaling(40.0, 0.0), {"conversations": 23}))
    with pytest.warns(UserWarning, match="holds 23 conversations, too few to fit a temperature scaling on"):
        assert recalibration.recalibrate_run(run) is None


def test_the_miscalibration_test_reads_conversations_not_turns_and_tells_a_calibrated_model_from_an_overconfident_one():
    """`miscalibration_test`: outcomes drawn from the model's own probabilities are not rejected, twice-too-confident
    logits are (temperature and Platt alike); repeating every turn of a conversation ten times (as correlated as
    turns can be) leaves the statistic unchanged, where a test that counted turns as independent would find ten
    times the evidence."""
    from salesrl_jax.run.recalibration import miscalibration_test

    rng = np.random.default_rng(31)
    conversations, turns = 600, 8
    groups = np.repeat(np.arange(conversations), turns)
    z = rng.normal(-0.4, 1.2, conversations * turns)
    results = {}
    for name, truth in (("calibrated", z), ("overconfident", z / 2)):
        y = (rng.random(len(z)) < 1 / (1 + np.exp(-truth))).astype(np.float64)
        for intercept in (False, True):
            scaling = fit_platt(z, y, intercept=intercept)
            wald, p = miscalibration_test(z, y, groups, scaling, intercept)
            results[name, intercept] = p
            repeated = miscalibration_test(np.repeat(z, 10), np.repeat(y, 10), np.repeat(groups, 10),
                                           fit_platt(np.repeat(z, 10), np.repeat(y, 10), intercept=intercept),
                                           intercept)
            assert repeated[0] == pytest.approx(wald, rel=1e-4)
    assert min(results["calibrated", False], results["calibrated", True]) > 0.05
    assert max(results["overconfident", False], results["overconfident", True]) < 1e-6


def test_a_run_recalibrates_only_where_its_split_shows_a_miscalibration(tiny_trained, tmp_path):
    """`recalibrate_run` at the level the config names: the same fit is served where its p-value is under the
    level and not where it is at or above it (the best checkpoint served, with the reason said)."""
    import shutil

    from salesrl_jax.run.recalibration import fit_recalibration, recalibrate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_trained, run)
    shutil.rmtree(run / "checkpoints" / "calibrated")
    _, fit = fit_recalibration(TrainedModel.load(run / "checkpoints" / "best"), None, "valid", "all", "temperature",
                               warn_few=False)
    assert 0.0 < fit["p_value"] < 1.0 and fit["wald"] >= 0.0
    with pytest.warns(UserWarning, match="not recalibrated: its validation split shows no miscalibration to correct"):
        assert recalibrate_run(run, level=fit["p_value"] * 0.99) is None
    assert TrainedModel.load(run).directory == run / "checkpoints" / "best"
    done = recalibrate_run(run, level=min(1.0, fit["p_value"] * 1.01 + 1e-9))
    assert done is not None and done.fit["p_value"] == pytest.approx(fit["p_value"])
    assert TrainedModel.load(run).directory == run / "checkpoints" / "calibrated"
    # A rerun at a level that would not make it now removes it: the run directory serves what the rule decides.
    with pytest.warns(UserWarning, match="shows no miscalibration to correct"):
        assert recalibrate_run(run, level=fit["p_value"] * 0.99) is None
    assert TrainedModel.load(run).directory == run / "checkpoints" / "best"

"""The confidence module end to end: fitted beside a trained model, saved and loaded with orbax, refused from another
embedding space, the same in batch, streaming and archive scoring (float and int8), evaluated with --ood-data."""

import dataclasses
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.data.persuasionforgood import read_persuasionforgood
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed import EmbeddingSpaceMismatch
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.eval.confidence_fit import fit_confidence
from salesrl_jax.eval.evaluate import evaluate_model
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.infer.scorer import Scorer, streaming_step
from salesrl_jax.models.confidence import confidence_outputs, signals_of
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.confidence_store import confidence_directory
from salesrl_jax.run.trained_model import TrainedModel
from tests.conftest import TINY_DIM, scored_turns

P4G = Path(__file__).parent.parent / "fixtures" / "persuasionforgood"


@pytest.fixture(scope="module")
def confident(tiny_trained, tmp_path_factory) -> Path:
    """A copy of the tiny trained run with a confidence fit beside its best checkpoint."""
    run = tmp_path_factory.mktemp("confident") / "run"
    shutil.copytree(tiny_trained, run)
    fit_confidence(run)
    return run


def test_fit_saves_and_loads_beside_the_model(confident):
    model = TrainedModel.load(confident)
    directory = confidence_directory(model.directory)
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["model_params_sha256"] == model.params_digest
    assert meta["fit"]["interval"] == "conformal"  # the tiny synthetic arrays carry the oracle
    params = model.confidence
    assert params.bank.shape == (512, model.config.model.state_dim)
    # the tiny arrays hold about 5,000 training turns: each distinct one joins the text bank, in its own 32 dimensions
    arrays, data = TurnArrays.open(model.config.data.train), model.config.data
    rows = []
    for p in range(len(arrays)):
        part = arrays.part(p)
        offsets = np.asarray(part.offsets)
        for c in split_conversations(part, "train", data.valid_fraction, data.split_seed):
            rows.append(np.asarray(part.embeddings[offsets[c]:offsets[c + 1]]))
    distinct = np.unique(np.concatenate(rows), axis=0)
    assert params.text == "dense" and params.text_bank.shape == (len(distinct), TINY_DIM)


def test_a_fit_from_another_embedding_space_is_refused_and_a_stale_one_unused(confident, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(confident, run)
    meta_path = confidence_directory(TrainedModel.load(run).directory) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "embedder": {**meta["embedder"], "dim": 64}}))
    with pytest.raises(EmbeddingSpaceMismatch, match="fitted in the embedding space"):
        TrainedModel.load(run).confidence
    meta_path.write_text(json.dumps({**meta, "arrays_sha256": "0" * 64}))  # damaged or edited arrays
    with pytest.raises(ValueError, match="confidence fit"):
        TrainedModel.load(run).confidence
    meta_path.write_text(json.dumps({**meta, "model_params_sha256": "0" * 64}))
    with pytest.warns(UserWarning, match="fitted for other parameters"):
        assert TrainedModel.load(run).confidence is None
    assert Scorer.load(run).session().add_turn("customer", "hello there").confidence is None


def test_a_model_without_a_fit_scores_as_before(tiny_trained):
    score = Scorer.load(tiny_trained).session().add_turn("customer", "How much would this cost us?")
    assert score.confidence is None and score.p_low is None and 0 < score.probability < 1


def test_signals_read_turns_one_to_t_only(confident, tiny_arrays):
    model = TrainedModel.load(confident)
    arrays = TurnArrays.open(tiny_arrays)
    predict = make_predict(model.graphdef, extra=signals_of)
    pred = predict_arrays(predict, model.params, arrays, rows=512, max_conversations=6, args=model.confidence)
    part = arrays.part(0)
    # The same conversations with every turn after the third replaced by noise: turns 1..3 keep their outputs.
    from salesrl_jax.models.inputs import TurnInputs

    rows = np.flatnonzero(pred.conversation < 6)
    later = pred.turn_index[rows] >= 3
    embeddings = np.asarray(part.embeddings[rows], np.float32)
    features = np.asarray(part.features[rows], np.float32)
    noisy_embeddings, noisy_features = embeddings.copy(), features.copy()
    noisy_embeddings[later] = np.random.default_rng(0).normal(size=noisy_embeddings[later].shape)
    noisy_features[later] *= 3.0
    outputs = []
    for emb, feat in ((embeddings, features), (noisy_embeddings, noisy_features)):
        inputs = TurnInputs(jnp.asarray(emb), jnp.asarray(feat), jnp.asarray(pred.turn_index[rows] == 0),
                            jnp.ones(len(rows), bool))
        prob, unc, signals = predict(model.params, inputs, model.confidence)
        outputs.append(confidence_outputs(model.confidence, np.asarray(prob), np.asarray(unc),
                                          signals, pred.turn_index[rows]))
    for name in ("confidence", "expected_error", "familiarity", "p_low", "p_high"):
        np.testing.assert_allclose(getattr(outputs[0], name)[~later], getattr(outputs[1], name)[~later], atol=1e-6)
        assert not np.allclose(getattr(outputs[0], name)[later], getattr(outputs[1], name)[later])


@pytest.mark.parametrize("quantized", [False, True])
def test_streaming_equals_archive_scoring_with_confidence(confident, tiny_archive, tmp_path, quantized):
    conversations = list(read_conversations(tiny_archive))[:8]
    write_conversations(tmp_path / "calls.jsonl", conversations)
    scored = score_archive(confident, tmp_path / "calls.jsonl", tmp_path / "scores.jsonl", workers=1,
                           quantized=quantized)
    rows = scored_turns(scored)
    summary = [json.loads(line) for line in scored.outputs["conversations"].read_text().splitlines()]
    scorer = Scorer.load(confident, quantized=quantized)
    names = ("probability", "confidence", "expected_error", "familiarity", "p_low", "p_high")
    # int8: streaming runs the dequantized float graph, archive scoring int8 x int8 (as for the probability)
    tolerance = {name: 0.03 if quantized else 2e-5 for name in names}
    familiarity_gaps = []
    for conv, conv_summary in zip(conversations, summary):
        session = scorer.session()
        streamed = [session.add_turn(t.speaker, t.text, t.start_time, t.duration) for t in conv.turns]
        batch = [r for r in rows if r["conversation_id"] == conv.id]
        for name in names:
            got, want = np.array([getattr(s, name) for s in streamed]), np.array([r[name] for r in batch])
            if quantized and name == "familiarity":  # checked over all turns below
                familiarity_gaps.append(np.abs(got - want))
                continue
            np.testing.assert_allclose(got, want, atol=tolerance[name], err_msg=name)
        if not quantized:
            assert [s.low_confidence for s in streamed] == [r["low_confidence"] for r in batch]
        assert conv_summary["final_confidence"] == batch[-1]["confidence"]
        assert all(0 <= r["p_low"] <= r["p_high"] <= 1 for r in batch)
    if quantized:
        # the familiarity is a rank among calibration turns: int8 rounding of the state moves most turns by a few
        # percentiles, and a rare turn near a dense stretch of calibration turns by about ten
        gaps = np.concatenate(familiarity_gaps)
        assert np.mean(gaps) < 0.02 and np.percentile(gaps, 90) < 0.05 and gaps.max() < 0.15, gaps
    if not quantized:  # --no-confidence: the same probabilities, without the columns
        plain = score_archive(confident, tmp_path / "calls.jsonl", tmp_path / "plain.jsonl", workers=1,
                              confidence=False)
        plain_rows = scored_turns(plain)
        assert [r["probability"] for r in plain_rows] == [r["probability"] for r in rows]
        assert "confidence" not in plain_rows[0]


def test_evaluate_reports_confidence_and_out_of_distribution(confident, tiny_arrays, tmp_path):
    write_conversations(tmp_path / "p4g.jsonl", list(read_persuasionforgood(P4G)))
    embed_archive(tmp_path / "p4g.jsonl", tmp_path / "p4g-arrays", EmbedderConfig(kind="hashing", dim=TINY_DIM),
                  workers=1)
    model = TrainedModel.load(confident)
    evaluation = evaluate_model(model, tiny_arrays, tmp_path / "eval", split="valid",
                                ood_data=tmp_path / "p4g-arrays")
    tables = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    selective = tables["confidence"]["selective"]
    assert set(selective["aurc_error"]) == {"module", "baseline |p-0.5|", "oracle |q-0.5|", "optimal"}
    assert selective["aurc_error"]["optimal"] <= min(selective["aurc_error"].values())
    coverage = [row["coverage"] for row in tables["confidence"]["intervals"]]
    assert coverage and all(0 <= c <= 1 for c in coverage)
    # each row's range of coverage a valid interval shows there holds the nominal level, and is wider the fewer
    # the turns (a pooled or a large bucket: the binomial range of the test turns alone for the last turns)
    level = tables["confidence"]["interval_level"]
    rows = tables["confidence"]["intervals"]
    assert all(r["valid_lo"] <= level <= r["valid_hi"] for r in rows)
    assert max(r["valid_hi"] - r["valid_lo"] for r in rows) > min(r["valid_hi"] - r["valid_lo"] for r in rows)
    assert tables["confidence"]["coverage_summary"] is None  # no turn index of this tiny set has 500 conversations
    ood = tables["ood"]
    assert ood["conversations_out"] > 0 and 0 <= ood["auroc_at_turn_4"]["confidence"] <= 1
    # human dialogues are unlike the simulator's
    assert ood["mean"]["familiarity"]["out"] < ood["mean"]["familiarity"]["in"]
    assert ood["auroc_at_turn_4"]["familiarity"] > 0.9
    # ... so the gate widens their intervals; only the simulator's turns have a true probability to cover
    assert ood["mean"]["interval_width"]["out"] > ood["mean"]["interval_width"]["in"]
    assert 0 <= ood["mean"]["coverage"]["in"] <= 1 and ood["mean"]["coverage"]["out"] is None
    assert all(r["width_out"] > r["width_in"] and r["coverage_out"] is None for r in ood["by_turn"])
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "Out of distribution" in report and "| width in | width out |" in report and "range of a valid interval" in report and (tmp_path / "eval" / "confidence.png").exists()
    assert "confidence" in evaluation.predictions.confidence.__dataclass_fields__
    import pyarrow.parquet as pq

    columns = pq.read_table(tmp_path / "eval" / "predictions.parquet").column_names
    assert {"confidence", "p_low", "p_high", "low_confidence"} <= set(columns)


def test_recalibration_refits_the_confidence_for_the_new_probabilities(confident, tmp_path):
    from salesrl_jax.eval.calibration import recalibrate_model

    recalibrate_model(confident, tmp_path / "recalibrated")
    model = TrainedModel.load(tmp_path / "recalibrated")
    meta = json.loads((confidence_directory(model.directory) / "meta.json").read_text())
    assert meta["model_params_sha256"] == model.params_digest != TrainedModel.load(confident).params_digest
    assert model.confidence is not None


def test_the_command_line_refits_and_names_a_missing_fit(confident, tiny_trained, tiny_arrays, tmp_path, capsys):
    from salesrl_jax.cli import main

    run = tmp_path / "run"
    shutil.copytree(confident, run)
    main(["confidence", "--model", str(run), "--bank-size", "64"])
    assert "bank of 64 training states" in capsys.readouterr().out
    assert TrainedModel.load(run).confidence.bank.shape[0] == 64
    with pytest.raises(SystemExit, match="has no confidence fit; fit it with `salesrl confidence MODEL`"):
        main(["evaluate", "--model", str(tiny_trained), "--data", str(tiny_arrays), "--ood-data", str(tiny_arrays),
              "--out", str(tmp_path / "eval")])


def test_the_forms_script_on_one_set_twice_separates_nothing_and_reproduces_the_module(confident, tiny_arrays):
    """scripts/confidence_forms.py: the fitted module is the form at its own level; identical sets give AUROC 0.5."""
    from tests.conftest import load_script

    script = load_script("confidence_forms")
    alpha = float(TrainedModel.load(confident).confidence.familiarity_level)
    table = script.main(script.Config(str(confident), str(tiny_arrays), str(tiny_arrays), levels=(alpha, 0.3)))
    assert table[f"alpha {alpha}"] == pytest.approx(table["module as fitted"])
    for name, row in table.items():
        if "odd half" not in name:  # the same turns on both sides: nothing tells them apart
            assert row["auroc_at_4"] == pytest.approx(0.5), name
        assert 0.0 <= row["aurc_in"] <= 1.0 and 0.0 <= row["aurc_mixed"] <= 1.0
    # Every turn twice leaves the risk-coverage curve as it was, but for the steps between tied confidences.
    assert table["|p - 0.5|"]["aurc_in"] == pytest.approx(table["|p - 0.5|"]["aurc_mixed"], abs=1e-3)


def test_the_forms_script_matches_errors_at_equal_margins():
    """matched_error: a set with the other's error rate at every margin reads no excess; one that is wrong more often
    at the same margins reads the difference."""
    from tests.conftest import load_script

    script = load_script("confidence_forms")
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    inside = script.Turns(p, (rng.uniform(size=p.size) < p).astype(int), np.zeros(p.size, int))
    alike = script.Turns(p[::-1], (rng.uniform(size=p.size) < p[::-1]).astype(int), np.zeros(p.size, int))
    actual, expected = script.matched_error(inside, alike)
    assert abs(actual - expected) < 0.01
    flipped = alike._replace(outcome=np.where(rng.uniform(size=p.size) < 0.2, 1 - alike.outcome, alike.outcome))
    actual, expected = script.matched_error(inside, flipped)
    # a fifth of the outcomes flipped: error e becomes 0.8 e + 0.2 (1 - e), here e = 0.25 on average
    assert actual - expected == pytest.approx(0.2 * (1 - 2 * 0.25), abs=0.015)


def test_a_second_archive_in_one_process_compiles_nothing(confident, tiny_archive, tmp_path):
    """The scorer's programs are shared per model structure: scoring again in one process (a second archive, a
    benchmark's second round, a notebook) loads the model and its int8 form without compiling anything."""
    from salesrl_jax.infer.archive import ChunkScorer
    from salesrl_jax.infer.quantize import _batch_ranges

    calls = tmp_path / "calls.jsonl"
    write_conversations(calls, list(read_conversations(tiny_archive))[:40])
    first = ChunkScorer.load(confident, quantized=True, with_confidence=True, rows=512)
    assert first.confidence is not None  # the signals are in the program
    assert ChunkScorer.load(confident, quantized=True, with_confidence=True, rows=512).predict is first.predict
    score_archive(confident, calls, tmp_path / "a.jsonl", workers=1, quantized=True)
    programs = {name: fn._cache_size() for name, fn in first.predict.programs.items()}
    ranges = _batch_ranges._cache_size()
    assert sum(programs.values()) >= 1 and ranges >= 1
    second = score_archive(confident, calls, tmp_path / "b.jsonl", workers=1, quantized=True)
    assert {name: fn._cache_size() for name, fn in first.predict.programs.items()} == programs
    assert _batch_ranges._cache_size() == ranges
    assert second.outputs["turns"].read_text() == (tmp_path / "a.jsonl").read_text()


def test_scorers_of_one_model_structure_share_their_compiled_step(confident, tiny_archive):
    """A second `Scorer` of the same model (a service reloading it, a notebook cell run again; int8 too, whose step
    runs the float graph on dequantized weights) compiles nothing: its turns run the first scorer's programs, to the
    same bits."""
    conversation = next(iter(read_conversations(tiny_archive)))
    streaming_step.cache_clear()  # programs counted from none

    def run(scorer):
        session = scorer.session()
        return [dataclasses.astuple(session.add_turn(t.speaker, t.text, t.start_time, t.duration))
                for t in conversation.turns]

    first = Scorer.load(confident)
    assert first.confidence is not None  # the bank is an argument of the step: confidence shares the program too
    before = run(first)
    assert first._step._cache_size() == 1
    again, quantized = Scorer.load(confident), Scorer.load(confident, quantized=True)
    assert again._step is first._step and quantized._step is first._step
    assert run(again) == before
    run(quantized)
    assert first._step._cache_size() == 1
    plain = Scorer.load(confident, confidence=False)  # no bank: the same function, one more program
    run(plain)
    assert plain._step is first._step and first._step._cache_size() == 2

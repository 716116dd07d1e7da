"""`salesrl crossval` on a small archive: every output, folds that never split a conversation, resumption."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from salesrl_jax.arrays.split import stratified_folds
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.arrays.subset import write_subset
from salesrl_jax.pipelines.crossval import crossval
from salesrl_jax.run.config import DataConfig
from tests.conftest import tiny_config

pytest.importorskip("sklearn")


def test_folds_are_stratified_stable_and_never_split_a_conversation():
    ids = [f"c{i}" for i in range(103)]
    labels = np.array([i % 3 == 0 for i in range(103)], int)
    fold = stratified_folds(ids, labels, 5, seed=0)
    assert sorted(np.bincount(fold)) in ([20, 21, 21, 21, 20], sorted([20, 20, 21, 21, 21]))
    for k in range(5):  # each fold holds its share of positives, to one conversation
        assert abs(labels[fold == k].mean() - labels.mean()) < 0.05
    order = np.random.default_rng(0).permutation(103)  # the assignment depends on the ids, not their order
    again = stratified_folds([ids[i] for i in order], labels[order], 5, seed=0)
    assert dict(zip(ids, fold)) == dict(zip([ids[i] for i in order], again))
    assert not np.array_equal(fold, stratified_folds(ids, labels, 5, seed=1))
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(ids[:3], labels[:3], 5, seed=0)


def test_subset_arrays_hold_exactly_the_chosen_conversations(tiny_arrays, tmp_path):
    arrays = TurnArrays.open(tiny_arrays)
    subset = write_subset(arrays, lambda part: np.arange(part.num_conversations) % 4 == 1, tmp_path / "sub")
    original = {i: p for p in arrays.iter_parts() for i in p.ids}
    kept = [i for p in subset.iter_parts() for i in p.ids]
    assert kept == [i for p in arrays.iter_parts() for c, i in enumerate(p.ids) if c % 4 == 1]
    part = next(subset.iter_parts())
    source = original[part.ids[0]]
    c = source.ids.index(part.ids[0])
    np.testing.assert_array_equal(part.embeddings[part.offsets[0]:part.offsets[1]],
                                  source.embeddings[source.offsets[c]:source.offsets[c + 1]])
    assert subset.num_conversations == len(kept) and subset.manifest["source"] == {"subset_of": str(tiny_arrays)}


def test_crossval_writes_every_output_and_resumes(tiny_archive, tiny_arrays, tmp_path):
    # An inner split of 120 conversations (of 400): enough to recalibrate on.
    config = tiny_config(tiny_arrays, ppo=tiny_config(tiny_arrays).ppo.__class__(enabled=False),
                         data=DataConfig(train=tiny_arrays, valid_fraction=0.3))
    out = tmp_path / "cv"
    result = crossval(tiny_archive, out, folds=3, config=config, bootstrap=40, progress=False)
    for name in ("report.md", "metrics.json", "oof_predictions.parquet", "auc_by_turn.png", "reliability.png"):
        assert (out / name).stat().st_size > 0, name
    oof = pq.read_table(out / "oof_predictions.parquet").to_pydict()
    arrays = TurnArrays.open(tiny_arrays)
    assert len(oof["turn_index"]) == arrays.num_turns  # every turn of every (labelled) conversation, once
    assert len(set(zip(oof["conversation_id"], oof["turn_index"]))) == arrays.num_turns
    folds_of = {}
    for conv_id, fold in zip(oof["conversation_id"], oof["fold"]):
        assert folds_of.setdefault(conv_id, fold) == fold  # a conversation is held out in one fold only
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) >= {"model", "model_uncalibrated", "tfidf_plain_prefix", "features_gbm"}
    last = metrics["methods"]["model"]["last"]
    assert last["auc_lo"] <= last["auc"] <= last["auc_hi"] and last["n"] == arrays.num_conversations
    assert last["auc"] > 0.65  # the simulator's outcome is learnable
    assert set(metrics["methods"]["model"]["by_turn"]["2"]) >= {"auc", "auc_lo", "brier", "ece_hi", "log_loss", "n"}
    assert metrics["paired"]["last"]["reference"].startswith("tfidf")
    # Each held-out fold's own difference against the same reference: what one held-out file of that size reads.
    from salesrl_jax.metrics import roc_auc

    columns = {k: np.asarray(v) for k, v in oof.items()}
    last_rows = columns["turn_index"] == columns["length"] - 1
    reference = metrics["paired"]["last"]["reference"]
    expected = [roc_auc(columns["model"][m], columns["outcome"][m].astype(float))
                - roc_auc(columns[reference][m], columns["outcome"][m].astype(float))
                for m in (last_rows & (columns["fold"] == k) for k in range(3))]
    np.testing.assert_allclose(metrics["paired"]["last"]["by_fold"], [expected], atol=1e-9)
    assert "| in each fold |" in result.summary()
    mean = metrics["mean_auc_turns_4_12_difference"]
    mid = [k for k in (4, 6, 8, 12) if str(k) in metrics["paired"]]

    def fold_difference(k: int, fold: int) -> float:
        m = (columns["turn_index"] == k - 1) & (columns["fold"] == fold)
        return (roc_auc(columns["model"][m], columns["outcome"][m].astype(float))
                - roc_auc(columns[mean["reference"]][m], columns["outcome"][m].astype(float)))

    np.testing.assert_allclose(mean["by_fold"], [[np.mean([fold_difference(k, f) for k in mid]) for f in range(3)]],
                               atol=1e-9)
    assert "(in each fold: " in result.summary()
    # ... and their mean beside the pooled figure (pooling mixes the folds' models)
    assert f"; mean {np.mean(mean['by_fold'][0]):+.3f})" in result.summary()
    assert f"; mean {np.mean(expected):+.3f} |" in result.summary()
    assert "can lose more AUC to pooling than a recalibrated one" in (out / "report.md").read_text()
    assert metrics["embedder"].startswith("hashing:")  # the space the model read, recorded and reported
    assert f"`{metrics['embedder']}`" in (out / "report.md").read_text()
    assert "model minus the strongest TF-IDF" in result.summary()
    # Every training prefix read by the prefix-fitted variants at the default bound; a bound that bit is reported.
    from salesrl_jax.pipelines.crossval import write_crossval_report

    read = metrics["baseline_prefixes"]
    assert read["read"] == read["of"] == 2 * arrays.num_turns  # each conversation trains in 2 of the 3 folds
    assert "`--baseline-max-prefixes`" not in (out / "report.md").read_text()
    capped = write_crossval_report({**metrics, "baseline_prefixes": {"read": 1_234, "of": 5_000}}, tmp_path)
    assert "read 1,234 of the folds' 5,000 training prefixes (`--baseline-max-prefixes`)" in capped.read_text()
    with pytest.raises(ValueError, match="different baseline_max_prefixes"):
        crossval(tiny_archive, out, folds=3, config=config, bootstrap=40, progress=False, baseline_max_prefixes=50)
    # Each fold's inner split (early stopping, recalibration) is its own: one seed would hold out the same
    # conversations in every fold and bias them all alike.
    from salesrl_jax.arrays.split import validation_mask

    trained, inner = [], []
    for k in range(2):
        run = json.loads((out / f"fold-{k}" / "seed-0" / "model" / "config.json").read_text())
        assert run["data"]["split_seed"] == config.data.split_seed + k
        ids = [i for part in TurnArrays.open(out / f"fold-{k}" / "train-arrays").iter_parts() for i in part.ids]
        mask = validation_mask(ids, run["data"]["valid_fraction"], run["data"]["split_seed"])
        trained.append(set(ids))
        inner.append({i for i, v in zip(ids, mask) if v})
    both = trained[0] & trained[1]  # fold 2's conversations: in both folds' training data
    assert inner[0] & both and len(inner[0] & inner[1] & both) < 0.5 * len(inner[0] & both)
    # Recalibrated by temperature (the slope alone): an intercept fitted on a small inner split did not carry over.
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(out / "fold-0" / "seed-0" / "model")
    fit = model.meta["recalibration"]
    assert fit["form"] == "temperature" and fit["intercept"] == 0.0 and fit["split"] == "valid"
    assert fit["from_sha256"] == TrainedModel.load(model.directory.parent / "best").params_digest
    # `salesrl evaluate --baselines` of a fold's model on its held-out fold is that fold of the crossval: the same
    # model predictions, and the baselines fitted on the model's training arrays predict as the fold's did.
    from salesrl_jax.eval.evaluate import evaluate_model
    from salesrl_jax.pipelines.compare import baselines_section

    held_out = out / "fold-0" / "test-arrays"
    evaluate_model(model, held_out, tmp_path / "eval", plots=False,
                   sections=[baselines_section(model, held_out, bootstrap=20)])
    compared = pq.read_table(tmp_path / "eval" / "baseline_predictions.parquet").to_pydict()
    for name, method in (("model.parquet", "model"), ("baselines.parquet", "tfidf_tagged_prefix"),
                         ("baselines.parquet", "features_gbm")):
        fold = pq.read_table(out / "fold-0" / name).to_pydict()
        at = {(c, t): i for i, (c, t) in enumerate(zip(fold["conversation_id"], fold["turn_index"]))}
        order = [at[(c, t)] for c, t in zip(compared["conversation_id"], compared["turn_index"])]
        assert len(order) == len(at)
        np.testing.assert_array_equal(np.asarray(fold[method])[order], compared[method])

    # A kill: one fold's predictions and the pooled outputs lost. The rerun redoes only what is missing.
    kept = (out / "fold-0" / "model.parquet").stat().st_mtime_ns
    for path in (out / "fold-2" / "model.parquet", out / "fold-1" / "baselines.parquet", out / "metrics.json"):
        path.unlink()
    again = crossval(tiny_archive, out, folds=3, config=config, bootstrap=40, progress=False)
    assert (out / "fold-0" / "model.parquet").stat().st_mtime_ns == kept
    assert again.metrics == json.loads(json.dumps(metrics)) == json.loads((out / "metrics.json").read_text())
    with pytest.raises(ValueError, match="different folds"):
        crossval(tiny_archive, out, folds=4, config=config, progress=False)

    # Repeated: the finished run extended by a second fold assignment (fold seed 1, in repeat-1/), the first kept;
    # every figure is the mean of the two assignments' own figures, on the same conversations.
    twice = crossval(tiny_archive, out, folds=3, config=config, bootstrap=40, progress=False, repeats=2)
    assert (out / "fold-0" / "model.parquet").stat().st_mtime_ns == kept
    assert (out / "repeat-1" / "fold-2" / "baselines.parquet").exists()
    both = pq.read_table(out / "oof_predictions.parquet").to_pydict()
    assert len(both["turn_index"]) == 2 * arrays.num_turns and set(both["repeat"]) == {0, 1}
    fold_in = [{c: f for c, f, r in zip(both["conversation_id"], both["fold"], both["repeat"]) if r == repeat}
               for repeat in (0, 1)]
    assert fold_in[0] == folds_of and sum(fold_in[0][c] != fold_in[1][c] for c in fold_in[0]) > len(folds_of) / 3
    from salesrl_jax.metrics import roc_auc

    columns = {k: np.asarray(v) for k, v in both.items()}
    last = columns["turn_index"] == columns["length"] - 1
    auc = [roc_auc(columns["model"][last & (columns["repeat"] == r)],
                   columns["outcome"][last & (columns["repeat"] == r)].astype(float)) for r in (0, 1)]
    assert auc[0] == pytest.approx(metrics["methods"]["model"]["last"]["auc"], abs=1e-6) and auc[0] != auc[1]
    assert twice.metrics["methods"]["model"]["last"]["auc"] == pytest.approx(np.mean(auc), abs=1e-6)
    paired = twice.metrics["paired"]["last"]
    reference = [roc_auc(columns[paired["reference"]][last & (columns["repeat"] == r)],
                         columns["outcome"][last & (columns["repeat"] == r)].astype(float)) for r in (0, 1)]
    np.testing.assert_allclose(paired["by_repeat"], np.subtract(auc, reference), atol=1e-6)
    assert paired["diff"] == pytest.approx(np.mean(paired["by_repeat"]), abs=1e-6)
    mean_diff = twice.metrics["mean_auc_turns_4_12_difference"]  # the figure issue 12's mid-conversation bar reads
    means = twice.metrics["mean_auc_turns_4_12"]
    assert mean_diff["reference"] == max((m for m in means if m.startswith("tfidf")), key=means.get)
    assert mean_diff["diff"] == pytest.approx(means["model"] - means[mean_diff["reference"]], abs=1e-9)
    assert mean_diff["diff"] == pytest.approx(np.mean(mean_diff["by_repeat"]), abs=1e-6)
    assert mean_diff["lo"] <= mean_diff["diff"] <= mean_diff["hi"]
    assert f"({mean_diff['reference']}): {mean_diff['diff']:+.3f} [{mean_diff['lo']:+.3f}, " in twice.summary()
    assert twice.metrics["repeats"] == 2 and twice.metrics["fold_seeds"] == [0, 1]
    assert "2 fold assignments" in twice.summary() and "fold seeds 0, 1" in (out / "report.md").read_text()
    # What the scripts read (scripts/reference_selection.py, scripts/oof_combinations.py): one assignment at a time.
    from salesrl_jax.pipelines.crossval import read_oof

    second = read_oof(out / "oof_predictions.parquet", repeat=1)
    assert "repeat" not in second and len(set(zip(second["conversation_id"], second["turn_index"]))) == arrays.num_turns
    np.testing.assert_array_equal(second["model"], columns["model"][columns["repeat"] == 1])
    with pytest.raises(ValueError, match="no fold assignment 2"):
        read_oof(out / "oof_predictions.parquet", repeat=2)


def test_a_fold_whose_inner_split_is_too_small_to_recalibrate_serves_its_best(tiny_archive, tiny_arrays, tmp_path):
    """400 training conversations x 0.2 = 80 inner ones, under the recalibration's 100: the run keeps its best
    checkpoint, and the model's held-out predictions are the uncalibrated ones (computed once)."""
    import dataclasses
    import warnings

    config = tiny_config(tiny_arrays, ppo=tiny_config(tiny_arrays).ppo.__class__(enabled=False))
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=1))
    out = tmp_path / "cv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crossval(tiny_archive, out, folds=3, config=config, baselines=False, bootstrap=20, progress=False)
    assert any("not recalibrated" in str(w.message) for w in caught)
    assert not (out / "fold-0" / "seed-0" / "model" / "checkpoints" / "calibrated").exists()
    oof = pq.read_table(out / "oof_predictions.parquet").to_pydict()
    np.testing.assert_array_equal(oof["model"], oof["model_uncalibrated"])


def test_too_few_labels_say_where_they_went(tmp_path):
    """An archive whose outcomes are not where the reader looks, or whose records were all set aside, is refused with
    the counts, the most common reason and the way to name the label; nothing is trained."""
    rows = tmp_path / "calls.csv"
    rows.write_text("call_id,turn,speaker,words,closed\n" + "".join(f"c{i},0,rep,hello there,1\n" for i in range(6)))
    with pytest.raises(ValueError) as err:
        crossval(rows, tmp_path / "cv", folds=3, baselines=False, progress=False)
    message = str(err.value)
    assert "0 labelled conversations cannot fill 3 folds" in message and "6 records set aside" in message
    assert f"reasons in {tmp_path / 'cv' / 'arrays' / 'rejects.jsonl'}" in message
    assert "field 'text': missing text (one of text, message, content, utterance" in message
    rows.write_text("call_id,turn,speaker,text,closed\n" + "".join(f"c{i},0,rep,hello there,1\n" for i in range(6)))
    with pytest.raises(ValueError) as err:
        crossval(rows, tmp_path / "cv2", folds=3, baselines=False, progress=False)
    assert ("6 conversations read, 0 with an outcome; the outcome is read from the first of outcome, converted"
            in str(err.value)) and "--label-key" in str(err.value)
    assert not list((tmp_path / "cv2").glob("fold-*"))

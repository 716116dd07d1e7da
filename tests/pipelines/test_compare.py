"""`salesrl evaluate --baselines`: a trained model against the baselines on a test set of its own, paired; the
archives found through the arrays' manifests and checked; a test set that overlaps the training data refused."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.baselines.fit import TFIDF_METHODS, fit_baselines
from salesrl_jax.baselines.prefixes import build_prefixes, concat_tables
from salesrl_jax.cli import main
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.eval.evaluate import evaluate_model
from salesrl_jax.pipelines.compare import baselines_section
from salesrl_jax.run.trained_model import TrainedModel
from tests.conftest import TINY_DIM

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """150 simulator conversations of another seed (other ids) than the tiny model's training archive: the archive
    and its arrays."""
    from salesrl_jax.sim.config import SimulatorConfig
    from salesrl_jax.sim.generate import generate

    root = tmp_path_factory.mktemp("compare")
    archive = root / "test-archive"
    generate(SimulatorConfig(num_conversations=150, seed=12), archive, fmt="parquet", workers=1)
    arrays = root / "test-arrays"
    embed_archive(archive, arrays, EmbedderConfig(dim=TINY_DIM), workers=1)
    return archive, arrays


def test_the_model_and_the_baselines_are_scored_on_the_same_test_prefixes(tiny_trained, tiny_archive, tiny_arrays,
                                                                          test_set, tmp_path):
    archive, arrays = test_set
    model = TrainedModel.load(tiny_trained)
    out = tmp_path / "eval"
    result = evaluate_model(model, arrays, out, sections=[baselines_section(model, arrays, bootstrap=50)])
    saved = json.loads((out / "metrics.json").read_text())["baselines"]
    assert set(saved["methods"]) == {"model", *TFIDF_METHODS, "embedding_lr", "features_gbm"}
    assert saved["conversations"] == 150 and saved["training_conversations"] == 600
    assert saved["train_archive"] == str(tiny_archive) and saved["test_archive"] == str(archive)  # from the manifests
    assert set(saved["paired"]) >= {"1", "2", "3", "4", "6", "last"}
    assert saved["paired"]["last"]["reference"] in TFIDF_METHODS
    last = saved["methods"]["model"]["last"]
    assert last["auc"] == pytest.approx(result.tables["last_turn"]["model"]["auc"], abs=1e-6)  # the model as evaluated

    # Every test prefix once, the model's column the evaluation's own predictions in its order.
    rows = pq.read_table(out / "baseline_predictions.parquet").to_pydict()
    evaluated = pq.read_table(out / "predictions.parquet").to_pydict()
    assert rows["conversation_id"] == evaluated["conversation_id"] and rows["turn_index"] == evaluated["turn_index"]
    np.testing.assert_array_equal(np.float32(rows["model"]), np.float32(evaluated["prediction"]))
    assert len(rows["turn_index"]) == TurnArrays.open(arrays).num_turns

    # The baselines are what fitting on the training archive alone predicts for each (conversation, turn).
    train_set, test_arrays = TurnArrays.open(tiny_arrays), TurnArrays.open(arrays)
    train = build_prefixes(read_conversations(tiny_archive), train_set)
    test = build_prefixes(read_conversations(archive), test_arrays)
    direct = fit_baselines(concat_tables(train, test), np.arange(600), np.arange(600, 750), methods=TFIDF_METHODS,
                           max_prefix_rows=None)
    table = concat_tables(train, test)
    key = {(table.ids[c], int(t)): i for i, (c, t) in
           enumerate(zip(table.conversation[direct.rows], table.turn_index[direct.rows]))}
    order = [key[(c, int(t))] for c, t in zip(rows["conversation_id"], rows["turn_index"])]
    for method in TFIDF_METHODS:
        np.testing.assert_allclose(rows[method], direct.probs[method][order], rtol=1e-6)

    report = (out / "report.md").read_text()
    assert "**Against the baselines**" in report and "(auc_by_turn.png)" in report
    assert "| tfidf_tagged_whole | " in report.split("Last turn (95% bootstrap")[1]  # calibration beside the AUC
    assert {"brier", "ece", "ece_null_hi", "log_loss"} <= set(saved["methods"]["tfidf_plain_whole"]["last"])
    assert (out / "auc_by_turn.png").stat().st_size > 0
    printed = result.summary()
    assert "model minus the strongest TF-IDF variant" in printed and "auc_by_turn.png" not in printed

    # --max-conversations: the baselines predict those conversations' prefixes only, as the full run did.
    few = tmp_path / "eval-few"
    evaluate_model(model, arrays, few, max_conversations=40, sections=[baselines_section(model, arrays, bootstrap=50)])
    part = pq.read_table(few / "baseline_predictions.parquet").to_pydict()
    assert json.loads((few / "metrics.json").read_text())["baselines"]["conversations"] == 40
    assert len(set(part["conversation_id"])) == 40 and len(part["turn_index"]) < len(rows["turn_index"])
    full = {(c, t): i for i, (c, t) in enumerate(zip(rows["conversation_id"], rows["turn_index"]))}
    same = [full[(c, t)] for c, t in zip(part["conversation_id"], part["turn_index"])]
    for method in TFIDF_METHODS:
        np.testing.assert_allclose(part[method], np.asarray(rows[method])[same], rtol=1e-6)


def test_the_archives_are_found_checked_and_an_overlapping_test_set_refused(tiny_trained, tiny_archive, test_set,
                                                                            tiny_arrays, tmp_path, monkeypatch):
    archive, _ = test_set
    model = TrainedModel.load(tiny_trained)
    with pytest.raises(ValueError, match=r"shares 600 conversations with the model's training arrays"):
        baselines_section(model, tiny_arrays)

    # Arrays built from a copy of the archive that is gone since: named, with the flag that finds it.
    moved = tmp_path / "moved-archive"
    shutil.copytree(archive, moved)
    arrays = tmp_path / "arrays"
    embed_archive(moved, arrays, EmbedderConfig(dim=TINY_DIM), workers=1)
    shutil.rmtree(moved)
    with pytest.raises(ValueError, match=rf"{moved} \(recorded in .*manifest.json\): not found.*--test-archive"):
        baselines_section(model, arrays)
    baselines_section(model, arrays, test_archive=archive)  # the same files elsewhere: accepted
    with pytest.raises(ValueError, match=r"not the archive .* was built from .*SHA-256"):
        baselines_section(model, arrays, test_archive=tiny_archive)

    # Paths recorded relative to where `salesrl embed` ran are found from elsewhere, through the folders above.
    project = tmp_path / "project"
    shutil.copytree(archive, project / "data" / "archive")
    monkeypatch.chdir(project)
    embed_archive("data/archive", "data/arrays", EmbedderConfig(dim=TINY_DIM), workers=1)
    monkeypatch.chdir(tmp_path)
    assert TurnArrays.open(project / "data" / "arrays").manifest["source"]["path"] == "data/archive"
    baselines_section(model, project / "data" / "arrays")


def test_the_command_line_says_what_baselines_need(tiny_trained, test_set, tmp_path, capsys):
    _, arrays = test_set
    base = ["evaluate", "--model", str(tiny_trained), "--data", str(arrays), "--out", str(tmp_path / "e")]
    for extra, message in ((["--baselines", "--split", "valid"], "compares on a test set of its own"),
                           (["--train-archive", str(tmp_path)], "read with --baselines only")):
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert message in str(exit_info.value)

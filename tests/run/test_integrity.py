"""Fault injection on saved models: damaged checkpoints, a missing best checkpoint, stale or empty int8
parameters. Each is refused with a message naming the directory, or handled with nothing silently changed."""

import json
import shutil
import warnings

import numpy as np
import pytest

from salesrl_jax.infer.quantize import int8_model, quantize_model, read_provenance
from salesrl_jax.io.digest import IntegrityError, check_tree, tree_digest
from salesrl_jax.run.checkpoints import CheckpointReadError, export_model, find_checkpoint
from salesrl_jax.run.trained_model import TrainedModel


@pytest.fixture
def run(tiny_trained, tmp_path):
    """A copy of a trained run without its recalibration: the model it serves is its best checkpoint, which these
    tests damage (a recalibrated model is a checkpoint like any other, read by the same code)."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_trained, copy)
    shutil.rmtree(copy / "checkpoints" / "calibrated")
    return copy


def _params_files(run):
    step = next(p for p in (run / "checkpoints" / "best").iterdir() if p.name.isdigit())
    return sorted((p for p in (step / "params").rglob("*") if p.is_file() and p.stat().st_size > 256),
                  key=lambda p: p.stat().st_size)


def test_tree_digest_sees_one_flipped_bit_and_non_finite_values():
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(4, np.float32)}}
    digest = tree_digest(tree)
    flipped = {"a": tree["a"].copy(), "b": tree["b"]}
    flipped["a"].view(np.uint32)[1, 1] ^= 1
    assert tree_digest(flipped) != digest
    assert tree_digest({"a": tree["a"].reshape(3, 2), "b": tree["b"]}) != digest  # same bytes, other shape
    check_tree(tree, digest, "x")
    with pytest.raises(IntegrityError, match="damaged or changed"):
        check_tree(flipped, digest, "x")
    with pytest.raises(IntegrityError, match="NaN"):
        check_tree({"a": np.array([np.nan], np.float32)}, None, "x")


@pytest.mark.parametrize("flips", [2, 256])
def test_flipped_checkpoint_bytes_are_refused_by_name(run, flips):
    target = _params_files(run)[-1]  # the largest data file of the parameters
    data = bytearray(target.read_bytes())
    rng = np.random.default_rng(flips)
    for spot in rng.choice(len(data), size=flips, replace=False):
        data[spot] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises((IntegrityError, CheckpointReadError)) as err:
        TrainedModel.load(run)
    assert "checkpoints/best" in str(err.value)


def test_truncated_checkpoint_meta_is_named(run):
    step = next(p for p in (run / "checkpoints" / "best").iterdir() if p.name.isdigit())
    meta = next(p for p in (step / "meta").rglob("*") if p.is_file())
    meta.write_bytes(meta.read_bytes()[:10])
    with pytest.raises(CheckpointReadError, match=str(run / "checkpoints" / "best")):
        TrainedModel.load(run)


def test_a_missing_best_checkpoint_is_an_error_not_a_switch_to_latest(run):
    for step in (run / "checkpoints" / "best").iterdir():
        shutil.rmtree(step) if step.is_dir() else step.unlink()
    with pytest.raises(FileNotFoundError, match="no best checkpoint.*checkpoints/latest"):
        find_checkpoint(run)
    assert find_checkpoint(run / "checkpoints" / "latest") == run / "checkpoints" / "latest"  # on purpose: fine
    TrainedModel.load(run / "checkpoints" / "latest")


def test_stale_int8_parameters_are_not_used(run, tmp_path):
    quantize_model(run)
    model = TrainedModel.load(run)
    assert read_provenance(run / "int8")["float_params_sha256"] == model.params_digest
    _, _, how = int8_model(model)
    assert how.startswith("saved int8 parameters")
    # The float model changes (as a retrain or recalibration would): the saved int8 parameters are now stale.
    shutil.rmtree(run / "checkpoints" / "best")
    changed = {k: v for k, v in model.meta.items() if k != "params_sha256"}
    import jax

    export_model(run, jax.tree.map(lambda x: x * 1.5, model.params), changed)
    retrained = TrainedModel.load(run)
    assert retrained.params_digest != model.params_digest
    with pytest.warns(UserWarning, match="stale"):
        _, params, how = int8_model(retrained)
    assert how.startswith("quantized now")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = int8_model(retrained)[1]
    assert tree_digest(params) == tree_digest(fresh)


def test_an_empty_or_unprovenanced_int8_directory_is_not_used(run):
    (run / "int8").mkdir()
    with pytest.warns(UserWarning, match="record no float parameters"):
        _, _, how = int8_model(TrainedModel.load(run))
    assert how.startswith("quantized now")


def test_damaged_int8_parameters_are_refused(run):
    quantize_model(run)
    provenance = json.loads((run / "int8" / "provenance.json").read_text())
    provenance["int8_params_sha256"] = "0" * 64
    (run / "int8" / "provenance.json").write_text(json.dumps(provenance))
    with pytest.raises(IntegrityError, match="int8"):
        int8_model(TrainedModel.load(run))


def test_a_missing_ocdbt_manifest_is_named(run):
    step = next(p for p in (run / "checkpoints" / "best").iterdir() if p.name.isdigit())
    manifests = list((step / "params").rglob("manifest.ocdbt"))
    assert manifests
    for manifest in manifests:
        manifest.unlink()
    with pytest.raises(CheckpointReadError, match="checkpoints/best"):
        TrainedModel.load(run)

"""Data-parallel training: 8 virtual CPU devices give the one-device parameters (same packing, same seed);
the packing into slices and the per-slice scans that make it local."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.arrays import batches as batch_lib
from salesrl_jax.models.scan import affine_scan
from salesrl_jax.run.config import ParallelConfig
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def test_segmented_affine_scan_is_independent_scans():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, (4, 12, 3)), rng.normal(size=(4, 12, 3))
    for reverse in (False, True):
        gain, h = affine_scan(jnp.asarray(a), jnp.asarray(b), axis=1, segments=3, reverse=reverse)
        for s in range(3):
            cut = slice(4 * s, 4 * s + 4)
            want_gain, want_h = affine_scan(jnp.asarray(a[:, cut]), jnp.asarray(b[:, cut]), axis=1, reverse=reverse)
            np.testing.assert_allclose(gain[:, cut], want_gain, rtol=1e-6)
            np.testing.assert_allclose(h[:, cut], want_h, rtol=1e-6)
    with pytest.raises(ValueError, match="equal segments"):
        affine_scan(jnp.ones(10), jnp.ones(10), segments=3)


def test_packing_in_slices_keeps_every_conversation_whole_and_once(tiny_arrays):
    arrays = TurnArrays.open(tiny_arrays)
    plan = batch_lib.epoch_plan(arrays, "train", 0.2, 0, 0, 0, 256, 4, segments=8)
    seen = []
    for chunk in plan:
        part = arrays.part(chunk.part)
        host = batch_lib.gather_packed(part, chunk.minibatches, 256, 4, segments=8)
        assert host.index.shape == (4, 256)
        for m in range(4):
            for s in range(8):
                rows = host.index[m, 32 * s: 32 * s + 32]
                starts = host.starts[m, 32 * s: 32 * s + 32]
                assert rows[0] == -1 or starts[0], "a slice begins with a conversation (or is empty)"
                assert np.all(np.diff(np.flatnonzero(rows >= 0)) == 1), "padding only at a slice's end"
        # A process's share: slices 2..5 of every minibatch, exactly those columns.
        local = batch_lib.gather_packed(part, chunk.minibatches, 256, 4, segments=8, local=(2, 6))
        np.testing.assert_array_equal(local.index, host.index[:, 64:192])
        np.testing.assert_array_equal(local.embeddings, host.embeddings[:, 64:192])
        offsets = np.asarray(part.offsets)
        seen += [(chunk.part, int(np.searchsorted(offsets, r, side="right") - 1))
                 for r in host.index[host.starts]]
    assert len(seen) == len(set(seen))
    total = sum(len(batch_lib.split_conversations(arrays.part(p), "train", 0.2, 0)) for p in range(len(arrays)))
    assert len(seen) == total


def test_parallel_config_is_checked(tiny_arrays):
    with pytest.raises(ValueError, match="multiple of parallel.segments"):
        tiny_config(tiny_arrays, parallel=ParallelConfig(segments=3))
    with pytest.raises(ValueError, match="multiple of parallel.devices"):
        ParallelConfig(devices=4, segments=6)


def test_more_devices_than_visible_is_a_clear_error(tiny_arrays, tmp_path):
    from salesrl_jax.train.loop import train_and_evaluate

    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        train_and_evaluate(tiny_config(tiny_arrays, parallel=ParallelConfig(devices=jax.device_count() + 1)),
                           tmp_path / "run", progress=False)


def test_eight_virtual_devices_train_as_one(tiny_arrays, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "tests.parallel.mesh_runs", str(tiny_arrays), str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["moved"] > 1e-3  # training changed the parameters, so equality below means something
    # Float tolerance: the all-reduce sums gradients in another order, and Adam divides each update by the root of
    # its squared gradients, so a parameter whose gradient is nearly zero turns that rounding into a full step now
    # and then: the largest difference (9.5e-4 against moves of 0.05) is such a parameter. The mean difference
    # (3.5e-7 against mean moves of 0.013) and the validation log loss (to 1e-7) show the runs are the same.
    # The FSDP run was also stopped and resumed on the mesh.
    for name in ("eight", "fsdp"):
        assert found[f"{name}_vs_one_mean"] < 1e-4 * found["moved_mean"]
        assert found[f"{name}_vs_one"] < 0.05 * found["moved"]
        other = found["valid"]["eight_devices" if name == "eight" else "fsdp"]
        assert abs(other["log_loss"] - found["valid"]["one_device"]["log_loss"]) < 1e-5
    assert found["saved_parallel"]["eight_devices"]["devices"] == 8
    assert found["saved_parallel"]["eight_devices"]["segments"] == 8
    assert found["saved_parallel"]["one_device"] == {**found["saved_parallel"]["one_device"], "devices": 1,
                                                     "segments": 8}
    assert 0 < len(found["fsdp_sharded_leaves"]) < found["fsdp_leaves"]

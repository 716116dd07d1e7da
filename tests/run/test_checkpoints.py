"""Checkpoints are written from host copies of the arrays (faster in orbax) and read back as the run's arrays:
the same values, dtypes and placement as the state saved; a checkpoint written from device arrays (every run
saved before this change) reads back the same way."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from salesrl_jax.io.digest import tree_digest
from salesrl_jax.run.checkpoints import PARAMS_DIGEST, Checkpoints


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _State:
    params: dict
    opt: dict


def _state(seed: int) -> _State:
    key = jax.random.key(seed)
    return _State({"w": jax.random.normal(key, (5, 3)), "count": jnp.arange(3, dtype=jnp.int32)},
                  {"m": jax.random.normal(key, (5, 3)).astype(jnp.bfloat16), "key": jax.random.key_data(key)})


def _same(restored, saved) -> None:
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(saved)):
        assert isinstance(got, jax.Array) and got.dtype == want.dtype and got.sharding == want.sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_latest_and_best_read_back_what_was_saved(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    first, second = _state(0), _state(1)
    checkpoints.save_latest(first, {"position": 1})
    assert checkpoints.save_best(first, {"position": 1, "valid": {"log_loss": 0.7}}, 0.7)
    checkpoints.save_latest(second, {"position": 2})
    # No better: the best stays the first.
    assert not checkpoints.save_best(second, {"position": 2, "valid": {"log_loss": 0.8}}, 0.8)
    state, meta = checkpoints.restore_latest(first)
    _same(state, second)
    assert meta["position"] == 2
    best = Checkpoints(tmp_path)  # a new process's view
    _same(best.restore_latest(first)[0], second)
    assert best.best_meta()["position"] == 1


def test_a_checkpoint_written_from_device_arrays_reads_back_the_same(tmp_path):
    """Runs saved before checkpoints were written from host copies hold `jax.Array` leaves' files."""
    saved = _state(2)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.latest.save(1, args=ocp.args.Composite(
        state=ocp.args.StandardSave(saved), params=ocp.args.StandardSave(saved.params),
        meta=ocp.args.JsonSave({PARAMS_DIGEST: tree_digest(saved.params)})), force=True)
    checkpoints.close()
    state, _ = Checkpoints(tmp_path).restore_latest(_state(0))
    _same(state, saved)

"""Where a training run's arrays live: the mesh, the batch sharding, and the state's shardings.

A packed minibatch of ``N`` rows is ``segments`` equal slices of whole conversations
(`salesrl_jax.arrays.batches.gather_packed`); its row axis is sharded on the mesh's ``data`` axis, so each
device holds ``segments / devices`` slices and the history scans run per slice
(`salesrl_jax.models.scan.affine_scan`): no scan crosses a device. The losses' means over rows and the
gradients become all-reduces, inserted by XLA.

The state (parameters, optimizer moments, step, key) is replicated, or under ``fsdp`` each array of at least
``fsdp_min_size`` elements is split along its largest axis that the device count divides (Adam's moments have
their parameter's shape, so they follow it). `Placement.constrain` pins the jitted update's output state to the
same layout, so the next call finds its inputs where the compiled program expects them (no recompiles).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class Placement:
    """A run's mesh and layout rules (see the module docstring)."""

    mesh: Mesh
    segments: int  # slices per packed minibatch, a multiple of the device count
    params: str = "replicated"  # or "fsdp"
    fsdp_min_size: int = 2 ** 16

    @property
    def devices(self) -> int:
        return self.mesh.devices.size

    @property
    def single(self) -> bool:
        """One device in one process: arrays are placed as JAX places them by default."""
        return self.devices == 1 and jax.process_count() == 1

    # --- the batch ------------------------------------------------------------------------------
    def batch_sharding(self, ndim: int) -> NamedSharding:
        """``[M, N, ...]`` arrays: the row axis (1) on the data axis."""
        return NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS, *([None] * (ndim - 2))))

    def local_segments(self) -> tuple[int, int]:
        """The slices ``lo..hi-1`` of every minibatch that this process's devices hold (all of them in one
        process). The mesh lists each process's devices together, so a process's share is contiguous."""
        per_process = self.segments // jax.process_count()
        lo = jax.process_index() * per_process
        return lo, lo + per_process

    def put_batch(self, tree: Any) -> Any:
        """Host arrays ``[M, N_local, ...]`` (this process's slices) -> global device arrays ``[M, N, ...]``."""
        if self.single:
            return jax.tree.map(jax.numpy.asarray, tree)
        if jax.process_count() == 1:
            return jax.tree.map(lambda x: jax.device_put(x, self.batch_sharding(np.ndim(x))), tree)

        def put(x):
            x = np.asarray(x)
            shape = (x.shape[0], x.shape[1] * jax.process_count()) + x.shape[2:]
            return jax.make_array_from_process_local_data(self.batch_sharding(x.ndim), x, shape)

        return jax.tree.map(put, tree)

    # --- the training state -------------------------------------------------------------------
    def leaf_sharding(self, shape: tuple[int, ...]) -> NamedSharding:
        """Replicated, or (fsdp, a large array) split along its largest axis the device count divides."""
        if self.params == "fsdp" and int(np.prod(shape, dtype=np.int64)) >= self.fsdp_min_size:
            axes = sorted((a for a in range(len(shape)) if shape[a] % self.devices == 0), key=lambda a: -shape[a])
            if axes:
                spec = [None] * len(shape)
                spec[axes[0]] = DATA_AXIS
                return NamedSharding(self.mesh, PartitionSpec(*spec))
        return NamedSharding(self.mesh, PartitionSpec())

    def state_shardings(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: self.leaf_sharding(np.shape(x)), tree)

    def put_state(self, tree: Any) -> Any:
        """The state on the mesh (from host or device arrays; in several processes every process passes the same
        values, as a run started from one seed does)."""
        if self.single:
            return tree
        if jax.process_count() == 1:
            return jax.device_put(tree, self.state_shardings(tree))
        return jax.tree.map(lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda index: np.asarray(x)[index]),
                            tree, self.state_shardings(tree))

    def constrain(self, tree: Any) -> Any:
        """Inside jit: the state's layout pinned (a no-op on one device)."""
        if self.single:
            return tree
        return jax.lax.with_sharding_constraint(tree, self.state_shardings(tree))

    def to_host_device(self, tree: Any) -> Any:
        """The parameters as single-device arrays of this process (for validation and inference, which run per
        process on one device): FSDP shards are gathered."""
        if self.single:
            return tree
        if jax.process_count() > 1:
            tree = multihost_utils.process_allgather(tree, tiled=True)
        return jax.device_put(tree, jax.local_devices()[0])


def make_placement(devices: int = 0, segments: int = 0, params: str = "replicated",
                   fsdp_min_size: int = 2 ** 16) -> Placement:
    """A mesh of ``devices`` devices (0: all JAX sees, in every process) on one ``data`` axis, with
    ``segments`` slices per minibatch (0: one per device)."""
    available = jax.devices()
    devices = devices or len(available)
    if devices > len(available):
        raise ValueError(f"parallel.devices={devices}, but JAX sees {len(available)} device(s) "
                         f"({available[0].platform}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                         "makes N")
    if devices % jax.process_count():
        raise ValueError(f"parallel.devices={devices} must be a multiple of the {jax.process_count()} processes")
    segments = segments or devices
    if segments % devices:
        raise ValueError(f"parallel.segments={segments} must be a multiple of the {devices} devices")
    if params not in ("replicated", "fsdp"):
        raise ValueError(f"parallel.params must be replicated or fsdp, got {params!r}")
    if jax.process_count() == 1:
        chosen = available[:devices]
    else:  # the same number from every process, each process's devices together
        per_process = devices // jax.process_count()
        chosen = [d for p in range(jax.process_count())
                  for d in [d for d in available if d.process_index == p][:per_process]]
    return Placement(Mesh(np.array(chosen), (DATA_AXIS,)), segments, params, fsdp_min_size)

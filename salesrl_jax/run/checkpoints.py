"""A run directory's checkpoints: one wrapper around orbax's `CheckpointManager`, both sides.

A run directory keeps two: ``checkpoints/latest`` (the most recent, for resuming) and
``checkpoints/best`` (the best by validation log loss). A finished run adds ``checkpoints/calibrated``, the best
with its probabilities recalibrated on the validation split (`salesrl_jax.run.recalibration.recalibrate_run`): the
model a run directory serves to evaluation and scoring when it is there (`find_checkpoint`). The latest holds the
training state (any pytree: `salesrl_jax.train.state.TrainState` for a training run) and its parameters apart (what
inference restores); the best and the calibrated hold the parameters alone. Each has a JSON ``meta`` item: the
resolved config, the data position (phase, epoch, chunk or update), the embedding identity and feature
names the model was trained on, and the validation metrics. Saves are synchronous and orbax
finalises a step directory atomically, so a kill at any moment leaves the previous checkpoint
intact.

Integrity: every save records the SHA-256 of the parameters in ``meta["params_sha256"]``
(`salesrl_jax.io.digest`) and every restore checks it, so damaged or edited files are refused with a
message naming the directory instead of predicting silently wrong numbers; a checkpoint orbax cannot
read at all is named the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from salesrl_jax.io.digest import check_tree, tree_digest

PARAMS_DIGEST = "params_sha256"
CALIBRATED = "calibrated"
"""The manager directory, beside ``best``, of a run's recalibrated best model: what the run directory serves."""
IMPROVEMENT_TOLERANCE = 1e-9
"""How much lower a validation log loss must be to count as a new best: a float32 model whose step moved nothing but
the rounding of a few predictions (measured: 1.1e-10, a frozen PPO step) has not improved, and early stopping must
count that validation as stalled."""


def _manager(directory: Path, best: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1,
        enable_async_checkpointing=False,
        best_fn=(lambda metrics: metrics["valid_log_loss"]) if best else None,
        best_mode="min",
        cleanup_tmp_directories=True,  # a kill mid-save leaves a tmp directory: remove it on the next run
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


def _on_host(tree):
    """``tree`` with its arrays copied to host numpy arrays, in a single process: orbax writes a numpy leaf in about a
    third of the time of a `jax.Array` leaf (0.4 against 1.1 ms; measured on a 90-leaf training state, 57 against 124
    ms a save), and a restore into the run's shardings reads the same files either way. Across processes the arrays
    stay as they are: orbax writes each process's shards of a `jax.Array`, not a host copy."""
    return jax.device_get(tree) if jax.process_count() == 1 else tree


class Checkpoints:
    def __init__(self, workdir: str | os.PathLike[str]):
        self.root = Path(workdir) / "checkpoints"
        self.latest = _manager(self.root / "latest", best=False)
        self.best = _manager(self.root / "best", best=True)
        self._save_count = self.latest.latest_step() or 0

    def save_latest(self, state, meta: dict) -> None:
        meta = {**meta, PARAMS_DIGEST: tree_digest(state.params)}
        state = _on_host(state)
        self._save_count += 1
        self.latest.save(self._save_count, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), params=ocp.args.StandardSave(state.params),
            meta=ocp.args.JsonSave(meta)), force=True)

    def save_best(self, state, meta: dict, valid_log_loss: float | None, than: float | None = None) -> bool:
        """Keep ``state`` if its validation log loss beats the best so far by more than `IMPROVEMENT_TOLERANCE`;
        returns whether it did. The best so far is ``than`` (``inf``: none yet), or the kept best's when None. A run
        resumed from a latest checkpoint older than its best replays validations that the kept best already
        followed, and must judge each against the best as of then (`salesrl_jax.train.phases.RunContext`).
        ``valid_log_loss`` None: a run without a validation split, whose newest model is its best (kept always; the
        manager's metric is minus the step, so that the newest is the lowest)."""
        step = (self.best.latest_step() or 0) + 1
        if valid_log_loss is None:
            valid_log_loss = -float(step)
        elif (self.best_log_loss() if than is None else than) - IMPROVEMENT_TOLERANCE <= valid_log_loss:
            return False
        # A recalibration of the previous best must not outlive it: the run directory would serve it.
        shutil.rmtree(self.root / CALIBRATED, ignore_errors=True)
        meta = {**meta, PARAMS_DIGEST: tree_digest(state.params)}
        state = _on_host(state)
        # The parameters alone: the best is a model to serve, never resumed from (the latest is), and the optimizer's
        # two moments and the running average would make each save four times the parameters' size.
        self.best.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                                                     meta=ocp.args.JsonSave(meta)),
                       metrics={"valid_log_loss": float(valid_log_loss)}, force=True)
        return True

    def best_log_loss(self) -> float:
        """The kept best's validation log loss; ``inf`` without a best, or for one kept unvalidated."""
        current = self.best_meta()
        return math.inf if current is None else current["valid"].get("log_loss", math.inf)

    def best_meta(self) -> dict | None:
        step = self.best.latest_step()
        if step is None:
            return None
        with _readable(self.best.directory / str(step)):
            return self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore_latest(self, like):
        step = self.latest.latest_step()
        if step is None:
            return None
        return restore(self.latest, step, like)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


class CheckpointReadError(ValueError):
    """A checkpoint directory that orbax cannot read (truncated, missing or garbled files)."""


@contextlib.contextmanager
def _readable(where: Path):
    """Orbax's errors on damaged files (a JSON decode error, a missing ``manifest.ocdbt``, a closed event loop)
    say nothing of which checkpoint: name it."""
    try:
        yield
    except CheckpointReadError:
        raise
    except Exception as err:  # orbax and tensorstore raise many types (even bare Exception) on damaged files
        raise CheckpointReadError(f"{where}: the checkpoint cannot be read ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else 'no detail'}); its files are damaged "
                                  "or incomplete. Restore them from a copy, or retrain") from err


def restore(manager: ocp.CheckpointManager, step: int, like):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    where = manager.directory / str(step)
    with _readable(where):
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
    check_tree(restored.state.params, restored.meta.get(PARAMS_DIGEST), f"checkpoint {where}")
    return restored.state, restored.meta


def export_model(workdir: str | os.PathLike[str], params, meta: dict) -> Path:
    """Write inference parameters and their meta as a run directory whose ``checkpoints/best`` any
    command loads like a trained run's (no optimizer state: it cannot be resumed). Returns the manager
    directory. Refuses a directory that already holds a checkpoint."""
    path = Path(workdir) / "checkpoints" / "best"
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{workdir}: already holds a checkpoint; choose a new directory")
    return export_checkpoint(path, params, meta)


def export_checkpoint(path: str | os.PathLike[str], params, meta: dict) -> Path:
    """Write inference parameters and their meta as the manager directory ``path`` (one step), which every command
    loads as a model. Returns ``path``."""
    path = Path(path)
    meta = {**meta, PARAMS_DIGEST: tree_digest(params)}
    # Host arrays in every process: what inference restores needs no devices, and in a distributed run orbax writes
    # a host array once (the primary process), where per-process device arrays would all claim the same chunks.
    params = jax.device_get(params)
    with _manager(path, best=False) as manager:
        manager.save(1, args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)),
                     force=True)
    return path


def _read_only_manager(directory: Path) -> ocp.CheckpointManager:
    # orbax logs three warnings for every read-only manager (expected settings, not problems): keep
    # them out of the command line's output.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(directory.absolute(), options=ocp.CheckpointManagerOptions(read_only=True))
    finally:
        absl_logger.setLevel(level)


def read_meta(directory: Path) -> dict:
    """The JSON meta item of the newest step in a manager directory, without touching the arrays."""
    with _readable(directory):
        manager = _read_only_manager(directory)
        step = manager.latest_step()
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    if not isinstance(meta, dict):
        raise CheckpointReadError(f"{directory / str(step)}: the checkpoint's meta is not a JSON object; its files "
                                  "are damaged. Restore them from a copy, or retrain")
    return meta


def _on_this_device(like) -> jax.ShapeDtypeStruct:
    """What to restore a leaf as: its shape and dtype, on its sharding if it has one, else on this process's first
    device. Without a sharding orbax restores to the devices the checkpoint was saved from, and a model trained by
    several processes (jax.distributed) could not be loaded by one ("topology mismatch")."""
    abstract = ocp.utils.to_shape_dtype_struct(like)
    if getattr(abstract, "sharding", None) is not None:
        return abstract
    return jax.ShapeDtypeStruct(abstract.shape, abstract.dtype,
                                sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))


def restore_params(directory: Path, like_params, recorded_digest: str | None = None):
    """Only the parameters (what inference needs) of the newest step in a manager directory, checked against
    ``recorded_digest`` (the meta's ``params_sha256``) and for finiteness."""
    with _readable(directory):
        manager = _read_only_manager(directory)
        abstract = jax.tree.map(_on_this_device, like_params)
        step = manager.latest_step()
        params = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))).params
    check_tree(params, recorded_digest, f"checkpoint {directory / str(step)}")
    return params


def _has_step(directory: Path) -> bool:
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def find_checkpoint(path: str | os.PathLike[str], *, served: bool = True) -> Path:
    """A run directory (its ``checkpoints/calibrated`` when the run recalibrated its best model, else
    ``checkpoints/best``), a manager directory (``checkpoints/best``, ``checkpoints/latest``, named explicitly) or one
    step directory -> the manager directory to load. ``served=False``: a run directory's ``checkpoints/best``, the
    model as training left it (what a warm start reads).

    A run directory whose best checkpoint is missing is an error, never a silent switch to ``latest``
    (a different model): name ``RUN/checkpoints/latest`` to load that one on purpose."""
    path = Path(path)
    runs = path / "checkpoints"
    if runs.is_dir():
        if served and _has_step(runs / CALIBRATED):
            return runs / CALIBRATED
        if _has_step(runs / "best"):
            return runs / "best"
        latest = " (the latest checkpoint is there: pass RUN/checkpoints/latest to use it on purpose)" \
            if _has_step(runs / "latest") else ""
        raise FileNotFoundError(f"{path}: the run has no best checkpoint in {runs / 'best'}{latest}")
    if _has_step(path):
        return path
    if path.name.isdigit() and (path / "meta").exists():
        return path.parent
    raise FileNotFoundError(f"{path}: no checkpoint here (expected a run directory from `salesrl train`)")

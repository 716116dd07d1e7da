"""The confidence module's fitted parameters on disk, beside the model they were fitted for.

``RUN/checkpoints/best`` -> ``RUN/checkpoints/best-confidence/``: ``arrays/`` (an orbax checkpoint of the
`ConfidenceParams` arrays) and ``meta.json`` (its static fields, the embedding space and the digest of the model
parameters it was fitted for, the digest of its own arrays, and how it was fitted). Written to a temporary
directory and renamed into place, so a kill leaves the previous fit or none, never half of one.

Loading refuses a fit from another embedding space, and a fit whose arrays do not match their digest; a fit for
other parameters of the same model (the run was retrained or recalibrated since) is stale, reported, and unused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

from salesrl_jax.embed.base import EmbedderIdentity, EmbeddingSpaceMismatch
from salesrl_jax.io.atomic import atomic_path, discard
from salesrl_jax.io.digest import check_tree, tree_digest
from salesrl_jax.models.confidence import ConfidenceParams


class StaleConfidence(ValueError):
    """A confidence fit made for other parameters of the model (retrained or recalibrated since)."""


def confidence_directory(model_directory: Path) -> Path:
    """Where the fit of the model in ``model_directory`` (a checkpoint manager directory) lives."""
    return model_directory.parent / f"{model_directory.name}-confidence"


def _arrays(params: ConfidenceParams) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in vars(params).items() if name not in params.static}


def save_confidence(directory: Path, params: ConfidenceParams, identity: EmbedderIdentity, model_digest: str,
                    fit: dict) -> Path:
    """Write ``params`` (fitted for the model whose parameter digest is ``model_digest``) to ``directory``."""
    arrays = _arrays(params)
    meta = {"static": params.static, "embedder": dataclasses.asdict(identity), "model_params_sha256": model_digest,
            "arrays_sha256": tree_digest(arrays), "fit": fit}
    directory = Path(directory)
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save((tmp / "arrays").absolute(), arrays)
            checkpointer.wait_until_finished()
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if directory.exists():  # a directory cannot be renamed onto a non-empty one: set the old fit aside first
            old = directory.with_name(f".{directory.name}.old")
            discard(old)
            directory.rename(old)
            shutil.rmtree(old, ignore_errors=True)
    return directory


def load_confidence(directory: Path, identity: EmbedderIdentity, model_digest: str
                    ) -> tuple[ConfidenceParams, dict]:
    """The fit in ``directory`` for the model with embedding space ``identity`` and parameter digest
    ``model_digest``. Raises `EmbeddingSpaceMismatch` for another space, `StaleConfidence` for other parameters."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{directory}: the confidence fit cannot be read ({err}); refit it with "
                         "`salesrl confidence MODEL`") from None
    fitted = EmbedderIdentity(**meta["embedder"])
    if fitted != identity:
        raise EmbeddingSpaceMismatch(f"{directory}: the confidence module was fitted in the embedding space "
                                     f"{fitted.key!r}, but the model reads {identity.key!r}; refit it with "
                                     "`salesrl confidence MODEL`")
    if meta["model_params_sha256"] != model_digest:
        raise StaleConfidence(f"{directory}: the confidence module was fitted for other parameters of this model "
                              "(retrained or recalibrated since); refit it with `salesrl confidence MODEL`")
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            arrays = checkpointer.restore((directory / "arrays").absolute())
        except Exception as err:  # orbax raises many types on damaged files
            raise ValueError(f"{directory / 'arrays'}: the confidence fit cannot be read ({type(err).__name__}); "
                             "refit it with `salesrl confidence MODEL`") from None
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    check_tree(arrays, meta["arrays_sha256"], f"confidence fit {directory}")
    try:
        return ConfidenceParams(**arrays, **meta["static"]), meta
    except TypeError as err:  # fields added or removed since the fit was written
        raise ValueError(f"{directory}: the confidence fit was written by another version of the library ({err}); "
                         "refit it with `salesrl confidence MODEL`") from None

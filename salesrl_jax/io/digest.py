"""Content digests of parameter trees: recorded when an artefact is written, checked when it is read.

A digest is SHA-256 over every leaf's path, dtype, shape and bytes, in the tree's flattening order, so
one flipped bit in any parameter, a leaf renamed or a shape changed gives another digest. Computing it
reads each parameter once (milliseconds for the default model): it runs at save and load, never per turn.
"""

from __future__ import annotations

import hashlib

import numpy as np


class IntegrityError(ValueError):
    """An artefact's contents do not match the digest recorded when it was written (damaged or changed files)."""


def tree_digest(tree) -> str:
    """SHA-256 (hex) of a pytree of arrays: leaf paths, dtypes, shapes and bytes."""
    import jax  # here, not at import: worker processes import this module's users without needing JAX

    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(_host_value(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _host_value(leaf) -> np.ndarray:
    """The whole value of a leaf; an array split over several processes (FSDP in a distributed run) is gathered
    from all of them (a collective: every process computes the digest together, as it saves together)."""
    import jax

    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(leaf)


def all_finite(tree) -> bool:
    """Whether every floating leaf of ``tree`` is finite."""
    import jax

    return all(bool(np.isfinite(_host_value(leaf)).all()) for leaf in jax.tree.leaves(tree)
               if np.issubdtype(np.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype), np.floating))


def check_tree(tree, recorded: str | None, what: str) -> None:
    """Refuse ``tree`` if it is not finite, or if ``recorded`` (the digest written beside it; None for an artefact
    from before digests were recorded) differs from its digest now. ``what`` names the artefact in the message."""
    if recorded is not None and tree_digest(tree) != recorded:
        raise IntegrityError(f"{what}: the parameters do not match the digest recorded when they were saved: the "
                             "files were damaged or changed. Restore them from a copy, or retrain")
    if not all_finite(tree):
        raise IntegrityError(f"{what}: the parameters hold NaN or infinite values; restore them from a copy, or retrain")

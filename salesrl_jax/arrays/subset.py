"""Cached arrays for a subset of conversations (a cross-validation fold), written without re-embedding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from salesrl_jax.arrays.build import arrays_manifest
from salesrl_jax.arrays.store import MANIFEST, Part, TurnArrays, part_name
from salesrl_jax.io.atomic import remove_stale_temporaries, write_json_atomic


def write_subset(arrays: TurnArrays, keep: Callable[[Part], np.ndarray], out: str | os.PathLike[str]) -> TurnArrays:
    """Copy the conversations ``keep(part)`` selects (``[convs]`` bool) of every part to new arrays in ``out``.

    Resumable and a no-op when ``out`` is complete (its manifest appears last). The new arrays have the
    same embedder, dtype and features, and name their source in ``manifest["source"]``.
    """
    out = Path(out)
    if (out / MANIFEST).exists():
        return TurnArrays.open(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    part_convs: dict[int, int] = {}
    part_turns: dict[int, int] = {}
    for part in arrays.iter_parts():
        chosen = np.flatnonzero(np.asarray(keep(part), dtype=bool))
        if not len(chosen):
            continue
        selected = part.select(chosen)
        if not (out / part_name(len(part_convs))).is_dir():
            selected.save(out / part_name(len(part_convs)))
        part_turns[len(part_convs)] = selected.num_turns
        part_convs[len(part_convs)] = selected.num_conversations
    build = {"embedder": arrays.manifest["embedder"], "dtype": arrays.manifest["dtype"],
             **({"max_grams": arrays.max_grams} if arrays.sparse else {})}
    manifest = arrays_manifest(out, build, part_convs, part_turns, 0, {"subset_of": str(arrays.path)})
    write_json_atomic(out / MANIFEST, manifest)
    return TurnArrays.open(out)

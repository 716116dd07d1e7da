"""Paths that a command recorded as it was given (a manifest's source archive, a run's ``data.train``)."""

from __future__ import annotations

import os
from pathlib import Path


def recorded_path(path: str | os.PathLike[str], near: str | os.PathLike[str]) -> Path:
    """``path`` as another command recorded it: relative to that command's working directory, which is not known
    now. The path as given when it is absolute or exists from here; else the first folder above ``near`` (what
    recorded it: arrays, a run) it exists from (a crossval's fold arrays name their parent relative to where it ran,
    a folder above them; a run names its arrays relative to where `salesrl train` ran, often a folder above the run);
    else the path as given, for the caller's message."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for folder in Path(near).resolve().parents:
        if (folder / candidate).exists():
            return folder / candidate
    return candidate

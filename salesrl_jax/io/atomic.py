"""Atomic publication of files and directories: a reader sees the old state or the new one, never half.

Every output is written under a hidden temporary sibling name (``.NAME.tmp-PID``), made durable (fsync),
then renamed onto its final name: ``rename(2)`` within one directory is atomic on POSIX file systems.
A killed writer leaves only a temporary, which `remove_stale_temporaries` deletes on the next run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """The hidden name ``path`` is written under before it is published (one per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def publish(tmp: Path, path: Path) -> None:
    """Make ``tmp`` (a file, or a directory of files) durable, then rename it onto ``path``."""
    _fsync_tree(tmp)
    os.replace(tmp, path)


def discard(tmp: Path) -> None:
    """Remove an unpublished temporary, file or directory."""
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to (a file, or a directory the block creates);
    published on a clean exit, discarded if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    discard(tmp)  # left by an earlier process with our pid
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    publish(tmp, path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an undefined metric: the AUC of one class) as None, so the JSON
    written is valid JSON (``NaN`` is not) and reads back as ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps_json(value: Any, indent: int | None = None) -> str:
    """Valid JSON for any metrics record (`json_safe`); a non-finite float left anywhere is an error."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike[str], value: Any, *, indent: int | None = 1,
                      newline: bool = False) -> Path:
    return write_text_atomic(path, dumps_json(value, indent=indent) + ("\n" if newline else ""))


def remove_stale_temporaries(directory: str | os.PathLike[str], names: tuple[str, ...] | None = None) -> int:
    """Delete what killed writers left in ``directory`` (never visible under a final name), only the temporaries
    of files ``names`` if given (a directory other jobs also write to); returns the count."""
    if not Path(directory).is_dir():
        return 0
    patterns = [".*.tmp-*"] if names is None else [f".{name}.tmp-*" for name in names]
    stale = [path for pattern in patterns for path in Path(directory).glob(pattern)]
    for path in stale:
        discard(path)
    return len(stale)

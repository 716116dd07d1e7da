"""One run per output: a job claims its output with a lock file before it writes anything.

Two `salesrl score` runs on one output would interleave their parts and fail with raw ``OSError``s (or
worse, mix two models' rows); two `embed` or `train` runs on one directory the same. The claim is an OS
file lock (`filelock`), so a killed run releases it with its process: there is never a stale lock to
delete by hand. The lock file itself (``NAME.lock``) stays, empty, beside the output.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


class OutputBusyError(ValueError):
    """Another run holds the output this run would write."""


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The lock file of ``output``: ``DIR/.lock`` for a directory output, ``FILE.lock`` beside a file output."""
    output = Path(output)
    return output / ".lock" if output.is_dir() or not output.suffix else output.with_name(output.name + ".lock")


@contextlib.contextmanager
def claim_output(output: str | os.PathLike[str], *, wait: bool = False) -> Iterator[Path]:
    """Hold ``output`` for this process while the block runs. Another holder makes this raise
    `OutputBusyError` at once, or, with ``wait``, block until it finishes."""
    from filelock import FileLock, Timeout

    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(f"{output}: another salesrl run is writing this output (lock {path}); wait for it "
                              "to finish, pass --wait to queue behind it, or choose another output") from None
    try:
        yield path
    finally:
        lock.release()

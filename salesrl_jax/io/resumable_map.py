"""One resumable, chunked, parallel map: the skeleton of `salesrl generate`, `embed` and `score`.

    for index, chunk in enumerate(chunks):
        if is_done(index, chunk):  skip(index, chunk)            # finished by an earlier, killed run
        else:                      finish(work(context, index, chunk))

``work`` runs in worker processes (``spawn``: a parent that has imported JAX must not fork), each of
which builds its ``context`` once with ``setup(*setup_args)`` (an embedder, say); ``finish`` runs in
this process, in chunk order, while the workers already compute the next chunks. At most
``in_flight`` chunks are dispatched and not yet finished, so memory stays bounded whatever the input's
size. With one worker everything runs in this process (no pickling), with the same results.

Resumption is the caller's: ``work`` or ``finish`` publishes each chunk's output atomically
(`salesrl_jax.io.atomic`), and ``is_done`` recognises it. Because what a chunk produces depends only
on the chunk, the final output is the same whatever the worker count and however often the job was
killed and rerun.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from salesrl_jax.io.atomic import write_json_atomic

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")

_CONTEXT: dict[str, Any] = {}  # a worker process's context, built once by its pool initializer


def _init_worker(setup: Callable[..., Any] | None, setup_args: tuple) -> None:
    _exit_with_parent()
    _CONTEXT["context"] = setup(*setup_args) if setup is not None else None


def _exit_with_parent(period: float = 0.5) -> None:
    """A worker whose parent was killed (``kill -9``: no chance to terminate its pool) is re-parented; a daemon
    thread sees the parent change and ends the worker, so no orphan goes on embedding or holding files."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(work: Callable[..., Any], index: int, chunk: Any) -> Any:
    return work(_CONTEXT["context"], index, chunk)


@dataclasses.dataclass
class MapCounts:
    computed: int = 0  # chunks that ``work`` computed in this run
    skipped: int = 0  # chunks an earlier run had finished


def default_workers(workers: int | None) -> int:
    """``workers`` or, when None or 0, one per core."""
    return workers or os.cpu_count() or 1


def resumable_map(
    chunks: Iterable[Chunk],
    work: Callable[[Any, int, Chunk], Result],
    finish: Callable[[Result], None],
    *,
    is_done: Callable[[int, Chunk], bool] = lambda index, chunk: False,
    skip: Callable[[int, Chunk], None] = lambda index, chunk: None,
    setup: Callable[..., Any] | None = None,
    setup_args: tuple = (),
    workers: int | None = None,
    in_flight: int | None = None,
) -> MapCounts:
    """Map ``work`` over ``chunks`` (see the module docstring) and return how many were computed and skipped.

    Args:
      chunks: any iterable, consumed once, lazily (an archive reader's chunks, shard numbers).
      work: ``work(context, index, chunk) -> result``; a module-level function (workers import it by name).
      finish: called in this process with each result, in chunk order.
      is_done, skip: a chunk an earlier run finished is not dispatched; ``skip`` accounts for it.
      setup, setup_args: ``setup(*setup_args)`` builds each worker's context once.
      workers: processes; None or 0 for one per core; 1 runs in this process.
      in_flight: bound on dispatched, unfinished chunks (default two per worker).
    """
    workers = default_workers(workers)
    in_flight = in_flight or 2 * workers
    counts = MapCounts()
    pool = None
    context = None
    if workers == 1:
        context = setup(*setup_args) if setup is not None else None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (setup, setup_args))
    try:
        pending: collections.deque = collections.deque()
        for index, chunk in enumerate(chunks):
            if is_done(index, chunk):
                counts.skipped += 1
                skip(index, chunk)
                continue
            counts.computed += 1
            if pool is None:
                finish(work(context, index, chunk))
                continue
            pending.append(pool.apply_async(_run_in_worker, (work, index, chunk)))
            while len(pending) >= in_flight:
                finish(pending.popleft().get())
        while pending:
            finish(pending.popleft().get())
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if context is not None and hasattr(context, "close"):
            context.close()
    return counts


def chunked(items: Iterable[Chunk], size: int):
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_run_record(path: os.PathLike[str] | str, record: dict, what: str) -> None:
    """Refuse to resume a job whose arguments changed: ``record`` (the job's arguments) must equal the one an
    earlier run left at ``path``; the first run writes it (atomically) before any output."""
    path = Path(path)
    record = json.loads(json.dumps(record))  # as it reads back: tuples are lists
    if path.exists():
        previous = json.loads(path.read_text())
        changed = [key for key in sorted(set(record) | set(previous)) if previous.get(key) != record.get(key)]
        if changed:
            raise ValueError(f"{path.parent} holds {what} built with different {', '.join(changed)} "
                             f"({', '.join(f'{k}={previous.get(k)!r}' for k in changed)}); "
                             "use a new output directory or delete this one")
        return
    write_json_atomic(path, record)

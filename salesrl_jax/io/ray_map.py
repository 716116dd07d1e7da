"""Chunks of a job mapped over a pool of Ray actors: the Ray engine of `salesrl embed` and `salesrl score`.

The driver reads and validates the archive as the local engine does (the same chunks, the same rejects file) and
streams the chunks that are not done yet to a pool of Ray actors, each of which loads what it needs once (the
embedder; for scoring the model, int8 when quantized) and writes its chunk's outputs atomically under the chunk's
index, exactly as the local engine's workers do. The driver then finishes the job as the local engine does (the
manifest; the joined outputs), so the results are the same bytes.

Why actors fed by the driver and not a Ray Dataset built from the archive: ``ray.data.from_items`` needs every
chunk before the first is scored, and reading and validating 100k conversations takes the driver 17.5 s (plus
5 s of pickling), during which the actors idle: measured 1.25x the local engine's time. Streaming overlaps the
two. Reading the archive with Ray Data's own readers would skip our validation (bad records set aside with file,
record and field) and split conversations stored one turn per row across blocks.

Exactly once: a chunk's files are named by its index and replaced atomically, so a task that Ray retries after a
worker died (actors restart and tasks are retried: ``max_restarts`` and ``max_task_retries`` unlimited) rewrites
the same files, and a run started again after a failure skips the chunks whose files exist. The driver checks
that every pending chunk came back exactly once.

Scale: embedding and prediction run in the actors, on any node of the cluster; what stays on the driver is
reading and validating the archive (one pass, about 5.7k conversations/s here) and finishing; that pass bounds
the cluster's throughput at about 57k turns/s, five to six nodes like this one. Memory stays bounded: at most
two chunks per actor are in flight. The output directory must be on storage every node sees. Ray is an optional
extra (``pip install 'salesrl-jax[ray]'``), imported only when this engine runs.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

from salesrl_jax.io.resumable_map import MapCounts

# Fault injection for the tests: an actor that finds this variable set, and the file it names missing, creates
# the file and dies at once (os._exit) on its first chunk, as a killed worker would.
FAIL_ONCE_VARIABLE = "SALESRL_RAY_FAIL_ONCE"


def require_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'salesrl-jax[ray]'") from None
    return ray


def fail_once() -> None:
    marker = os.environ.get(FAIL_ONCE_VARIABLE)
    if marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def map_on_ray(jobs: Iterable[tuple], is_done: Callable[[int, tuple], bool], reused: Callable[[int, tuple], None],
               finished: Callable[[int, int, int, int], None], *, actor: type, actor_kwargs: dict,
               workers: int, address: str | None, in_flight_per_actor: int = 2) -> MapCounts:
    """Run the chunks of ``jobs`` that are not done through a pool of ``workers`` ``actor``s (see the module
    docstring); ``finished(index, turns, cache hits, cache misses)`` for each, in the order they finish.
    ``address``: a running cluster's (``auto``, or ``ray://host:10001``); None starts a local Ray of ``workers``
    CPUs, or uses the one this process already started. Each actor has ``in_flight_per_actor`` chunks queued, so
    it never waits for the driver, and the driver reads the archive while the actors work."""
    ray = require_ray()
    if not ray.is_initialized():
        with warnings.catch_warnings():
            # Ray starts its processes with fork + exec, which is safe with JAX's threads: JAX's warning about
            # os.fork does not apply.
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)
    class Host:  # what Ray restarts after a worker dies: the actor, built again from the same arguments
        def __init__(self):
            self.inner = actor(**actor_kwargs)

        def run(self, index: int, job: tuple) -> tuple:
            fail_once()
            return self.inner(index, job)  # (index, turns, cache stats)

    counts = MapCounts()
    pool = [Host.remote() for _ in range(max(workers, 1))]
    running: dict = {}  # result ref -> the actor running it
    load = {id(a): 0 for a in pool}
    submitted: list[int] = []
    seen: list[int] = []

    def collect(block: bool) -> None:
        done, _ = ray.wait(list(running), num_returns=1, timeout=None if block else 0)
        for ref in done:
            load[id(running.pop(ref))] -= 1
            index, turns, used = ray.get(ref)
            seen.append(index)
            counts.computed += 1
            finished(index, turns, used.hits, used.misses)

    try:
        for index, job in enumerate(jobs):
            if is_done(index, job):
                reused(index, job)
                counts.skipped += 1
                continue
            while min(load.values()) >= in_flight_per_actor:
                collect(block=True)
            host = min(pool, key=lambda a: load[id(a)])
            running[host.run.remote(index, job)] = host
            load[id(host)] += 1
            submitted.append(index)
            collect(block=False)
        while running:
            collect(block=True)
    finally:
        for host in pool:
            ray.kill(host)
    if sorted(seen) != sorted(submitted):
        missing, repeated = sorted(set(submitted) - set(seen)), sorted({i for i in seen if seen.count(i) > 1})
        raise RuntimeError(f"Ray returned {len(seen)} chunks for {len(submitted)} submitted (missing {missing[:10]}, "
                           f"repeated {repeated[:10]}); rerun the same command: finished chunks are kept")
    return counts

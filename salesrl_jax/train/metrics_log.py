"""The run's ``metrics.jsonl`` and throughput meters: small objects the training driver owns."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax

from salesrl_jax.io.atomic import dumps_json


class MetricsLog:
    """Append-only JSON lines, one per unit of work or validation, keyed by the position's ``seq``.

    On resume, the lines past the restored position (written after the checkpoint a kill went back
    to) are dropped first, so the log of a resumed run equals an uninterrupted run's.
    """

    def __init__(self, path: Path, keep_until: int | None, tensorboard: Path | None = None):
        self.path = path
        self.board = _board(tensorboard) if tensorboard is not None else None
        if keep_until is not None and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line and json.loads(line).get("seq", 0) <= keep_until]
            path.write_text("".join(line + "\n" for line in kept))
        elif keep_until is None:
            path.write_text("")
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(dumps_json(record) + "\n")
        self.handle.flush()
        if self.board is not None:
            # One scalar per numeric field (per-minibatch lists as their mean), grouped by event, at the record's
            # position.
            group = record.get("event") or "run"
            for key, value in record.items():
                if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
                    value = sum(value) / len(value)
                if key != "seq" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"{group}/{key}", value, global_step=int(record.get("seq", 0)))
            self.board.flush()

    def close(self) -> None:
        self.handle.close()
        if self.board is not None:
            self.board.close()


class NoLog:
    """What the processes other than process 0 of a distributed run log: nothing (process 0 writes the run's
    ``metrics.jsonl``)."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _board(directory: Path):
    """A TensorBoard event writer (tensorboardX, a well-kept writer that needs no TensorFlow)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError("tensorboard=true needs tensorboardX: pip install 'salesrl-jax[tensorboard]'") from None
    return SummaryWriter(str(directory))


class Meter:
    """Items per second of a jitted call, with the first call (compilation) timed apart."""

    def __init__(self):
        self.compile_seconds: float | None = None
        self.items = 0.0
        self.seconds = 0.0

    @staticmethod
    def timed(fn, *args):
        """``fn(*args) -> (state, metrics)``; returns them (metrics on the host) and the seconds taken."""
        start = time.perf_counter()
        new_state, metrics = jax.block_until_ready(fn(*args))
        seconds = time.perf_counter() - start
        return (new_state, jax.device_get(metrics)), seconds

    def add(self, items: float, seconds: float) -> None:
        if self.compile_seconds is None:
            self.compile_seconds = seconds
        else:
            self.items += items
            self.seconds += seconds

    @property
    def rate(self) -> float | None:
        return self.items / self.seconds if self.seconds else None

    def report(self, prefix: str, unit: str) -> dict[str, float]:
        """``{prefix}_compile_s`` and ``{prefix}_{unit}_per_s``, where measured."""
        out = {}
        if self.compile_seconds is not None:
            out[f"{prefix}_compile_s"] = self.compile_seconds
        if self.rate:
            out[f"{prefix}_{unit}_per_s"] = self.rate
        return out

"""Held-out test files for a nested protocol: an archive split into a development file and a test file.

The split is stratified by outcome and keyed by a hash of each conversation id salted apart from the
training run's own validation hash (`salesrl_jax.arrays.split`), so a development file split off here
still holds out an inner validation split with the default ``--data.split-seed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from salesrl_jax.data.readers import ArchiveReader, RejectSink
from salesrl_jax.data.validation import reading_limits
from salesrl_jax.data.writers import ArchiveWriter


def keyed_hashes(ids, salt: bytes) -> np.ndarray:
    """``[n]`` uint64: ``blake2b(salt + id)`` of each id, little-endian: a stable, seedable order of ids."""
    return np.array([int.from_bytes(hashlib.blake2b(salt + i.encode(), digest_size=8).digest(), "little")
                     for i in ids], dtype=np.uint64)


def hash_order_by_label(ids, labels, salt: bytes) -> list[np.ndarray]:
    """Per label (sorted; None last), the indices of its ids ordered by `keyed_hashes` with ``salt``: the
    stable, seedable order that every stratified split deals from."""
    keys = keyed_hashes(ids, salt)
    groups: dict = {}
    for index, label in enumerate(labels):
        groups.setdefault(None if label is None else int(label), []).append(index)
    return [np.array(sorted(groups[label], key=lambda i: int(keys[i])), dtype=np.int64)
            for label in sorted(groups, key=lambda label: (label is None, label))]


def stratified_test_ids(ids: list[str], labels: list[int | None], fraction: float, seed: int) -> set[str]:
    """The ids of a test set of ``fraction`` of each label's conversations (the unlabelled ones too), the first
    by ``keyed_hashes`` salted with ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the test fraction must be in (0, 1), got {fraction}")
    return {ids[i] for ordered in hash_order_by_label(ids, labels, f"test:{seed}".encode() + b"\0")
            for i in ordered[: math.ceil(fraction * len(ordered))]}


@dataclasses.dataclass
class SplitResult:
    development: Path
    test: Path
    counts: dict[str, dict[str, int]]  # file -> conversations, labelled, converted
    rejects: RejectSink

    def summary(self) -> str:
        lines = [f"{name:<12} {path}: {c['conversations']:,} conversations ({c['labelled']:,} labelled, "
                 f"{c['converted']:,} converted)" for name, path, c in
                 (("development", self.development, self.counts["development"]),
                  ("test", self.test, self.counts["test"]))]
        return "\n".join(lines + [self.rejects.summary()])


def split_archive(data: str | os.PathLike[str], out: str | os.PathLike[str], *, test_fraction: float = 0.2,
                  seed: int = 0, fmt: str = "jsonl", label_key: str | None = None,
                  speakers: Mapping[str, str] | Iterable[str] = ()) -> SplitResult:
    """Write ``out/development.<fmt>`` and ``out/test.<fmt>`` from archive ``data`` (two passes, streaming), read
    with ``label_key`` and ``speakers`` (`salesrl_jax.data.validation.reading_limits`); the files hold the roles."""
    out = Path(out)
    limits = reading_limits(label_key, speakers)
    first = [(conv.id, conv.outcome) for conv in ArchiveReader(data, limits=limits)]
    test_ids = stratified_test_ids([i for i, _ in first], [y for _, y in first], test_fraction, seed)
    paths = {"development": out / f"development.{fmt}", "test": out / f"test.{fmt}"}
    counts = {name: {"conversations": 0, "labelled": 0, "converted": 0} for name in paths}
    with RejectSink(out / "rejects.jsonl") as rejects, ArchiveWriter(paths["development"]) as dev, \
            ArchiveWriter(paths["test"]) as test:
        for conv in ArchiveReader(data, limits=limits, rejects=rejects):
            name = "test" if conv.id in test_ids else "development"
            (test if name == "test" else dev).write(conv)
            counts[name]["conversations"] += 1
            counts[name]["labelled"] += conv.outcome is not None
            counts[name]["converted"] += conv.outcome == 1
    return SplitResult(paths["development"], paths["test"], counts, rejects)

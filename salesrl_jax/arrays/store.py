"""The on-disk layout of cached turn arrays, and a memory-mapped reader for it.

A cache directory holds ``manifest.json`` and parts ``part-00000/``, ``part-00001/``, ... Each
part covers a run of consecutive conversations, with its turns concatenated (a flat layout:
no padding on disk):

==================  ==================  =====================================================
file                shape, dtype        meaning
==================  ==================  =====================================================
embeddings.npy      [turns, dim] f16/32 text embedding of each turn ([turns, 0] for sparse n-grams)
gram_ids.npy        [turns, k] int32    sparse n-gram arrays only: hashed gram buckets (0: padding)
gram_counts.npy     [turns, k] uint16   sparse n-gram arrays only: their counts in the turn
features.npy        [turns, F] f32      turn features (see ``manifest["features"]``)
is_customer.npy     [turns] int8        1 if the customer speaks, 0 for the rep
turn_index.npy      [turns] int16       0-based position of the turn in its conversation
oracle_prob.npy     [turns] f32         simulator's ground-truth P(sale | turns 1..t); NaN if unknown
offsets.npy         [convs + 1] int64   conversation c owns turns offsets[c]:offsets[c+1]
outcome.npy         [convs] int8        1 converted, 0 not, -1 unlabelled
industry.npy        [convs] int16       index into part.json's ``industries`` (-1: none)
part.json           -                   conversation ids and the industry vocabulary
==================  ==================  =====================================================

Sparse rows are stored as wide as the part's widest turn (``k <= manifest["max_grams"]``, the median turn
has about 20 grams), and batches pad them to ``max_grams`` columns, so every batch has one shape.

The manifest records each part's SHA-256 (`part_digest`, over its files' names and bytes); a
process checks a part against it the first time it opens that part, so damaged or edited arrays
are refused with the part's name rather than trained or scored on.

Parts are written to a temporary directory and renamed into place, so a part either exists
whole or not at all; that is what makes ``salesrl embed`` resumable after a kill. ``.npy`` is
numpy's own format, so every array opens with ``np.load(mmap_mode="r")`` and training reads a
cache of any size with bounded RAM.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salesrl_jax.embed.base import EmbedderIdentity
from salesrl_jax.embed.ngrams import is_sparse
from salesrl_jax.io.atomic import atomic_path

if TYPE_CHECKING:
    from salesrl_jax.data.validation import Limits

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TURN_ARRAYS = ("embeddings", "features", "is_customer", "turn_index", "oracle_prob")
GRAM_ARRAYS = ("gram_ids", "gram_counts")  # present only in arrays of the sparse n-gram representation
CONVERSATION_ARRAYS = ("offsets", "outcome", "industry")


# Parts whose digest this process has checked: a cache is opened many times (training, validation, calibration,
# evaluation), its bytes hashed once.
_VERIFIED_PARTS: set[tuple[str, str]] = set()


def part_name(index: int) -> str:
    return f"part-{index:05d}"


def part_digest(directory: Path) -> str:
    """SHA-256 (hex) over a part's file names and bytes, in name order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Part:
    """One part's arrays (memory-mapped when loaded with ``mmap=True``)."""

    embeddings: np.ndarray  # [turns, dim]
    features: np.ndarray  # [turns, F]
    is_customer: np.ndarray  # [turns]
    turn_index: np.ndarray  # [turns]
    oracle_prob: np.ndarray  # [turns]
    offsets: np.ndarray  # [convs + 1]
    outcome: np.ndarray  # [convs]
    industry: np.ndarray  # [convs]
    ids: tuple[str, ...]
    industries: tuple[str, ...]
    # In memory only (never saved): per-row scales when `embeddings` holds int8 rows quantized for
    # the int8 model (salesrl score --quantized), embedding = int8 * scale.
    embedding_scale: np.ndarray | None = None
    # Sparse n-gram rows (`salesrl_jax.embed.ngrams`), when the arrays hold that representation.
    gram_ids: np.ndarray | None = None  # [turns, k] int32
    gram_counts: np.ndarray | None = None  # [turns, k] uint16
    # In memory only: the gram columns batches pad to (the arrays' max_grams); None: the part's own width.
    max_grams: int | None = None

    @property
    def sparse(self) -> bool:
        return self.gram_ids is not None

    def _turn_arrays(self) -> tuple[str, ...]:
        return TURN_ARRAYS + (GRAM_ARRAYS if self.sparse else ())

    @property
    def num_conversations(self) -> int:
        return len(self.outcome)

    @property
    def num_turns(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def industry_names(self) -> list[str | None]:
        return [self.industries[i] if i >= 0 else None for i in self.industry]

    def select(self, conversations: np.ndarray) -> "Part":
        """A new in-memory part holding only ``conversations`` (indices, in the order given)."""
        conversations = np.asarray(conversations, dtype=np.int64)
        offsets = np.asarray(self.offsets)
        rows = (np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in conversations])
                if len(conversations) else np.zeros(0, np.int64))
        lengths = offsets[conversations + 1] - offsets[conversations]
        turn = {name: np.asarray(getattr(self, name))[rows] for name in self._turn_arrays()}
        return Part(**turn, offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    outcome=np.asarray(self.outcome)[conversations], industry=np.asarray(self.industry)[conversations],
                    ids=tuple(self.ids[c] for c in conversations), industries=self.industries,
                    embedding_scale=None if self.embedding_scale is None else np.asarray(self.embedding_scale)[rows],
                    max_grams=self.max_grams)

    def save(self, directory: Path) -> None:
        """Write the part atomically: it appears whole under ``directory``, or not at all."""
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            for name in self._turn_arrays() + CONVERSATION_ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(self, name))
            (tmp / "part.json").write_text(json.dumps({"ids": list(self.ids), "industries": list(self.industries)}))

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "Part":
        """Open a part; a missing, truncated or inconsistent file is a `ValueError` naming it."""
        mode = "r" if mmap else None
        arrays = {}
        optional = GRAM_ARRAYS if (directory / "gram_ids.npy").exists() else ()
        for name in TURN_ARRAYS + optional + CONVERSATION_ARRAYS:
            path = directory / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode=mode)
            except (OSError, ValueError, EOFError) as err:
                raise ValueError(f"{path}: cannot be read ({err}); the cached arrays are damaged: delete "
                                 f"{directory.parent} and rerun `salesrl embed`") from None
        try:
            meta = json.loads((directory / "part.json").read_text())
            ids, industries = tuple(meta["ids"]), tuple(meta["industries"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{directory / 'part.json'}: cannot be read ({type(err).__name__}); the cached arrays "
                             f"are damaged: delete {directory.parent} and rerun `salesrl embed`") from None
        part = cls(**arrays, ids=ids, industries=industries)
        part.check(directory)
        return part

    def check(self, where: Path | str) -> None:
        """The arrays agree with one another (rows, conversations, ids); else a `ValueError` naming ``where``."""
        offsets = np.asarray(self.offsets)
        turns = int(offsets[-1]) if len(offsets) else -1
        problems = [f"{name} has {len(getattr(self, name))} rows, offsets say {turns}"
                    for name in self._turn_arrays() if len(getattr(self, name)) != turns]
        if self.sparse and np.shape(self.gram_ids) != np.shape(self.gram_counts):
            problems.append(f"gram_ids are {np.shape(self.gram_ids)} but gram_counts {np.shape(self.gram_counts)}")
        problems += [f"{name} has {len(getattr(self, name))} entries for {len(offsets) - 1} conversations"
                     for name in ("outcome", "industry") if len(getattr(self, name)) != len(offsets) - 1]
        if len(self.ids) != len(offsets) - 1:
            problems.append(f"part.json lists {len(self.ids)} ids for {len(offsets) - 1} conversations")
        if problems:
            raise ValueError(f"{where}: inconsistent cached arrays ({'; '.join(problems)}); delete them and rerun "
                             "`salesrl embed`")


class TurnArrays:
    """A complete cache directory: its manifest and its parts, opened lazily and memory-mapped.

    >>> arrays = TurnArrays.open("runs/demo/arrays")
    >>> for part in arrays.iter_parts():   # bounded RAM: one part's pages at a time
    ...     part.embeddings[part.offsets[0]:part.offsets[1]]   # the first conversation's turns
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.identity = EmbedderIdentity(**manifest["embedder"])
        self.feature_names: tuple[str, ...] = tuple(manifest["features"]["names"])
        self.part_names: list[str] = [p["name"] for p in manifest["parts"]]
        self.part_sizes: list[int] = [p["conversations"] for p in manifest["parts"]]
        self.part_digests: list[str | None] = [p.get("sha256") for p in manifest["parts"]]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "TurnArrays":
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            if path.is_dir() and any(path.glob("part-*")):
                raise ValueError(f"{path}: cached arrays are incomplete (no {MANIFEST}); "
                                 "rerun the same `salesrl embed` command to finish them")
            raise FileNotFoundError(f"{path}: no cached arrays here (expected {MANIFEST}; make them with `salesrl embed`)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as err:
            raise ValueError(f"{manifest_path}: not valid JSON ({err}); the cached arrays are damaged: delete {path} "
                             "and rerun `salesrl embed`") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            manifest = manifest if isinstance(manifest, dict) else {}
            raise ValueError(f"{manifest_path}: format version {manifest.get('format_version')}, "
                             f"this library reads {FORMAT_VERSION}; re-embed with `salesrl embed`")
        try:
            return cls(path, manifest)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{manifest_path}: incomplete manifest (missing or malformed {err}); the cached arrays "
                             f"are damaged: delete {path} and rerun `salesrl embed`") from None

    @property
    def num_conversations(self) -> int:
        return int(self.manifest["counts"]["conversations"])

    @property
    def num_turns(self) -> int:
        return int(self.manifest["counts"]["turns"])

    @property
    def dim(self) -> int:
        """The embedding width (for sparse n-gram arrays: the number of hash buckets)."""
        return self.identity.dim

    @property
    def sparse(self) -> bool:
        """Whether the turns' text is held as sparse n-gram rows (`salesrl_jax.embed.ngrams`)."""
        return is_sparse(self.identity)

    @property
    def max_grams(self) -> int:
        """Columns of the sparse rows (sparse arrays only)."""
        return int(self.manifest["max_grams"])

    def __len__(self) -> int:
        return len(self.part_names)

    def reading(self) -> Limits:
        """How the archive was read when these arrays were built: its ``--label-key`` and ``--speaker`` names, from
        the build's record (`salesrl_jax.arrays.build`; the defaults where it has none). Whatever reads that archive
        again beside the arrays (a study's text baselines) reads it so too, and finds the same conversations."""
        from salesrl_jax.data.validation import Limits, reading_limits

        try:
            build = json.loads((self.path / "build.json").read_text())
            return reading_limits(build.get("label_key"), build.get("speakers") or {})
        except (OSError, ValueError, AttributeError, TypeError):
            return Limits()

    def labels_note(self) -> str:
        """Where the labels went, for an error about too few of them: the counts the build recorded, the most common
        reason its records were set aside (``rejects.jsonl`` beside the parts), and which fields hold an outcome."""
        from salesrl_jax.data.readers import reason_kind
        from salesrl_jax.data.validation import OUTCOME_KEYS

        counts = self.manifest["counts"]
        read, labelled, rejected = counts["conversations"], counts["labelled"], counts.get("rejected", 0)
        note = f"{read:,} conversations read, {labelled:,} with an outcome"
        if rejected:
            kinds: collections.Counter[tuple] = collections.Counter()  # (field, reason kind), as RejectSink counts
            example: dict[tuple, str] = {}  # each kind's first reason in full
            rejects = self.path / "rejects.jsonl"
            try:
                with open(rejects, encoding="utf-8") as handle:
                    for line, _ in zip(handle, range(10_000)):
                        try:
                            problem = json.loads(line)
                            kind = (problem.get("field"), reason_kind(problem.get("reason") or ""))
                        except (ValueError, AttributeError):
                            continue
                        kinds[kind] += 1
                        example.setdefault(kind, f"field {problem.get('field')!r}: {problem.get('reason')}")
            except OSError:
                pass
            note += f", {rejected:,} records set aside (reasons in {rejects}"
            note += f"; the most common, {example[kinds.most_common(1)[0][0]]})" if kinds else ")"
        if labelled < read:
            label_key = self.reading().label_key
            note += (f"; the outcome is read from {label_key!r}" if label_key else
                     f"; the outcome is read from the first of {', '.join(OUTCOME_KEYS)}") + \
                " (0/1, true/false or yes/no; name another field with --label-key, dotted into objects)"
        return note

    def part(self, index: int, mmap: bool = True) -> Part:
        """Part ``index``, checked against the manifest (its digest, the first time this process opens it; embedding
        width, features, conversation count, every time)."""
        directory = self.path / self.part_names[index]
        expected = self.part_digests[index]
        key = (str(directory.resolve()), expected)
        if expected is not None and key not in _VERIFIED_PARTS:
            if not directory.is_dir() or part_digest(directory) != expected:
                raise ValueError(f"{directory}: its files do not match the digest in {self.path / MANIFEST} (damaged "
                                 f"or changed since `salesrl embed` wrote them); delete {self.path} and rerun "
                                 "`salesrl embed`")
            _VERIFIED_PARTS.add(key)
        part = Part.load(directory, mmap=mmap)
        problems = []
        if self.sparse:
            if not part.sparse or part.gram_ids.ndim != 2 or part.gram_ids.shape[1] > self.max_grams:
                shape = part.gram_ids.shape if part.sparse else "missing"
                problems.append(f"gram_ids are {shape}, the manifest says at most {self.max_grams} per turn")
            part = dataclasses.replace(part, max_grams=self.max_grams)
        elif part.embeddings.ndim != 2 or part.embeddings.shape[1] != self.dim:
            problems.append(f"embeddings are {part.embeddings.shape}, the manifest says {self.dim} wide")
        if part.features.ndim != 2 or part.features.shape[1] != len(self.feature_names):
            problems.append(f"features are {part.features.shape}, the manifest names {len(self.feature_names)}")
        if part.num_conversations != self.part_sizes[index]:
            problems.append(f"{part.num_conversations} conversations, the manifest says {self.part_sizes[index]}")
        if problems:
            raise ValueError(f"{directory}: does not match {self.path / MANIFEST} ({'; '.join(problems)}); delete "
                             f"{self.path} and rerun `salesrl embed`")
        return part

    def iter_parts(self, order: list[int] | None = None, mmap: bool = True):
        for index in (range(len(self)) if order is None else order):
            yield self.part(index, mmap=mmap)

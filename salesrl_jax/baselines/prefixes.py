"""What a baseline sees after turn t: one row per (labelled conversation, t), built from turns 1..t only."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Collection, Iterable

import numpy as np

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.data.records import Conversation

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


@dataclasses.dataclass
class PrefixTable:
    """Rows are prefixes, conversation by conversation, turn by turn (the cached arrays' order)."""

    ids: list[str]  # per conversation
    texts: list[list[str]]  # per conversation: the turns' texts
    speakers: list[list[str]]  # per conversation: "customer" / "rep"
    conversation: np.ndarray  # [rows] index into ids
    turn_index: np.ndarray  # [rows] t - 1
    length: np.ndarray  # [rows] the conversation's number of turns (for reports only: no baseline reads it)
    outcome: np.ndarray  # [rows]
    embedding_means: np.ndarray  # [rows, 3 D]: means over turns 1..t of all, customer and rep turns (0 if none)
    feature_summary: np.ndarray  # [rows, 2 F]: mean over turns 1..t of the turn features, and turn t's own
    prefixes: int = 0  # the conversations' prefixes before `build_prefixes`'s ``max_rows`` kept a subset (0: unknown)

    def rows_of(self, conversations: np.ndarray) -> np.ndarray:
        """The rows of the given conversation indices (a boolean mask)."""
        return np.isin(self.conversation, conversations)

    def prefix_texts(self, rows: np.ndarray, tagged: bool) -> list[str]:
        """The text of turns 1..t for each row; ``tagged`` prefixes every word with its speaker, so that the
        same word from the customer and from the rep are different features."""
        out = []
        for row in np.flatnonzero(rows) if rows.dtype == bool else rows:
            c, t = int(self.conversation[row]), int(self.turn_index[row])
            out.append(join_turns(self.texts[c][: t + 1], self.speakers[c][: t + 1], tagged))
        return out

    def whole_texts(self, conversations: Iterable[int], tagged: bool) -> list[str]:
        return [join_turns(self.texts[c], self.speakers[c], tagged) for c in conversations]


def join_turns(texts: list[str], speakers: list[str], tagged: bool) -> str:
    if not tagged:
        return " ".join(texts)
    return " ".join(w for text, s in zip(texts, speakers) for w in turn_tokens(text, s, tagged=True))


def turn_tokens(text: str, speaker: str, tagged: bool) -> list[str]:
    """A turn's tokens as a TF-IDF vectorizer reads them in `join_turns`'s text: lower-cased words of two or more
    word characters (scikit-learn's default pattern); ``tagged`` prefixes each with the speaker's initial."""
    words = _TOKEN.findall(text.lower())
    return [f"{speaker[0]}_{w}" for w in words] if tagged else words


def build_prefixes(conversations: Iterable[Conversation], arrays: TurnArrays,
                   source: str | os.PathLike[str] = "the archive", *, max_rows: int | None = None,
                   seed: int = 0, only: Collection[str] | None = None) -> PrefixTable:
    """Every labelled conversation of ``arrays`` (of those whose ids are in ``only``, when given), with its text
    from ``conversations`` (the archive the arrays were embedded from); a conversation missing from it, or with
    another turn count, is an error naming it.

    ``max_rows`` bounds the table's memory (its dense columns are ``rows x 3 D`` floats: 5.5 GB for the 900k
    prefixes of 100k synthetic conversations at D = 512): past it, each conversation keeps a random subset of
    its prefixes, at least one, about ``max_rows`` in all (the same subset for the same ``seed``). Every
    conversation stays in the table, whole: the whole-dialogue baselines still read all of them, and the
    prefix-fitted ones still see every conversation's words and outcome (a subset of the conversations would
    drop some)."""
    def kept_conversations(part) -> np.ndarray:
        keep = np.asarray(part.outcome) >= 0
        if only is not None:
            keep &= np.array([conv_id in only for conv_id in part.ids], bool)
        return keep

    rng = np.random.default_rng(seed)
    total = sum(int(np.asarray(part.lengths)[kept_conversations(part)].sum()) for part in arrays.iter_parts())
    share = 1.0 if max_rows is None or total <= max_rows else max_rows / total
    texts = {conv.id: conv for conv in conversations}
    ids, turn_texts, speakers = [], [], []
    columns: dict[str, list] = {k: [] for k in ("conversation", "turn_index", "length", "outcome", "means", "feat")}
    for part in arrays.iter_parts():
        offsets, keep = np.asarray(part.offsets), kept_conversations(part)
        for c, conv_id in enumerate(part.ids):
            if not keep[c]:
                continue
            start, end = int(offsets[c]), int(offsets[c + 1])
            conv = texts.get(conv_id)
            if conv is None or conv.num_turns != end - start:
                raise ValueError(f"{source}: conversation {conv_id!r} of {arrays.path} is "
                                 + ("missing" if conv is None else f"{conv.num_turns} turns long, not {end - start}"))
            n = end - start
            kept = np.arange(n)
            if share < 1.0:  # stochastic rounding keeps about share * n of them; at least one
                kept = np.sort(rng.choice(n, size=max(1, min(n, int(share * n + rng.random()))), replace=False))
            embeddings = np.asarray(part.embeddings[start:end], np.float32)
            customer = np.asarray(part.is_customer[start:end], bool)[:, None]
            count = np.arange(1, n + 1)[:, None]
            sums = [np.cumsum(embeddings, 0), np.cumsum(embeddings * customer, 0), np.cumsum(embeddings * ~customer, 0)]
            counts = [count, np.cumsum(customer, 0), np.cumsum(~customer, 0)]
            features = np.asarray(part.features[start:end], np.float32)
            index = len(ids)
            ids.append(conv_id)
            turn_texts.append([t.text for t in conv.turns])
            speakers.append([t.speaker for t in conv.turns])
            columns["conversation"].append(np.full(len(kept), index))
            columns["turn_index"].append(kept)
            columns["length"].append(np.full(len(kept), n))
            columns["outcome"].append(np.full(len(kept), int(part.outcome[c])))
            columns["means"].append(np.concatenate([s[kept] / np.maximum(k[kept], 1) for s, k in zip(sums, counts)],
                                                   axis=1).astype(np.float32))
            columns["feat"].append(np.concatenate([np.cumsum(features, 0)[kept] / count[kept], features[kept]],
                                                  axis=1).astype(np.float32))
    if not ids:
        raise ValueError(f"{arrays.path}: no labelled conversations ({arrays.labels_note()})")
    cat = {k: np.concatenate(v) for k, v in columns.items()}
    return PrefixTable(ids, turn_texts, speakers, cat["conversation"].astype(np.int32),
                       cat["turn_index"].astype(np.int32), cat["length"].astype(np.int32),
                       cat["outcome"].astype(np.int8), cat["means"], cat["feat"], total)  # both float32 already


def concat_tables(first: PrefixTable, second: PrefixTable) -> PrefixTable:
    """One table of ``first``'s conversations then ``second``'s (``second``'s indices shifted), so that baselines
    fit on one (a training archive) and predict the other (a test archive)."""
    shift = len(first.ids)
    return PrefixTable(first.ids + second.ids, first.texts + second.texts, first.speakers + second.speakers,
                       np.concatenate([first.conversation, second.conversation + shift]).astype(np.int32),
                       *(np.concatenate([getattr(first, k), getattr(second, k)])
                         for k in ("turn_index", "length", "outcome", "embedding_means", "feature_summary")))

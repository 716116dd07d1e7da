"""TF-IDF of every prefix of a conversation, from each turn's gram counts and their running sums.

The TF-IDF baselines read the text of turns 1..t after every turn t. Joining and tokenizing each prefix anew costs
the sum of the prefixes' lengths, ``sum_c n_c (n_c + 1) / 2`` turns, which is quadratic in a conversation's length:
on 3,000 calls of about 100 turns, over four minutes of tokenizing per variant and fold. Here each turn is tokenized
once (``C``: its counts of the vocabulary's grams), and the counts of prefix ``t`` are the running sum
``sum_{i <= t} C_i``: per conversation, a cumulative sum over the dense columns of the grams it holds. Then, as
scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``:

    tf(g) = 1 + log count(g),   x(g) = tf(g) idf(g),   x <- x / ||x||_2

The result equals ``vectorizer.transform(prefix_texts)`` (tested to float rounding), including the bigram that
spans two turns of the joined text: the last word of one turn (with words) and the first of the next are counted
with the later turn, where the prefix first holds both.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from salesrl_jax.baselines.prefixes import PrefixTable, turn_tokens


class PrefixTfidf:
    """The prefix rows of a `PrefixTable` as a fitted ``TfidfVectorizer`` (word 1-2-grams) would transform them.

    Args:
      table: the conversations.
      vocabulary: gram -> column (``vectorizer.vocabulary_``).
      idf: [V] the vectorizer's ``idf_``.
      tagged: whether words carry their speaker (as the vectorizer was fitted).
    """

    def __init__(self, table: PrefixTable, vocabulary: dict[str, int], idf: np.ndarray, tagged: bool):
        self.table = table
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, np.float64)
        self.tagged = tagged
        self._counts: dict[int, sp.csr_matrix] = {}  # conversation -> [turns, V] gram counts, computed once

    def turn_counts(self, conversation: int) -> sp.csr_matrix:
        """[n, V]: the grams each turn of ``conversation`` adds to the joined text (those in the vocabulary)."""
        if conversation not in self._counts:
            vocabulary = self.vocabulary
            rows, cols = [], []
            last = None  # the last token of the latest turn with tokens: its bigram with the next turn's first
            texts, speakers = self.table.texts[conversation], self.table.speakers[conversation]
            for i, (text, speaker) in enumerate(zip(texts, speakers)):
                tokens = turn_tokens(text, speaker, self.tagged)
                grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
                if tokens and last is not None:
                    grams.append(f"{last} {tokens[0]}")
                if tokens:
                    last = tokens[-1]
                ids = [vocabulary[g] for g in grams if g in vocabulary]
                rows += [i] * len(ids)
                cols += ids
            data = np.ones(len(rows), np.float64)
            counts = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(self.idf)))
            counts.sum_duplicates()
            self._counts[conversation] = counts
        return self._counts[conversation]

    def transform(self, rows: np.ndarray, extra: np.ndarray | None = None) -> sp.csr_matrix:
        """[len(rows), V (+ 1)]: the TF-IDF vector of each prefix row of the table (indices into its rows), with
        ``extra`` ([len(rows)], e.g. the turn index feature) as a last column if given (no copy to append it)."""
        rows = np.asarray(rows)
        conversations = self.table.conversation[rows]
        turns = self.table.turn_index[rows]
        order = np.argsort(conversations, kind="stable")  # rows grouped by conversation; put back at the end
        width = len(self.idf) + (extra is not None)
        data, indices, nnz = [], [], []
        bounds = np.flatnonzero(np.diff(conversations[order])) + 1
        for group in np.split(order, bounds) if len(order) else []:
            counts = self.turn_counts(int(conversations[group[0]]))
            # The conversation's grams as dense columns: running sums over its turns are a cumsum, and a prefix's
            # vector is one row of it (a sparse product with each prefix's turns took about 1.6 times as long).
            columns, position = np.unique(counts.indices, return_inverse=True)
            dense = np.zeros((counts.shape[0], len(columns)))
            dense[np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr)), position] = counts.data
            prefix = np.cumsum(dense, axis=0)
            if len(group) < len(prefix) or not np.array_equal(turns[group], np.arange(len(prefix))):
                prefix = prefix[turns[group]]
            flat = np.flatnonzero(prefix)  # row-major: each row's columns ascending, as CSR wants
            values = prefix.ravel()[flat]
            row_of, column_of = np.divmod(flat, prefix.shape[1])
            np.log(values, out=values)
            values += 1.0
            values *= self.idf[columns][column_of]
            norms = np.sqrt(np.bincount(row_of, weights=values * values, minlength=len(group)))
            values /= norms[row_of]  # a row with any entry has a positive norm
            cols = columns[column_of].astype(np.int32)
            per_row = np.bincount(row_of, minlength=len(group))
            if extra is not None:
                ends = np.cumsum(per_row)
                values = np.insert(values, ends, extra[group])
                cols = np.insert(cols, ends, width - 1)
                per_row = per_row + 1
            data.append(values)
            indices.append(cols)
            nnz.append(per_row)
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(nnz))]) if nnz else np.zeros(1, np.int64)
        # One index dtype for both, so that scipy takes the arrays as they are instead of converting them.
        index = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
        grouped = sp.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                                 np.concatenate(indices).astype(index, copy=False) if indices else np.zeros(0, index),
                                 indptr.astype(index)), shape=(len(rows), width), copy=False)
        if np.array_equal(order, np.arange(len(rows))):
            return grouped
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return grouped[back]

    def transform_chunks(self, rows: np.ndarray, extra: np.ndarray | None = None, chunk: int = 20_000):
        """`transform` of ``rows`` in chunks (bounded memory), as ``(chunk rows, matrix)`` pairs."""
        rows = np.asarray(rows)
        for begin in range(0, len(rows), chunk):
            part = slice(begin, begin + chunk)
            yield rows[part], self.transform(rows[part], None if extra is None else extra[part])

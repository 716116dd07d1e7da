"""The n-gram bag's starting basis from the training split's own words: latent semantic analysis (LSA).

Stack the training split's turns as the rows of ``X [turns, buckets]``, each row the turn's row-normalised sublinear
tf-idf vector (what the bag reads, `salesrl_jax.models.bag.tfidf_weights`; grams hashed into one bucket add up).
Its truncated singular value decomposition

    X ~ U_H S_H V_H^T,     V_H [buckets, H] with orthonormal columns, S_H = diag(s_1 >= ... >= s_H)

gives the ``H = bag_dim`` directions of the bucket space along which the training turns vary most. With the bag's
kernel ``E = V_H`` the bag's turn vector ``v = E^T x_hat + bias`` starts as the turn's coordinates on them (its LSA
embedding), found from the words alone, without a label (`ModelConfig.bag_basis`).

Each column's sign is fixed so that its largest entry is positive, and the solver starts from a seeded vector, so
the basis is a function of the training split alone. Buckets the training split never shows get zero rows; when the
split has fewer distinct buckets or turns than ``H``, the columns past its rank stay zero.

Why (docs/benchmarks.md, session 36): at the small-data regime's step of 1e-4 the bag's 2^18 x 16 kernel moves
little from where it starts, so a random start leaves the deep path reading a nearly random projection of the words,
and training all of it costs most of an optimizer step. Started here and kept here (``bag_trainable`` off),
pretraining runs 3.3x faster; held-out AUC is level on CaSiNo and 0.010-0.012 lower at turns 2-3 of
PersuasionForGood (within 0.003 from turn 4 on), so the default stays a random, trained kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.bag import tfidf_weights
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.train.wide_fit import turn_rows


class BagBasis(NamedTuple):
    kernel: np.ndarray  # [buckets, H] float32: V_H, zero rows for buckets the training split does not show
    singular_values: np.ndarray  # [H] float32, descending (0 past the split's rank)
    turns: int  # the training turns it was computed from


def tfidf_matrix(ids: np.ndarray, counts: np.ndarray, idf: np.ndarray, buckets: int) -> sp.csr_matrix:
    """``X [turns, buckets]``: each turn's row-normalised sublinear tf-idf vector, from its ``[turns, K]`` gram bucket
    ids and counts (0: padding), weighted as the bag weighs them (`salesrl_jax.models.bag.tfidf_weights`), the slots
    of one bucket summed; a turn with no weighted gram is a zero row."""
    ids = np.asarray(ids)
    weights = np.asarray(tfidf_weights(GramBags(jnp.asarray(ids), jnp.asarray(counts)), jnp.asarray(idf)))
    n, k = ids.shape
    matrix = sp.csr_matrix((weights.ravel().astype(np.float64), ids.ravel().astype(np.int64),
                            np.arange(0, n * k + 1, k)), shape=(n, buckets))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def truncated_svd(matrix: sp.csr_matrix, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(V [columns, width], s [width])``: the top ``width`` right singular vectors of ``matrix`` and their singular
    values, descending, each column's largest-magnitude entry positive; zero columns past the matrix's rank."""
    rows, columns = matrix.shape
    rank = min(rows, columns)
    if rank <= width + 1:  # ARPACK needs k < min(shape): a matrix this small is cheap to decompose densely
        _, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
    else:
        start = np.random.default_rng(seed).standard_normal(rank)
        _, s, vt = svds(matrix, k=width, v0=start / np.linalg.norm(start))
    order = np.argsort(-s)[:width]
    s, v = s[order], vt[order].T
    v = v * np.where(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])] < 0, -1.0, 1.0)
    keep = s > s.max(initial=0.0) * 1e-6  # numerically zero directions are not a basis
    v, s = np.where(keep, v, 0.0), np.where(keep, s, 0.0)
    pad = width - v.shape[1]
    return np.pad(v, ((0, 0), (0, pad))), np.pad(s, (0, pad))


def lsa_basis(arrays: TurnArrays, idf: np.ndarray, valid_fraction: float, split_seed: int, width: int
              ) -> BagBasis | None:
    """The bag's LSA basis (module docstring) of sparse ``arrays``' training split, weighted by ``idf`` (the bag's,
    fitted on the same split); None when the split holds no labelled turn. Reads at most
    `salesrl_jax.train.wide_fit.MAX_FIT_CONVERSATIONS` conversations, as the wide term's fit does."""
    rows = turn_rows(arrays, "train", valid_fraction, split_seed)
    if rows is None:
        return None
    matrix = tfidf_matrix(rows.ids, rows.counts, idf, arrays.dim)
    seen = np.unique(matrix.indices)  # decompose the buckets the split shows, not all 2^18
    kernel = np.zeros((arrays.dim, width), np.float32)
    if not len(seen):
        return BagBasis(kernel, np.zeros(width, np.float32), len(rows.ids))
    v, s = truncated_svd(matrix[:, seen], width)
    kernel[seen] = v
    return BagBasis(kernel, s.astype(np.float32), len(rows.ids))

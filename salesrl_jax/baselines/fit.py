"""Fit every baseline on training conversations and predict every prefix of the held-out ones.

* ``tfidf`` family: TF-IDF of turns 1..t (word 1-2-grams, sublinear tf; vocabulary and idf from the
  training conversations only) plus the turn index ``log1p(t)``, which a live system knows at turn t;
  a logistic regression with its L2 strength chosen by inner cross-validation grouped by conversation
  on the training conversations (log loss). Four variants: words tagged by speaker or not, fitted on
  every prefix of the training conversations (``prefix``; past ``max_prefix_rows`` prefixes, a random subset of
  each conversation's) or on their whole dialogues (``whole``). Prefix vectors come from each turn's gram counts
  and their running sums (`salesrl_jax.baselines.prefix_tfidf`), so long calls cost their turns, not the sum of
  their prefixes' lengths; held-out prefixes are transformed and predicted in chunks.
* ``embedding_lr``: the same regression on the mean turn embeddings of turns 1..t (all, customer, rep):
  the model's own input representation.
* ``features_gbm``: scikit-learn's histogram gradient-boosted trees on the turn features (their mean over
  turns 1..t and turn t's own) and ``log1p(t)``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from salesrl_jax.baselines.prefixes import PrefixTable

C_GRID = np.logspace(-4, 2, 7)  # inverse L2 strengths the inner cross-validation picks from (TF-IDF)
DENSE_C_GRID = np.logspace(-6, -1, 6)  # ... for the standardised embedding means (hundreds of correlated columns)
TFIDF_VARIANTS = tuple((f"tfidf_{'tagged' if tagged else 'plain'}_{fit}", tagged, fit)
                       for tagged in (False, True) for fit in ("prefix", "whole"))
TFIDF_METHODS = tuple(name for name, _, _ in TFIDF_VARIANTS)  # the family crossval's reference is the strongest of
METHODS = TFIDF_METHODS + ("embedding_lr", "features_gbm")


# The prefix-fitted variants' training rows: their sparse matrix grows with each prefix's words. At 100,000
# prefixes of 100-turn calls a fold's baselines peak at 4.5 GB (245,000 prefixes: 10 GB); docs/benchmarks.md.
MAX_PREFIX_ROWS = 100_000


@dataclasses.dataclass
class BaselinePredictions:
    rows: np.ndarray  # [n] the held-out rows of the prefix table, in order
    probs: dict[str, np.ndarray]  # method -> [n]
    chosen_c: dict[str, float]  # the L2 strength each logistic regression chose
    prefix_rows: int = 0  # the training prefixes the prefix-fitted variants read
    of: int = 0  # ... of this many


def subsample_prefixes(table: PrefixTable, rows: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """``rows`` (prefix rows in the table's order: conversation by conversation) if at most ``max_rows``; else about
    ``max_rows`` of them: each conversation keeps a random subset of its prefixes, ``share * n`` rounded
    stochastically and at least one, so that every conversation's words and outcome stay in the fit (as
    `build_prefixes`'s ``max_rows``)."""
    rows = np.asarray(rows)
    if max_rows is None or len(rows) <= max_rows:
        return rows
    rng = np.random.default_rng(seed)
    share = max_rows / len(rows)
    conversations, first, counts = np.unique(table.conversation[rows], return_index=True, return_counts=True)
    keep = np.maximum(1, np.minimum(counts, (share * counts + rng.random(len(counts))).astype(np.int64)))
    # A random rank within each conversation; the rows ranked below its quota are kept.
    position = np.arange(len(rows)) - np.repeat(first, counts)
    order = np.lexsort((rng.random(len(rows)), np.repeat(np.arange(len(counts)), counts)))
    rank = np.empty(len(rows), np.int64)
    rank[order] = position
    return np.sort(rows[rank < np.repeat(keep, counts)])


def _turn_column(table: PrefixTable, rows: np.ndarray) -> np.ndarray:
    return np.log1p(table.turn_index[rows].astype(np.float64) + 1)[:, None]


def _logistic_cv(features, labels, groups, folds: int, seed: int, grid: np.ndarray = C_GRID):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold

    folds = max(2, min(folds, len(np.unique(groups))))
    splits = list(GroupKFold(folds).split(np.zeros(len(labels)), groups=groups))
    # The inner folds' regularisation paths fit in parallel (scikit-learn's processes): the same fits, and the
    # crossval's baselines 1.48x faster on 2 cores (docs/benchmarks.md, session 37).
    model = LogisticRegressionCV(Cs=grid, cv=splits, scoring="neg_log_loss", max_iter=3000, tol=1e-3,
                                 random_state=seed, n_jobs=min(folds, os.cpu_count() or 1))
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults, not about this fit
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(features, labels)
    return model, float(np.ravel(model.C_)[0])


def fit_baselines(table: PrefixTable, train: np.ndarray, test: np.ndarray, *, inner_folds: int = 3,
                  seed: int = 0, methods: tuple[str, ...] = METHODS,
                  max_prefix_rows: int | None = MAX_PREFIX_ROWS) -> BaselinePredictions:
    """Fit on conversations ``train`` (indices into ``table.ids``), predict every prefix of ``test``."""
    import scipy.sparse as sp
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from salesrl_jax.baselines.prefix_tfidf import PrefixTfidf

    train_rows, test_rows = np.flatnonzero(table.rows_of(train)), np.flatnonzero(table.rows_of(test))
    if not len(train_rows) or not len(test_rows):
        raise ValueError("the baselines need training and held-out conversations")
    labels, groups = table.outcome[train_rows], table.conversation[train_rows]
    prefix_rows = subsample_prefixes(table, train_rows, max_prefix_rows, seed)
    probs: dict[str, np.ndarray] = {}
    chosen: dict[str, float] = {}
    for tagged in (False, True):
        fits = [fit for name, t, fit in TFIDF_VARIANTS if t == tagged and name in methods]
        if not fits:
            continue
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        whole_train = vectorizer.fit_transform(table.whole_texts(train, tagged))  # idf from training dialogues only
        prefixes = PrefixTfidf(table, vectorizer.vocabulary_, vectorizer.idf_, tagged)
        models = {}
        for fit in fits:
            name = f"tfidf_{'tagged' if tagged else 'plain'}_{fit}"
            if fit == "prefix":
                x = prefixes.transform(prefix_rows, _turn_column(table, prefix_rows)[:, 0])
                y, g = table.outcome[prefix_rows], table.conversation[prefix_rows]
            else:  # whole dialogues, each at its last turn
                lengths = np.array([len(table.texts[c]) for c in train], np.float64)
                x = sp.hstack([whole_train, np.log1p(lengths)[:, None]]).tocsr()
                y, g = table.outcome[np.searchsorted(table.conversation, train)], np.asarray(train)
            models[name], chosen[name] = _logistic_cv(x, y, g, inner_folds, seed)
            del x
        predicted = {name: [] for name in models}
        for _, test_x in prefixes.transform_chunks(test_rows, _turn_column(table, test_rows)[:, 0]):
            for name, model in models.items():
                predicted[name].append(model.predict_proba(test_x)[:, 1])
        probs.update({name: np.concatenate(parts) for name, parts in predicted.items()})
    # Sparse n-gram arrays hold no dense embedding: the TF-IDF family is the regression on that representation.
    if "embedding_lr" in methods and table.embedding_means.shape[1]:
        scaler = StandardScaler().fit(table.embedding_means[train_rows])
        model, chosen["embedding_lr"] = _logistic_cv(scaler.transform(table.embedding_means[train_rows]), labels,
                                                     groups, inner_folds, seed, DENSE_C_GRID)
        probs["embedding_lr"] = make_pipeline(scaler, model).predict_proba(table.embedding_means[test_rows])[:, 1]
    if "features_gbm" in methods:
        def summary(rows):
            return np.concatenate([table.feature_summary[rows], _turn_column(table, rows)], axis=1)

        gbm = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                             early_stopping=False, random_state=seed)
        gbm.fit(summary(train_rows), labels)
        probs["features_gbm"] = gbm.predict_proba(summary(test_rows))[:, 1]
    return BaselinePredictions(test_rows, {k: v.astype(np.float32) for k, v in probs.items()}, chosen,
                               prefix_rows=len(prefix_rows), of=len(train_rows))

"""The wide term's fit (`salesrl_jax.train.wide_fit`): its running mean, its optimum against scikit-learn's, and
a fit on real arrays that reads the training split only."""

import json
import shutil

import jax.numpy as jnp
import numpy as np

from salesrl_jax.train.wide_fit import L2_GRID, TurnRows, _fit_one, fit_wide, running_mean_logit, tfidf_slots

BUCKETS, K = 64, 5


def rows(lengths, seed=0) -> TurnRows:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ids = rng.integers(1, BUCKETS, (n, K)).astype(np.int32)
    ids[rng.random((n, K)) < 0.2] = 0
    counts = np.where(ids > 0, rng.integers(1, 4, (n, K)), 0).astype(np.float32)
    starts = np.zeros(n, bool)
    starts[np.cumsum([0] + list(lengths[:-1]))] = True
    outcome = rng.integers(0, 2, len(lengths))
    return TurnRows(ids, counts, starts, np.repeat(outcome, lengths).astype(np.float32))


def prefix_means(r: TurnRows, idf: np.ndarray) -> np.ndarray:
    """``[N, buckets]``: each turn's mean of the dense tf-idf vectors of its conversation's turns so far."""
    x = np.asarray(tfidf_slots(r, idf), np.float64)
    dense = np.zeros((len(x), BUCKETS))
    np.add.at(dense, (np.repeat(np.arange(len(x)), K), r.ids.ravel()), x.ravel())
    out, total, count = np.zeros_like(dense), None, 0
    for i in range(len(x)):
        total, count = (dense[i].copy(), 1) if r.starts[i] else (total + dense[i], count + 1)
        out[i] = total / count
    return out


def test_running_mean_logit_is_the_mean_over_each_conversations_turns_so_far():
    r = rows([4, 1, 6, 3])
    idf = np.linspace(0.5, 3.0, BUCKETS).astype(np.float32)
    w = np.random.default_rng(1).normal(size=BUCKETS).astype(np.float32)
    z = running_mean_logit(jnp.asarray(w), jnp.asarray(0.25), tfidf_slots(r, idf), jnp.asarray(r.ids),
                           jnp.asarray(r.starts))
    np.testing.assert_allclose(np.asarray(z), prefix_means(r, idf) @ w + 0.25, rtol=1e-5, atol=1e-5)


def test_the_fit_reaches_scikit_learns_optimum():
    from sklearn.linear_model import LogisticRegression

    r = rows([5, 8, 3, 7, 6, 4, 9, 2, 5, 6] * 6, seed=2)
    idf = np.ones(BUCKETS, np.float32)
    idf[0] = 0.0
    lam = 3e-3
    w, b = _fit_one((jnp.zeros(BUCKETS), jnp.zeros(())), jnp.asarray(lam), tfidf_slots(r, idf), jnp.asarray(r.ids),
                    jnp.asarray(r.starts), jnp.asarray(r.labels))
    X = prefix_means(r, idf)
    reference = LogisticRegression(C=1.0 / (lam * len(X)), tol=1e-10, max_iter=10_000).fit(X, r.labels)
    np.testing.assert_allclose(np.asarray(w), reference.coef_[0], atol=2e-3)
    assert abs(float(b) - reference.intercept_[0]) < 2e-3
    assert np.abs(reference.coef_[0]).max() > 0.05  # not a trivially zero solution


def test_fit_on_arrays_reads_the_training_split_only(tiny_archive, tmp_path):
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.arrays.split import split_conversations
    from salesrl_jax.arrays.store import part_digest
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train.statistics import training_idf

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    arrays = TurnArrays.open(tmp_path / "arrays")
    idf = training_idf(arrays, 0.2, 0)
    fit = fit_wide(arrays, idf, 0.2, 0)
    assert fit.l2 in L2_GRID and set(fit.valid_log_loss) == set(L2_GRID)
    assert np.all(np.isfinite(list(fit.valid_log_loss.values())))
    assert np.abs(fit.weights).max() > 0
    # A gram no training conversation shows has idf 0 and so no gradient but the L2's: its weight is exactly 0.
    assert np.all(fit.weights[idf == 0] == 0)
    # The same fit on a copy whose validation conversations' grams are scrambled: the weights do not change.
    shutil.copytree(tmp_path / "arrays", tmp_path / "scrambled")
    part = arrays.part(0)
    offsets = np.asarray(part.offsets)
    valid = split_conversations(part, "valid", 0.2, 0)
    assert len(valid)
    ids_path = tmp_path / "scrambled" / "part-00000" / "gram_ids.npy"
    ids = np.load(ids_path)
    rng = np.random.default_rng(0)
    for c in valid:
        block = ids[offsets[c]:offsets[c + 1]]
        block[block > 0] = rng.integers(1, 4096, int((block > 0).sum()))
    np.save(ids_path, ids)
    manifest = json.loads((tmp_path / "scrambled" / "manifest.json").read_text())
    manifest["parts"][0]["sha256"] = part_digest(ids_path.parent)  # a changed part, declared as such
    (tmp_path / "scrambled" / "manifest.json").write_text(json.dumps(manifest))
    scrambled = TurnArrays.open(tmp_path / "scrambled")
    np.testing.assert_array_equal(fit_wide(scrambled, idf, 0.2, 0, grid=(fit.l2,)).weights,
                                  fit_wide(arrays, idf, 0.2, 0, grid=(fit.l2,)).weights)


def test_a_run_without_a_validation_split_uses_the_strongest_strength_tried(tiny_archive, tmp_path):
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train.statistics import training_idf

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    arrays = TurnArrays.open(tmp_path / "arrays")
    fit = fit_wide(arrays, training_idf(arrays, 0.0, 0), 0.0, 0)
    assert fit.l2 == L2_GRID[0] and fit.valid_log_loss == {}


def test_running_sums_restart_per_conversation_and_keep_precision_on_long_arrays():
    """`restarting_sums` (the wide term's running sums, in the fit and the encoder) against float64 sums: a scan, not
    a cumulative sum with earlier totals subtracted, so 200,000 rows lose no more than a short conversation does."""
    from salesrl_jax.models.scan import restarting_sums

    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 30, 13_000)
    n = int(lengths.sum())
    starts = np.zeros(n, bool)
    starts[np.cumsum(lengths) - lengths] = True
    values = rng.normal(3.0, 1.0, n).astype(np.float32)
    gain, sums = restarting_sums(jnp.asarray(values), jnp.asarray(starts))
    expected = np.concatenate([np.cumsum(values[s:s + k].astype(np.float64))
                               for s, k in zip(np.cumsum(lengths) - lengths, lengths)])
    assert n > 190_000
    np.testing.assert_allclose(np.asarray(sums), expected, rtol=1e-5, atol=1e-4)
    # The gain is 0 from the first start on (a carried sum does not reach past it), 1 before any start.
    assert np.all(np.asarray(gain)[starts.argmax():] == 0)

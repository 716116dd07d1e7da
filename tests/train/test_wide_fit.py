"""The wide term's fit (`salesrl_jax.train.wide_fit`): its running mean and whole-dialogue forms, its optimum
against scikit-learn's, the gain's recovery of a known map, and a fit on real arrays whose validation turns are
cross-fitted."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.models.bag import sublinear_tfidf
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.train.supervised import last_turns
from salesrl_jax.train.wide_fit import (
    L2_GRID,
    TurnRows,
    _fit_weights,
    conversation_logit,
    conversation_rows,
    fit_gain,
    fit_wide,
    padded_size,
    running_mean_logit,
    speaker_slots,
)

BUCKETS, K = 64, 5


def tfidf_slots(rows: TurnRows, idf: np.ndarray) -> jnp.ndarray:
    """``x [N, K]``: the sublinear tf-idf weight of each slot, as the model's bag computes it (the fit's own
    `speaker_slots` computes it on padded rows)."""
    return sublinear_tfidf(GramBags(jnp.asarray(rows.ids), jnp.asarray(rows.counts)), jnp.asarray(idf, jnp.float32))


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


def test_the_whole_dialogue_logit_is_the_running_logit_at_the_last_turn():
    r = rows([4, 1, 6, 3, 5])
    idf = np.linspace(0.5, 3.0, BUCKETS).astype(np.float32)
    idf[7] = 0.0  # a bucket the fit drops
    w = np.random.default_rng(1).normal(size=BUCKETS).astype(np.float32)
    x = tfidf_slots(r, idf)
    entries = conversation_rows(r, np.asarray(x))
    assert entries.count == 5 and 7 not in entries.vocab
    z = conversation_logit(jnp.asarray(w[entries.vocab]), jnp.asarray(0.25), jnp.asarray(entries.conversation),
                           jnp.asarray(entries.column), jnp.asarray(entries.value), entries.count)
    running = running_mean_logit(jnp.asarray(w), jnp.asarray(0.25), x, jnp.asarray(r.ids), jnp.asarray(r.starts))
    last = np.asarray(last_turns(jnp.asarray(r.starts), jnp.ones(len(r.starts), bool)))
    np.testing.assert_allclose(np.asarray(z), np.asarray(running)[last], rtol=1e-5, atol=1e-5)


def test_the_customers_copy_of_the_slots_adds_their_own_weights():
    """`speaker_slots`: one weight vector ``(w, u)`` over both copies gives ``x_i . (w + c_i u)`` at each turn, and
    the conversation form sums both copies."""
    r = rows([4, 1, 6, 3, 5], seed=5)
    customer = (np.arange(len(r.starts)) % 2).astype(np.float32)
    r = TurnRows(r.ids, r.counts, r.starts, r.labels, customer=customer)
    idf = np.linspace(0.5, 3.0, BUCKETS).astype(np.float32)
    w, u = np.random.default_rng(6).normal(size=(2, BUCKETS)).astype(np.float32)
    x, ids = speaker_slots(r, idf, BUCKETS)
    assert x.shape == ids.shape == (len(r.starts), 2 * K)
    running = running_mean_logit(jnp.asarray(np.concatenate([w, u])), jnp.asarray(0.0), x, ids, jnp.asarray(r.starts))
    expected = np.zeros(len(r.starts))
    for i in range(len(r.starts)):  # a turn's own score x_i . (w + c_i u), then the running mean by hand
        expected[i] = np.sum(np.asarray(x)[i, :K] * (w[r.ids[i]] + customer[i] * u[r.ids[i]]))
    means = np.asarray(prefix_means(r, idf) @ w)  # u = 0: the plain form
    first = np.flatnonzero(r.starts)
    conv = np.cumsum(r.starts) - 1
    turn = np.arange(len(conv)) - first[conv] + 1
    by_hand = np.array([expected[first[conv[i]]:i + 1].sum() / turn[i] for i in range(len(conv))])
    np.testing.assert_allclose(np.asarray(running), by_hand, rtol=1e-5, atol=1e-5)
    plain = running_mean_logit(jnp.asarray(np.concatenate([w, 0 * u])), jnp.asarray(0.0), x, ids, jnp.asarray(r.starts))
    np.testing.assert_allclose(np.asarray(plain), means, rtol=1e-5, atol=1e-5)
    entries = conversation_rows(r, np.asarray(x), np.asarray(ids))
    z = conversation_logit(jnp.asarray(np.concatenate([w, u])[entries.vocab]), jnp.asarray(0.0),
                           jnp.asarray(entries.conversation), jnp.asarray(entries.column), jnp.asarray(entries.value),
                           entries.count)
    last = np.asarray(last_turns(jnp.asarray(r.starts), jnp.ones(len(r.starts), bool)))
    np.testing.assert_allclose(np.asarray(z), by_hand[last], rtol=1e-5, atol=1e-5)


def test_the_fit_reaches_scikit_learns_optimum():
    from sklearn.linear_model import LogisticRegression

    lengths = [5, 8, 3, 7, 6, 4, 9, 2, 5, 6] * 12
    r = rows(lengths, seed=2)
    idf = np.ones(BUCKETS, np.float32)
    idf[0] = 0.0
    lam = 3e-3
    entries = conversation_rows(r, np.asarray(tfidf_slots(r, idf)))
    y = r.labels[r.starts]
    w, b = _fit_weights((jnp.zeros(len(entries.vocab)), jnp.zeros(())), jnp.asarray(lam),
                        jnp.asarray(entries.conversation), jnp.asarray(entries.column), jnp.asarray(entries.value),
                        jnp.asarray(y), jnp.ones(entries.count), count=entries.count)
    last = np.asarray(last_turns(jnp.asarray(r.starts), jnp.ones(len(r.starts), bool)))
    X = prefix_means(r, idf)[last][:, entries.vocab]
    reference = LogisticRegression(C=1.0 / (lam * len(X)), tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(np.asarray(w), reference.coef_[0], atol=2e-3)
    assert abs(float(b) - reference.intercept_[0]) < 2e-3
    assert np.abs(reference.coef_[0]).max() > 0.05  # not a trivially zero solution


def test_a_fit_stopped_at_the_gradient_tolerance_is_the_fit_run_to_every_step(monkeypatch):
    """`_fit_weights` stops once the gradient's norm is under `LBFGS_TOLERANCE` (the loss has long stopped moving):
    the weights are those of the same fit run to all `LBFGS_STEPS` steps, at each strength, warm-started as
    `fit_wide` runs its path."""
    import jax

    from salesrl_jax.train import wide_fit

    r = rows([5, 8, 3, 7, 6, 4, 9, 2, 5, 6] * 12, seed=5)
    idf = np.ones(BUCKETS, np.float32)
    idf[0] = 0.0
    entries = conversation_rows(r, np.asarray(tfidf_slots(r, idf)))
    data = (jnp.asarray(entries.conversation), jnp.asarray(entries.column), jnp.asarray(entries.value),
            jnp.asarray(r.labels[r.starts]), jnp.ones(entries.count))
    stopped = []
    params = (jnp.zeros(len(entries.vocab)), jnp.zeros(()))
    for lam in wide_fit.L2_GRID:
        params = _fit_weights(params, jnp.asarray(lam), *data, count=entries.count)
        stopped.append(params)
    monkeypatch.setattr(wide_fit, "LBFGS_TOLERANCE", 0.0)  # read when traced: a fresh program runs every step
    every_step = jax.jit(wide_fit._fit_weights.__wrapped__, static_argnames="count")
    params = (jnp.zeros(len(entries.vocab)), jnp.zeros(()))
    for lam, early in zip(wide_fit.L2_GRID, stopped):
        params = every_step(params, jnp.asarray(lam), *data, count=entries.count)
        np.testing.assert_allclose(np.asarray(early[0]), np.asarray(params[0]), atol=1e-4)
        assert abs(float(early[1]) - float(params[1])) < 1e-4
    assert np.abs(np.asarray(params[0])).max() > 0.05


def test_padding_the_fit_changes_nothing_but_rounding():
    """`fit_wide` pads its arrays to `padded_size` so that similar sizes share one compiled program: entries of value
    0, conversations that no fit counts, weights that no entry reads. The fit on padded arrays equals the fit on the
    arrays as they are, to float rounding, and the padding weights stay 0."""
    assert [padded_size(n) for n in (0, 1, 16, 17, 659, 704, 705)] == [0, 1, 16, 18, 704, 704, 768]
    for n in range(1, 5000, 7):  # never smaller, at most an eighth larger
        assert n <= padded_size(n) <= n * 1.125
    r = rows([5, 8, 3, 7, 6, 4, 9, 2, 5, 6] * 12, seed=4)
    idf = np.ones(BUCKETS, np.float32)
    entries = conversation_rows(r, np.asarray(tfidf_slots(r, idf)))
    y = r.labels[r.starts].astype(np.float32)
    fitting = (np.arange(entries.count) % 5 != 0).astype(np.float32)
    args = (jnp.asarray(3e-3), jnp.asarray(entries.conversation), jnp.asarray(entries.column),
            jnp.asarray(entries.value), jnp.asarray(y), jnp.asarray(fitting))
    w, b = _fit_weights((jnp.zeros(len(entries.vocab)), jnp.zeros(())), *args, count=entries.count)

    def pad(a, extra):
        return jnp.concatenate([a, jnp.zeros(extra, a.dtype)])

    e, c, v = 37, 11, 5  # extra entries, conversations, weights
    padded = (args[0], pad(args[1], e), pad(args[2], e), pad(args[3], e), pad(args[4], c), pad(args[5], c))
    wp, bp = _fit_weights((jnp.zeros(len(entries.vocab) + v), jnp.zeros(())), *padded, count=entries.count + c)
    np.testing.assert_allclose(np.asarray(wp[:len(entries.vocab)]), np.asarray(w), atol=1e-5)
    assert abs(float(bp) - float(b)) < 1e-5 and not np.asarray(wp[len(entries.vocab):]).any()
    assert np.abs(np.asarray(w)).max() > 0.05


def test_the_gain_recovers_a_known_map():
    """y ~ Bernoulli(sigmoid(d + (alpha + beta log t)(m - mu))): the fit returns (alpha, beta, -mu)."""
    rng = np.random.default_rng(3)
    n = 60_000
    turn = rng.integers(1, 20, n)
    m = rng.normal(0.4, 1.0, n)
    z = -0.2 + (0.1 + 0.3 * np.log(turn)) * (m - m.mean())
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    (alpha, beta, shift), log_loss = fit_gain(m, turn, y)
    assert alpha == pytest.approx(0.1, abs=0.04) and beta == pytest.approx(0.3, abs=0.03)
    assert shift == pytest.approx(-m.mean())
    assert log_loss < float(np.mean(np.logaddexp(0, np.log(y.mean() / (1 - y.mean()))) - y * np.log(
        y.mean() / (1 - y.mean()))))  # better than the base rate


def test_fit_on_arrays_reads_every_labelled_conversation_and_no_validation_turn_in_sample(tiny_archive, tmp_path):
    """The weights are fitted on the validation split too, cross-fitted: a validation conversation's out-of-fold
    running logit ``m_t^oof`` (its `WideFit.holdout` entry plus the full weights' ``m_t``, computed by hand) does not
    move when its own outcome is flipped, while the full weights do (they read it)."""
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.arrays.split import split_conversations
    from salesrl_jax.arrays.store import part_digest
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train import wide_fit
    from salesrl_jax.train.statistics import training_idf

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    arrays = TurnArrays.open(tmp_path / "arrays")
    idf = training_idf(arrays, 0.2, 0)
    fit = fit_wide(arrays, idf, 0.2, 0)
    assert fit.l2 in L2_GRID and set(fit.cv_log_loss) == set(L2_GRID)
    assert np.all(np.isfinite(list(fit.cv_log_loss.values()))) and np.isfinite(fit.gain_log_loss)
    assert fit.cv_log_loss[fit.l2] == min(fit.cv_log_loss.values())
    assert np.abs(fit.weights).max() > 0 and fit.wide_map[1] > 0  # the simulator's text carries signal
    # A gram no training conversation shows has idf 0 and so no gradient but the L2's: its weight is exactly 0.
    assert np.all(fit.weights[idf == 0] == 0) and np.all(fit.customer_weights[idf == 0] == 0)
    part = arrays.part(0)
    bounds = np.asarray(part.offsets)
    valid = split_conversations(part, "valid", 0.2, 0)
    every_valid = {p.ids[c] for p in arrays.iter_parts() for c in split_conversations(p, "valid", 0.2, 0)}
    assert len(valid) and set(fit.holdout) == every_valid  # every validation conversation, no other
    for c in valid:
        assert len(fit.holdout[part.ids[c]]) == bounds[c + 1] - bounds[c]

    def out_of_fold(f, c):
        """m_t^oof of conversation c: the holdout difference plus the full fit's m_t, by hand."""
        ids, counts = np.asarray(part.gram_ids), np.asarray(part.gram_counts).astype(np.float64)
        x = np.where(ids > 0, (1 + np.log(np.maximum(counts, 1))) * idf[ids], 0.0)
        customer = np.asarray(part.features)[:, wide_fit.CUSTOMER_FEATURE][:, None]
        omega = np.sum(x * (f.weights[ids] + customer * f.customer_weights[ids]), axis=1)[bounds[c]:bounds[c + 1]]
        m = f.intercept + np.cumsum(omega) / np.arange(1, len(omega) + 1)
        return m + f.holdout[part.ids[c]]

    # A copy with one validation conversation's outcome flipped (grid fixed: the strength is not chosen again).
    flipped_conversation = valid[0]
    shutil.copytree(tmp_path / "arrays", tmp_path / "flipped")
    outcome_path = tmp_path / "flipped" / "part-00000" / "outcome.npy"
    outcome = np.load(outcome_path)
    outcome[flipped_conversation] = 1 - outcome[flipped_conversation]
    np.save(outcome_path, outcome)
    manifest = json.loads((tmp_path / "flipped" / "manifest.json").read_text())
    manifest["parts"][0]["sha256"] = part_digest(outcome_path.parent)  # a changed part, declared as such
    (tmp_path / "flipped" / "manifest.json").write_text(json.dumps(manifest))
    again = fit_wide(arrays, idf, 0.2, 0, grid=(fit.l2,))
    flipped = fit_wide(TurnArrays.open(tmp_path / "flipped"), idf, 0.2, 0, grid=(fit.l2,))
    assert np.abs(flipped.weights - again.weights).max() > 1e-4  # the full fit reads the validation conversation
    np.testing.assert_allclose(out_of_fold(flipped, flipped_conversation), out_of_fold(again, flipped_conversation),
                               rtol=1e-4, atol=1e-4)  # the weights that read it for validation never saw it
    assert np.abs(again.holdout[part.ids[flipped_conversation]]).max() > 1e-3  # out of fold is not in-sample
    # the training turns' offsets: NaN at every validation turn, as before
    for c in valid:
        assert np.all(np.isnan(again.offsets[0][bounds[c]:bounds[c + 1]]))


def test_the_offsets_cover_the_training_turns_and_read_an_unfitted_conversation_with_the_full_weights(
        tiny_archive, tmp_path, monkeypatch):
    """`WideFit.offsets`: a value at every training turn and NaN elsewhere; out of fold for the conversations the fit
    read (they differ from the full weights' logits there), and for those beyond `MAX_FIT_CONVERSATIONS` the logit
    the model itself adds, ``max(alpha + beta log t, 0) (m_t + shift)`` with the full weights, computed by hand."""
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.arrays.split import split_conversations
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train import wide_fit
    from salesrl_jax.train.statistics import training_idf

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    arrays = TurnArrays.open(tmp_path / "arrays")
    part = arrays.part(0)
    train = split_conversations(part, "train", 0.2, 0)
    cap = len(train) - 20
    monkeypatch.setattr(wide_fit, "MAX_FIT_CONVERSATIONS", cap)
    idf = training_idf(arrays, 0.2, 0)
    fit = fit_wide(arrays, idf, 0.2, 0, grid=(3e-3,))
    offsets, bounds = fit.offsets[0], np.asarray(part.offsets)
    in_train = np.zeros(part.num_turns, bool)
    for c in train:
        in_train[bounds[c]:bounds[c + 1]] = True
    assert np.all(np.isfinite(offsets[in_train])) and np.all(np.isnan(offsets[~in_train]))
    alpha, beta, shift = fit.wide_map
    ids, counts = np.asarray(part.gram_ids), np.asarray(part.gram_counts).astype(np.float64)
    x = np.where(ids > 0, (1 + np.log(np.maximum(counts, 1))) * idf[ids], 0.0)
    customer = np.asarray(part.features)[:, wide_fit.CUSTOMER_FEATURE][:, None]
    omega = np.sum(x * (fit.weights[ids] + customer * fit.customer_weights[ids]), axis=1)

    def by_hand(c):
        t = np.arange(1, bounds[c + 1] - bounds[c] + 1)
        return np.maximum(alpha + beta * np.log(t), 0.0) * (np.cumsum(omega[bounds[c]:bounds[c + 1]]) / t + shift)

    for c in train[cap:]:  # beyond the cap: no fit read them
        np.testing.assert_allclose(offsets[bounds[c]:bounds[c + 1]], by_hand(c), rtol=1e-4, atol=1e-4)
    fitted = np.concatenate([offsets[bounds[c]:bounds[c + 1]] for c in train[:cap]])
    in_sample = np.concatenate([by_hand(c) for c in train[:cap]])
    assert np.abs(fitted - in_sample).mean() > 0.05  # out of fold, not the full weights' in-sample logits


def test_a_run_without_a_validation_split_still_chooses_its_strength_by_cross_validation(tiny_archive, tmp_path):
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train.statistics import training_idf

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    arrays = TurnArrays.open(tmp_path / "arrays")
    fit = fit_wide(arrays, training_idf(arrays, 0.0, 0), 0.0, 0)
    assert set(fit.cv_log_loss) == set(L2_GRID) and fit.cv_log_loss[fit.l2] == min(fit.cv_log_loss.values())


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


def test_too_few_training_conversations_fit_no_wide_term(tiny_archive, tmp_path):
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.arrays.subset import write_subset
    from salesrl_jax.embed.config import EmbedderConfig
    from salesrl_jax.train.statistics import training_idf
    from salesrl_jax.train.wide_fit import MIN_FIT_CONVERSATIONS

    embed_archive(tiny_archive, tmp_path / "arrays", EmbedderConfig(kind="ngrams", dim=4096, max_grams=64),
                  chunk_conversations=300, workers=1)
    few = write_subset(TurnArrays.open(tmp_path / "arrays"),
                       lambda part: np.arange(part.num_conversations) < MIN_FIT_CONVERSATIONS // 4, tmp_path / "few")
    with pytest.warns(UserWarning, match="no wide term"):
        assert fit_wide(few, training_idf(few, 0.0, 0), 0.0, 0) is None


def test_both_training_phases_carry_each_rows_offset_into_their_batches(tiny_arrays):
    """The offsets reach the losses: each phase's batch holds ``offsets[part][row]`` at every packed row, NaN on the
    padding, and no offset when the run has none."""
    from salesrl_jax.arrays import TurnArrays
    from salesrl_jax.arrays import batches as batch_lib
    from salesrl_jax.train.phases import PPOFinetuning, Pretraining

    arrays = TurnArrays.open(tiny_arrays)
    (chunk, *_) = batch_lib.epoch_plan(arrays, "train", 0.2, 0, seed=0, epoch=0, rows=64, chunk_minibatches=2)
    host = batch_lib.gather_packed(arrays.part(chunk.part), chunk.minibatches, 64, 2)
    offsets = {chunk.part: np.random.default_rng(0).normal(size=arrays.part(chunk.part).num_turns).astype(np.float32)}
    valid = host.index >= 0
    assert valid.any() and not valid.all()
    for phase in (Pretraining(arrays, None, None, 64, 2, 1, plans=[], offsets=offsets),
                  PPOFinetuning(arrays, None, None, 64, 2, schedules=[], validate_every=1, offsets=offsets)):
        offset = np.asarray(phase.to_batch(host, chunk.part, 0).offset)
        np.testing.assert_array_equal(offset[valid], offsets[chunk.part][host.index[valid]])
        assert np.all(np.isnan(offset[~valid]))
    assert Pretraining(arrays, None, None, 64, 2, 1, plans=[]).to_batch(host, chunk.part, 0).offset is None

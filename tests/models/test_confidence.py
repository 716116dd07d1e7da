"""The confidence module's maths: signals, running novelty, familiarity, Venn-Abers and conformal intervals."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import isotonic_regression

from salesrl_jax.eval.confidence_fit import _shell, calibrate, choose_buckets, venn_abers_gaps
from salesrl_jax.models.confidence import (
    ConfidenceParams,
    StreamingNovelty,
    TurnSignals,
    combine,
    confidence_outputs,
    dense_text_novelty,
    running_text_novelty,
    sparse_text_novelty,
    state_distance,
    turn_bucket,
)
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.run.config import ConfidenceConfig


def test_turn_buckets_pool_consecutive_turns_until_each_holds_enough_calibration_turns():
    # 0-based turn index -> bucket, for starts 1 | 2-3 | 4+
    assert np.asarray(turn_bucket(np.array([1, 2, 4]), np.arange(6))).tolist() == [0, 1, 1, 2, 2, 2]
    # 100 conversations reach turn 1-4, 60 turn 5, 20 turns 6-8: with 100 per bucket, turns 1, 2, 3, 4, then 5-8
    turn_index = np.concatenate([np.arange(4)] * 100 + [np.arange(4, 5)] * 40 + [np.arange(4, 8)] * 20)
    assert choose_buckets(turn_index, minimum=100).tolist() == [1, 2, 3, 4, 5]
    # a short remainder joins the last bucket instead of forming its own
    assert choose_buckets(turn_index, minimum=150).tolist() == [1, 3]
    assert choose_buckets(np.zeros(10, int), minimum=300).tolist() == [1]


def test_state_distance_is_the_distance_to_the_nearest_bank_state():
    rng = np.random.default_rng(0)
    bank, states = rng.normal(size=(50, 6)).astype(np.float32), rng.normal(size=(7, 6)).astype(np.float32)
    expected = np.linalg.norm(states[:, None] - bank[None], axis=-1).min(1)
    norms = np.sum(bank * bank, -1)
    np.testing.assert_allclose(np.asarray(state_distance(jnp.asarray(bank), jnp.asarray(norms), jnp.asarray(states))),
                               expected, rtol=1e-4)
    np.testing.assert_allclose(state_distance(bank, norms, states, xp=np), expected, rtol=1e-5)  # the host form


def test_sparse_text_novelty_is_the_unseen_share_of_gram_occurrences():
    seen = np.zeros(10, np.float32)
    seen[[1, 2]] = 1.0
    bags = GramBags(jnp.asarray([[1, 5, 0], [0, 0, 0], [2, 7, 8]]), jnp.asarray([[3, 1, 0], [0, 0, 0], [1, 1, 2]]))
    np.testing.assert_allclose(np.asarray(sparse_text_novelty(jnp.asarray(seen), bags)), [1 / 4, 0.0, 3 / 4])


def test_dense_text_novelty_is_the_cosine_distance_to_the_nearest_training_turn():
    projection = np.eye(3, dtype=np.float32)
    bank = np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32)
    x = np.array([[2.0, 0, 0], [0, 0, 5.0], [1.0, 1.0, 0]], np.float32)
    expected = [0.0, 1.0, 1 - np.sqrt(0.5)]
    np.testing.assert_allclose(np.asarray(dense_text_novelty(projection, bank, x)), expected, atol=1e-6)
    # int8 rows times their scales give the same as the float rows
    np.testing.assert_allclose(np.asarray(dense_text_novelty(projection, bank, x * 2, jnp.full(3, 0.5))),
                               expected, atol=1e-6)


def test_running_novelty_batch_equals_streaming():
    rng = np.random.default_rng(1)
    lengths = [3, 1, 5, 2]
    turn_index = np.concatenate([np.arange(n) for n in lengths])
    novelty = rng.random(len(turn_index)).astype(np.float32)
    batch = running_text_novelty(novelty, turn_index)
    streamed, row = [], 0
    for n in lengths:
        carry = StreamingNovelty()
        for _ in range(n):
            carry, so_far = carry.add(jnp.asarray(novelty[row]))
            streamed.append(float(so_far))
            row += 1
    np.testing.assert_allclose(batch, streamed, rtol=1e-6)
    starts = np.cumsum([0] + lengths)
    expected = np.concatenate([np.maximum.accumulate(novelty[a:a + n]) for a, n in zip(starts, lengths)])
    np.testing.assert_allclose(batch, expected, rtol=1e-6)
    # turn t's value reads turns 1..t only
    changed = novelty.copy()
    changed[4:] = 1.9  # every turn of the last three conversations
    np.testing.assert_array_equal(running_text_novelty(changed, turn_index)[:4], batch[:4])


def test_venn_abers_pairs_are_the_isotonic_fits_with_the_test_point_added():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=40)
    outcomes = (rng.random(40) < 1 / (1 + np.exp(-2 * scores))).astype(float)
    sorted_scores, low, high = venn_abers_gaps(scores, outcomes)
    assert np.all(low <= high + 1e-12)
    for test in (-3.0, 0.1, 2.5):
        j = int(np.searchsorted(sorted_scores, test, side="right"))
        for label, got in ((0.0, low[j]), (1.0, high[j])):
            order = np.argsort(np.append(scores, test), kind="stable")
            y = np.append(outcomes, label)[order]
            fitted = isotonic_regression(y, increasing=True).x
            assert got == pytest.approx(fitted[int(np.flatnonzero(order == len(scores))[0])])


def _synthetic_calibration(rng, conversations: int, length: int = 6):
    """Flat turns of conversations with a known true probability q, a prediction p = q + noise whose size a signal
    (the ensemble disagreement) reveals, and outcomes y ~ Bernoulli(q)."""
    turn_index = np.tile(np.arange(length), conversations)
    q = rng.uniform(0.05, 0.95, len(turn_index))
    spread = rng.uniform(0.01, 0.15, len(turn_index))
    p = np.clip(q + rng.normal(size=len(q)) * spread, 0.01, 0.99)
    y = (rng.random(len(q)) < q).astype(np.int8)
    signals = TurnSignals(rng.normal(size=len(q)).astype(np.float32), rng.random(len(q)).astype(np.float32))
    return p.astype(np.float32), spread.astype(np.float32), signals, turn_index, y, q.astype(np.float32)


def _fitted(rng, config=ConfidenceConfig(), oracle=True, conversations=2000):
    shell = _shell(np.zeros((4, 3), np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32),
                   np.zeros((1, 1), np.float32), config, "none")
    p, spread, signals, t, y, q = _synthetic_calibration(rng, conversations)
    return calibrate(shell, p, spread, signals, t, y, q if oracle else np.full(len(q), np.nan, np.float32), config)


def test_conformal_intervals_cover_the_true_probability_at_the_nominal_rate_per_turn():
    rng = np.random.default_rng(3)
    params, fit = _fitted(rng)
    assert fit["interval"] == "conformal"
    p, spread, signals, t, _, q = _synthetic_calibration(rng, 4000)  # fresh conversations
    out = confidence_outputs(params, p, spread, signals, t)
    for k in range(6):
        rows = t == k
        coverage = np.mean((out.p_low[rows] <= q[rows]) & (q[rows] <= out.p_high[rows]))
        assert abs(coverage - 0.9) < 0.02, (k, coverage)
    # the width follows the signal that reveals the error's size (normalised scores)
    wide = spread > 0.12
    narrow = spread < 0.04
    assert np.mean((out.p_high - out.p_low)[wide]) > 2 * np.mean((out.p_high - out.p_low)[narrow])


def test_venn_abers_intervals_without_a_true_probability():
    rng = np.random.default_rng(4)
    params, fit = _fitted(rng, oracle=False, conversations=600)
    assert fit["interval"] == "venn-abers"
    p, spread, signals, t, y, _ = _synthetic_calibration(rng, 2000)
    out = confidence_outputs(params, p, spread, signals, t)
    assert np.all(out.p_low <= out.p_high + 1e-6)
    # familiar turns get narrow multiprobability pairs; their midpoints are calibrated
    familiar = out.familiarity >= 0.05  # the gate is fully open
    assert np.mean((out.p_high - out.p_low)[familiar]) < 0.1
    mid = ((out.p_low + out.p_high) / 2)[familiar]
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        rows = (mid >= lo) & (mid < hi)
        assert abs(np.mean(y[familiar][rows]) - np.mean(mid[rows])) < 0.05


def test_familiarity_falls_for_novel_states_and_widens_the_interval():
    rng = np.random.default_rng(5)
    params, _ = _fitted(rng)
    assert isinstance(params, ConfidenceParams)
    p = np.full(4, 0.8, np.float32)
    typical = combine(params, p, jnp.full(4, 0.05), jnp.zeros(4), jnp.full(4, 0.5), jnp.arange(4))
    novel = combine(params, p, jnp.full(4, 0.05), jnp.full(4, 40.0), jnp.full(4, 0.5), jnp.arange(4))
    assert np.all(np.asarray(typical.familiarity) > 0.2)
    assert np.all(np.asarray(novel.familiarity) < 0.01)
    assert np.all(np.asarray(novel.confidence) < np.asarray(typical.confidence))
    assert np.all(np.asarray(novel.p_high - novel.p_low) > 0.9)
    assert np.all(np.asarray(novel.low_confidence))




def test_the_expected_error_fitted_with_or_without_a_true_probability_estimates_the_same_thing():
    """The excess over p(1-p) is fitted to (y-p)^2 - p(1-p), or with a known q to its mean given q, (q-p)(1-2p): both
    fits estimate E[(y-p)^2] on fresh turns, overall and where the signal says the model errs more or less (a model
    p = q + noise is overconfident, so p(1-p) alone is too low where the noise is large). Fitting (q-p)^2 instead,
    as before, read 0.013 low where the noise is large and differed from the outcome fit by 0.008-0.011."""
    rng = np.random.default_rng(6)
    fits = {"oracle": _fitted(rng)[0], "outcomes": _fitted(rng, oracle=False, conversations=4000)[0]}
    p, spread, signals, t, y, q = _synthetic_calibration(rng, 8000)
    expected_given_q = q * (1 - q) + (q - p) ** 2  # E[(y - p)^2 | q]: the truth, without the outcomes' noise
    means = {}
    for name, params in fits.items():
        out = confidence_outputs(params, p, spread, signals, t)
        familiar = np.asarray(out.familiarity) >= float(params.familiarity_level)  # the gate open: e_t = e_in
        for part, rows in (("all", familiar), ("noisy", familiar & (spread > 0.12)),
                           ("precise", familiar & (spread < 0.04))):
            means[name, part] = float(np.asarray(out.expected_error)[rows].mean())
            # within 0.0075 (a linear fit of a quadratic excess, and e_in >= p(1-p) where the excess is negative)
            assert abs(means[name, part] - expected_given_q[rows].mean()) < 0.0075, (name, part)
        noisy = familiar & (spread > 0.12)
        assert np.mean(np.asarray(out.expected_error)[noisy] - (p * (1 - p))[noisy]) > 0.02  # the signal is used
    for part in ("all", "noisy", "precise"):
        assert abs(means["oracle", part] - means["outcomes", part]) < 0.002, part

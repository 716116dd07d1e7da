"""The oracle is the exact conditional probability of the sampled outcomes."""

import dataclasses

import numpy as np

from salesrl_jax.sim import dynamics


def _profiles(rng, n):
    return dynamics.draw_profiles(rng, rng.random(n), rng.random(n), rng.random(n))


def test_probability_tables_are_normalised():
    t = dynamics.build_tensors(_profiles(np.random.default_rng(0), 64), exchanges=13, outcome_bias=0.0, pace=1.0)
    for table in (t.init, t.policy, t.customer, t.shift):
        np.testing.assert_allclose(table.sum(-1), 1.0, atol=1e-5)
    assert (t.end > 0).all() and (t.end < 1).all(), "outcomes keep irreducible noise"


def test_prior_matches_monte_carlo_for_one_profile():
    # One profile replicated: the share of converted rollouts estimates its prior V_0.
    rng = np.random.default_rng(1)
    one = _profiles(rng, 1)
    n = 20_000
    many = dynamics.Profile(**{f.name: np.repeat(getattr(one, f.name), n) for f in dataclasses.fields(one)})
    t = dynamics.build_tensors(many, exchanges=13, outcome_bias=0.0, pace=1.0)
    oracle = dynamics.solve_oracle(t)
    roll = dynamics.rollout(rng, t, oracle)
    se = np.sqrt(oracle.prior[0] * (1 - oracle.prior[0]) / n)
    assert abs(roll.outcome.mean() - oracle.prior[0]) < 4 * se
    # and the mean realised end probability (a lower-variance estimate) agrees too
    assert abs(roll.end_prob.mean() - oracle.prior[0]) < 4 * se


def test_oracle_is_calibrated_at_every_turn():
    """Binned oracle probability vs realised outcome frequency, at every turn still running."""
    rng = np.random.default_rng(2)
    n = 30_000
    t = dynamics.build_tensors(_profiles(rng, n), exchanges=13, outcome_bias=0.3, pace=1.0)
    oracle = dynamics.solve_oracle(t)
    roll = dynamics.rollout(rng, t, oracle)
    for values, alive in ((roll.oracle_after_rep, roll.rep_acts >= 0), (roll.oracle_after_customer, roll.customer_acts >= 0)):
        probs = values[alive]
        labels = np.broadcast_to(roll.outcome[:, None], values.shape)[alive]
        bins = np.clip((probs * 10).astype(int), 0, 9)
        for b in range(10):
            sel = bins == b
            if sel.sum() < 500:
                continue
            p = probs[sel].mean()
            # turns of one conversation share an outcome, so inflate the binomial s.e. by the mean length
            se = np.sqrt(p * (1 - p) / sel.sum()) * np.sqrt(4)
            assert abs(labels[sel].mean() - p) < 4 * se + 0.005, (b, labels[sel].mean(), p)


def test_last_turn_oracle_is_informative_but_not_perfect():
    rng = np.random.default_rng(3)
    t = dynamics.build_tensors(_profiles(rng, 8192), exchanges=13, outcome_bias=0.0, pace=1.0)
    oracle = dynamics.solve_oracle(t)
    roll = dynamics.rollout(rng, t, oracle)
    accuracy = np.mean((roll.end_prob >= 0.5) == roll.outcome)
    assert 0.75 < accuracy < 0.93

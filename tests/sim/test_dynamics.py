"""The oracle is the exact conditional probability of the sampled outcomes."""

import dataclasses

import numpy as np
import pytest

from salesrl_jax.sim import dynamics


def _profiles(rng, n):
    return dynamics.draw_profiles(rng, rng.random(n), rng.random(n), rng.random(n))


def test_probability_tables_are_normalised():
    t = dynamics.build_tensors(_profiles(np.random.default_rng(0), 64), exchanges=13, outcome_bias=0.0, pace=1.0)
    for table in (t.init, t.policy, t.customer, t.shift):
        np.testing.assert_allclose(table.sum(-1), 1.0, atol=1e-5)
    assert (t.end > 0).all() and (t.end < 1).all(), "outcomes keep irreducible noise"


def _one_profile(rng, n):
    """One profile replicated ``n`` times."""
    one = _profiles(rng, 1)
    return dynamics.Profile(**{f.name: np.repeat(getattr(one, f.name), n) for f in dataclasses.fields(one)})


def _with_industry(n, name, scale):
    """One industry's offsets for ``n`` conversations."""
    return dynamics.stacked_industry_dynamics([name], scale).rows(np.zeros(n, int))


@pytest.mark.parametrize("industry", [None, ("medical_devices", 1.0)])
def test_prior_matches_monte_carlo_for_one_profile(industry):
    # One profile replicated: the share of converted rollouts estimates its prior V_0 (with industry dynamics too).
    rng = np.random.default_rng(1)
    n = 20_000
    offsets = None if industry is None else _with_industry(n, *industry)
    t = dynamics.build_tensors(_one_profile(rng, n), exchanges=13, outcome_bias=0.0, pace=1.0, industry=offsets)
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


def test_industry_dynamics_belong_to_the_industry():
    """An industry's offsets depend on its name and the scale alone (a held-out test set meets the dynamics its
    industry has in any other run), differ between industries, scale linearly, and leave the opening alone."""
    a, again = dynamics.industry_dynamics("travel", 0.5), dynamics.industry_dynamics("travel", 0.5)
    np.testing.assert_array_equal(a.customer, again.customer)
    np.testing.assert_array_equal(a.shift, again.shift)
    other = dynamics.industry_dynamics("saas", 0.5)
    assert np.abs(a.customer - other.customer).mean() > 0.2
    double = dynamics.industry_dynamics("travel", 1.0)
    np.testing.assert_allclose(double.customer, 2 * a.customer)
    np.testing.assert_allclose(double.shift, 2 * a.shift)
    opening = dynamics.REP_ACTS.index("opening")
    assert not a.customer[opening].any() and a.shift[opening] == 0
    assert a.customer.shape == (dynamics.R, dynamics.C) and a.shift.shape == (dynamics.R,)
    assert 0.35 < a.customer[1:].std() < 0.65  # N(0, 0.5^2)


def test_industry_dynamics_change_the_buyers_not_the_rep():
    many = _one_profile(np.random.default_rng(4), 64)
    shared = dynamics.build_tensors(many, exchanges=13, outcome_bias=0.0, pace=1.0)
    t = dynamics.build_tensors(many, exchanges=13, outcome_bias=0.0, pace=1.0,
                               industry=_with_industry(64, "medical_devices", 1.0))
    for table in (t.customer, t.shift):
        np.testing.assert_allclose(table.sum(-1), 1.0, atol=1e-5)
    assert np.abs(t.customer - shared.customer).max() > 0.05 and np.abs(t.shift - shared.shift).max() > 0.05
    np.testing.assert_array_equal(t.policy, shared.policy)
    assert abs(dynamics.solve_oracle(t).prior[0] - dynamics.solve_oracle(shared).prior[0]) > 0.01

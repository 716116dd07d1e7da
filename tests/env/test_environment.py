"""The JAX environment against the numpy simulator: the same tensors and oracle for the same customers, the same
distribution of conversations under the scripted rep; step semantics; common random numbers; the ceiling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.env.environment import END_CALL, END_CALL_KIND, make_params, reset, step, tensors_of
from salesrl_jax.env.tensors import customer_tensors, draw_profile
from salesrl_jax.env.values import solve
from salesrl_jax.guidance.policies import ceiling, rule_table, scripted
from salesrl_jax.guidance.rollout import run_episodes
from salesrl_jax.sim import dynamics as sim
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import _draw_batch

FIELDS = ("need", "budget_fit", "authority", "urgency", "skepticism", "rep_skill", "competition", "price_sensitivity")


@pytest.fixture(scope="module")
def params():
    return make_params(SimulatorConfig(seed=3))


@pytest.fixture(scope="module")
def varied():
    """Industries that differ in what works (`salesrl_jax.sim.dynamics.industry_dynamics`)."""
    return make_params(SimulatorConfig(seed=3, industry_dynamics=1.0))


def _customers(params, n, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    industry = jax.random.randint(jax.random.PRNGKey(seed + 1), (n,), 0, len(params.industries))
    profiles = jax.vmap(lambda k, i: draw_profile(k, i, params.const, params.dynamics))(keys, industry)
    tensors = jax.vmap(lambda p, i: customer_tensors(p, params.const, params.dynamics, params.outcome_bias,
                                                     params.pace, params.offsets_index(i))
                       )(profiles, industry)
    return profiles, industry, tensors


@pytest.mark.parametrize("which", ["params", "varied"])
def test_tensors_and_oracle_equal_the_numpy_simulator_for_the_same_customers(which, request):
    params = request.getfixturevalue(which)
    profiles, industry, tensors = _customers(params, 128)
    profile = sim.Profile(**{f: np.asarray(getattr(profiles, f), np.float64) for f in FIELDS})
    stacked = sim.stacked_industry_dynamics(params.industries, params.industry_dynamics)
    offsets = None if stacked is None else stacked.rows(np.asarray(industry))
    assert (offsets is None) == (which == "params")
    expected = sim.build_tensors(profile, params.exchanges, float(params.outcome_bias), params.pace, params.dynamics,
                                 offsets)
    for field in ("init", "policy", "customer", "shift", "end"):
        np.testing.assert_allclose(np.asarray(getattr(tensors, field)), getattr(expected, field), atol=2e-6,
                                   err_msg=field)
    oracle = sim.solve_oracle(expected)
    values = jax.vmap(lambda t: solve(t, params.const.fit, "scripted"))(tensors)
    np.testing.assert_allclose(np.asarray(values.prior), oracle.prior, atol=2e-6)
    q = np.asarray(values.q)[..., :sim.R]  # H_e(I, r, FIT[c, r]) for every c
    np.testing.assert_allclose(q, oracle.after_rep[:, :, :, np.arange(sim.R)[None, :], sim.FIT], atol=2e-6)
    # The ceiling is at least the scripted rep's value for every customer, and more on average.
    best = jax.vmap(lambda t: solve(t, params.const.fit, "optimal"))(tensors).prior
    assert np.all(np.asarray(best) >= np.asarray(values.prior) - 1e-6)
    assert float(best.mean()) > float(values.prior.mean()) + 0.05


@pytest.mark.parametrize("which", ["params", "varied"])
def test_the_scripted_rep_reproduces_the_simulators_distribution(which, request):
    params = request.getfixturevalue(which)
    n = 12_000
    episodes = run_episodes(scripted(), jax.random.PRNGKey(7), n, params)
    config = SimulatorConfig(seed=3, industry_dynamics=params.industry_dynamics)
    rng = np.random.default_rng(11)
    _, industry, _, tensors = _draw_batch(rng, config, n, float(params.outcome_bias), params.dynamics)
    roll = sim.rollout(rng, tensors, sim.solve_oracle(tensors))
    # Conversion rate (the numpy simulator's target, 0.44) and its oracle prior, within sampling error.
    assert abs(episodes.sale.mean() - roll.outcome.mean()) < 0.025
    assert abs(episodes.sale.mean() - config.target_conversion_rate) < 0.025
    # Length: the mean and the whole distribution of exchanges.
    assert abs(episodes.exchanges.mean() - roll.exchanges.mean()) < 0.12
    lengths = [np.bincount(x, minlength=params.exchanges + 1) / n for x in (episodes.exchanges, roll.exchanges)]
    assert 0.5 * np.abs(lengths[0] - lengths[1]).sum() < 0.03
    # How calls end, and the frequencies of every rep and customer act.
    kinds = [np.bincount(x, minlength=4) / n for x in (episodes.end_kind, roll.end_kind)]
    np.testing.assert_allclose(kinds[0], kinds[1], atol=0.025)
    for ours, acts, size in ((episodes.rep_counts, roll.rep_acts, sim.R),
                             (episodes.customer_counts, roll.customer_acts, sim.C)):
        theirs = np.bincount(acts[acts >= 0], minlength=size)
        assert 0.5 * np.abs(ours.sum(0) / ours.sum() - theirs / theirs.sum()).sum() < 0.02
    # Industries are uniform over the included ones in both.
    assert abs(np.bincount(episodes.industry).std() / (n / len(params.industries))) < 0.15
    assert len(np.unique(industry)) == len(params.industries)


def test_step_semantics(params):
    _, state = reset(jax.random.PRNGKey(0), params)
    # END_CALL ends the call at once, without an exchange, at a disengaged customer's odds for the current interest.
    _, ended, reward, done, info = step(jax.random.PRNGKey(1), state, jnp.asarray(END_CALL), params)
    assert bool(done) and int(ended.exchange) == 0 and int(ended.end_kind) == END_CALL_KIND
    assert float(ended.sale_prob) == pytest.approx(float(tensors_of(state, params).end[state.level, END_CALL_KIND]))
    assert float(reward) == float(ended.sale) and not bool(info["played"])
    # A finished conversation stays as it is.
    _, again, reward, done, _ = step(jax.random.PRNGKey(2), ended, jnp.asarray(3), params)
    assert bool(done) and float(reward) == 0.0 and int(again.exchange) == 0
    # Every call ends by the cap; the time cost is paid per exchange played.
    costly = dataclasses.replace(params, time_cost=jnp.asarray(0.01))
    free, paid = (run_episodes(scripted(), jax.random.PRNGKey(3), 500, p) for p in (params, costly))
    assert free.exchanges.max() <= params.exchanges and np.array_equal(free.sale, paid.sale)
    np.testing.assert_allclose(paid.ret, free.ret - 0.01 * free.exchanges, atol=1e-5)
    # jit and vmap over conversations.
    obs, states = jax.jit(jax.vmap(reset, in_axes=(0, None)))(jax.random.split(jax.random.PRNGKey(4), 64), params)
    assert obs.shape == (64, 34) and states.level.shape == (64,)


def test_common_random_numbers_and_the_ceiling(params):
    key = jax.random.PRNGKey(5)
    a, b = run_episodes(scripted(), key, 2_000, params), run_episodes(scripted(), key, 2_000, params)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # deterministic
    rule = run_episodes(rule_table(), key, 2_000, params)
    assert np.array_equal(rule.industry, a.industry)  # the same customers in both arms
    assert not np.array_equal(rule.rep_counts, a.rep_counts)
    best = run_episodes(ceiling(), key, 8_000, params)
    _, _, tensors = _customers(params, 8_000, seed=9)
    exact = float(jax.vmap(lambda t: solve(t, params.const.fit, "optimal"))(tensors).prior.mean())
    assert abs(best.sale.mean() - exact) < 0.02  # simulated ceiling = its exact value
    assert best.sale.mean() > a.sale.mean() + 0.1


def test_the_oracle_mean_at_each_exchange_agrees_with_the_simulator(params):
    """The oracle after each rep turn, ``H_e(I, r, FIT[c, r])``, averaged over the conversations still running at
    exchange e: the JAX environment under the scripted rep against the numpy simulator's rollouts."""
    n, policy = 8_000, scripted()

    def episode(key):
        _, state = reset(jax.random.fold_in(key, 0), params)
        q = solve(tensors_of(state, params), params.const.fit, "scripted").q

        def one(state, e):
            action = policy.act(jax.random.fold_in(key, 10_000 + e), state, None, None, params)
            oracle, alive = q[e, state.level, state.prev, action], ~state.done
            _, state, _, _, _ = step(jax.random.fold_in(key, 1 + e), state, action, params)
            return state, (oracle, alive)

        return jax.lax.scan(one, state, jnp.arange(params.exchanges))[1]

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(13), i))(jnp.arange(n))
    oracle, alive = (np.asarray(x) for x in jax.jit(jax.vmap(episode))(keys))
    rng = np.random.default_rng(17)
    _, _, _, tensors = _draw_batch(rng, SimulatorConfig(seed=3), n, float(params.outcome_bias), params.dynamics)
    roll = sim.rollout(rng, tensors, sim.solve_oracle(tensors))
    theirs_alive = roll.rep_acts >= 0
    compared = 0
    for e in range(params.exchanges):
        if alive[:, e].sum() < 400 or theirs_alive[:, e].sum() < 400:
            continue
        a, b = oracle[alive[:, e], e], roll.oracle_after_rep[theirs_alive[:, e], e]
        standard_error = np.sqrt(a.var() / len(a) + b.var() / len(b))  # of the difference (0.005-0.02 here)
        assert abs(a.mean() - b.mean()) < 4 * standard_error, (e, a.mean(), b.mean(), standard_error)
        assert abs(alive[:, e].mean() - theirs_alive[:, e].mean()) < 0.02, e  # still running at e
        compared += 1
    assert compared >= 6

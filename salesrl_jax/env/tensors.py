"""One customer's probabilities in JAX: the profile draw and `salesrl_jax.sim.dynamics.build_tensors`, per customer.

The same formulas as the numpy simulator (tested equal to ``build_tensors`` on the same profiles to float
rounding), for one conversation at a time so that ``reset`` can ``vmap`` over thousands:

    P(I_0)             = softmax_l(-(l - mu_0)^2 / 2 var),  mu_0 = base + need, skepticism, urgency terms
    pi_e(r | c)        ∝ exp(base_r + phase_e,r) exp((fit_base + fit_per_skill skill) FIT[c, r] + (1 - skill) novice_r)
    P(c' | I, r, fit)  = softmax_c'(a_c'(profile) + b(I, r, fit)_c' + o(industry, r)_c')
    P(d | r, fit, c')  = softmax_d(d mu / sigma^2 - d^2 / 2 sigma^2),  mu = mood_c' + fit, pushy terms + o'(industry, r)
    p_end(kind, I')    = sigmoid(bias + intercept + per_interest x + authority, budget, urgency terms)

with the industry offsets ``o``, ``o'`` (`salesrl_jax.sim.dynamics.industry_dynamics`) only where
`SimulatorConfig.industry_dynamics` is set; otherwise the programs carry none.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from salesrl_jax.sim import dynamics as sim
from salesrl_jax.sim.params import DynamicsParams

L, R, C, PREV = sim.LEVELS, sim.R, sim.C, sim.PREV


@struct.dataclass
class Profile:
    """One customer's static latent attributes (scalars in [0, 1]); the industry's two are copied in."""

    need: jnp.ndarray
    budget_fit: jnp.ndarray
    authority: jnp.ndarray
    urgency: jnp.ndarray
    skepticism: jnp.ndarray
    rep_skill: jnp.ndarray
    competition: jnp.ndarray
    price_sensitivity: jnp.ndarray


@struct.dataclass
class CustomerTensors:
    """Every probability of one conversation (`salesrl_jax.sim.dynamics.Tensors` without the batch axis)."""

    init: jnp.ndarray  # [L]
    policy: jnp.ndarray  # [E, PREV, R]  the scripted rep
    customer: jnp.ndarray  # [L, R, 2, C]
    shift: jnp.ndarray  # [R, 2, C, 3]
    end: jnp.ndarray  # [L, 4]  by END_KINDS


@struct.dataclass
class Constants:
    """The profile-independent parts of the tensors, computed once in numpy from `DynamicsParams`."""

    by_phase: jnp.ndarray  # [E, R]  exp(base + phase), the opening zeroed
    fit: jnp.ndarray  # [PREV, R]
    novice: jnp.ndarray  # [R]
    customer_shared: jnp.ndarray  # [L, R, 2, C]  b
    mood: jnp.ndarray  # [C]
    helpful: jnp.ndarray  # [R]
    pushy: jnp.ndarray  # [R]
    industries: jnp.ndarray  # [K, 3]  competition, price sensitivity, authority base
    industry_customer: jnp.ndarray  # [K, R, C]  each industry's offsets to P(c' | I, r, fit)'s logits (zero: shared)
    industry_shift: jnp.ndarray  # [K, R]  ... and to the interest drift mu (`sim.dynamics.industry_dynamics`)
    beta_quantiles: jnp.ndarray  # [6, QUANTILES + 1]  the profile priors' quantile functions, by BETA_PRIORS


BETA_PRIORS = ("need", "budget", "authority", "urgency", "skepticism", "rep_skill")
QUANTILES = 4096


def constants(dyn: DynamicsParams, exchanges: int, pace: float, industries: np.ndarray,
              industry_dynamics: sim.IndustryDynamics | None = None) -> Constants:
    """The numpy simulator's profile-independent tables (the same code paths as ``build_tensors``);
    ``industry_dynamics``: the industries' offsets stacked (``customer [K, R, C]``, ``shift [K, R]``), or None where
    they share the dynamics."""
    rp, cr, sh = dyn.rep, dyn.customer, dyn.shift
    e_idx = np.arange(exchanges)
    phase = np.zeros((exchanges, R))
    r = {name: i for i, name in enumerate(sim.REP_ACTS)}
    c = {name: i for i, name in enumerate(sim.CUSTOMER_ACTS)}
    phase[:, r["discovery_question"]] = rp.discovery_per_exchange * e_idx
    phase[:, r["needs_summary"]] = rp.summary_per_exchange * np.minimum(e_idx, rp.summary_exchanges_cap)
    phase[:, r["pricing"]] = rp.pricing_per_exchange * e_idx
    phase[:, r["close_attempt"]] = rp.close_per_exchange * pace * e_idx
    phase[:, r["next_step"]] = rp.next_step_per_exchange * pace * e_idx
    by_phase = np.exp(sim._by_act(rp.base, sim.REP_ACTS) + phase)
    by_phase[:, r["opening"]] = 0.0

    x = (np.arange(L) - 3.0) / 3.0
    b = np.zeros((L, R, 2, C))
    shared = {"ask_question": cr.ask_question, "small_talk": cr.small_talk,
              "agree": cr.agree + cr.decide_per_pace * (pace - 1), "decline": cr.decline + cr.decide_per_pace * (pace - 1)}
    for act, value in shared.items():
        b[..., c[act]] += value
    for act, value in cr.interest_slopes:
        b[..., c[act]] += value * x[:, None, None]
    act_effect = np.stack([sim._by_act(dict(cr.act_effects).get(rep, ()), sim.CUSTOMER_ACTS) for rep in sim.REP_ACTS])
    b += act_effect[None, :, None, :]
    b[:, :, 0, :] += sim._by_act(cr.misfit, sim.CUSTOMER_ACTS)
    return Constants(
        by_phase=jnp.asarray(by_phase, jnp.float32), fit=jnp.asarray(sim.FIT, jnp.int32),
        novice=jnp.asarray(sim._by_act(rp.novice, sim.REP_ACTS), jnp.float32),
        customer_shared=jnp.asarray(b, jnp.float32),
        mood=jnp.asarray(sim._by_act(sh.mood, sim.CUSTOMER_ACTS), jnp.float32),
        helpful=jnp.asarray(sim._by_act(tuple((a, 1.0) for a in sh.helpful_acts), sim.REP_ACTS), jnp.float32),
        pushy=jnp.asarray(sim._by_act(tuple((a, 1.0) for a in sh.pushy_acts), sim.REP_ACTS), jnp.float32),
        industries=jnp.asarray(industries, jnp.float32),
        industry_customer=jnp.asarray(np.zeros((len(industries), R, C)) if industry_dynamics is None
                                      else industry_dynamics.customer, jnp.float32),
        industry_shift=jnp.asarray(np.zeros((len(industries), R)) if industry_dynamics is None
                                   else industry_dynamics.shift, jnp.float32),
        beta_quantiles=jnp.asarray(beta_quantile_table(dyn), jnp.float32))


def beta_quantile_table(dyn: DynamicsParams) -> np.ndarray:
    """``[6, QUANTILES + 1]``: each profile prior's quantile function at ``k / QUANTILES`` (scipy's exact ppf)."""
    from scipy import stats

    grid = np.linspace(0.0, 1.0, QUANTILES + 1)
    return np.stack([stats.beta.ppf(grid, *getattr(dyn.profile, name)) for name in BETA_PRIORS])


def draw_beta(key: jnp.ndarray, quantiles: jnp.ndarray) -> jnp.ndarray:
    """A Beta draw by inverse CDF: ``F^-1(u)``, linear between the table's ``QUANTILES + 1`` points (the same
    distribution to within one cell, 1/4096 of the mass, of its exact quantile function). JAX's rejection sampler
    (``jax.random.beta``) runs a while loop per draw and made ``reset`` 8x slower than ``step`` under ``vmap``."""
    position = jax.random.uniform(key) * QUANTILES
    low = jnp.minimum(jnp.floor(position).astype(jnp.int32), QUANTILES - 1)
    frac = position - low
    return quantiles[low] + frac * (quantiles[low + 1] - quantiles[low])


def draw_profile(key: jnp.ndarray, industry: jnp.ndarray, const: Constants, dyn: DynamicsParams) -> Profile:
    """One customer from the simulator's priors (`salesrl_jax.sim.dynamics.draw_profiles`: the same
    distributions, JAX's random streams) for industry index ``industry``."""
    pr = dyn.profile
    competition, price_sensitivity, authority_base = const.industries[industry]
    k = jax.random.split(key, 7)
    q = {name: const.beta_quantiles[i] for i, name in enumerate(BETA_PRIORS)}
    budget = (draw_beta(k[0], q["budget"]) * (1.0 - pr.budget_price_cut * price_sensitivity)
              + pr.budget_price_lift * price_sensitivity * jax.random.uniform(k[1]))
    return Profile(
        need=draw_beta(k[2], q["need"]), budget_fit=jnp.clip(budget, 0.0, 1.0),
        authority=jnp.clip(pr.authority_own_weight * draw_beta(k[3], q["authority"])
                           + pr.authority_industry_weight * authority_base, 0.0, 1.0),
        urgency=draw_beta(k[4], q["urgency"]), skepticism=draw_beta(k[5], q["skepticism"]),
        rep_skill=draw_beta(k[6], q["rep_skill"]), competition=competition, price_sensitivity=price_sensitivity)


def initial_interest(p: Profile, dyn: DynamicsParams) -> jnp.ndarray:
    """``P(I_0)`` ``[L]``."""
    ii = dyn.initial_interest
    mu0 = ii.base + ii.per_need * p.need + ii.per_skepticism * p.skepticism + ii.per_urgency * p.urgency
    return jax.nn.softmax(-((jnp.arange(L, dtype=jnp.float32) - mu0) ** 2) / (2.0 * ii.variance))


def rep_policy(p: Profile, const: Constants, dyn: DynamicsParams, exchange: jnp.ndarray, prev: jnp.ndarray
               ) -> jnp.ndarray:
    """The scripted rep's ``pi_e(r | c)`` ``[R]`` at exchange ``e`` after customer act ``c`` (START: the opening)."""
    rp = dyn.rep
    by_rep = jnp.exp((rp.fit_base + rp.fit_per_skill * p.rep_skill) * const.fit[prev] + (1 - p.rep_skill) * const.novice)
    row = const.by_phase[exchange] * by_rep
    row = jnp.where(prev == sim.START, jax.nn.one_hot(sim.REP_ACTS.index("opening"), R), row)
    return row / row.sum()


def customer_own_logits(p: Profile, dyn: DynamicsParams, pace: float) -> jnp.ndarray:
    """The per-customer part ``a`` ``[C]`` of the customer's response logits."""
    c = {name: i for i, name in enumerate(sim.CUSTOMER_ACTS)}
    a = jnp.zeros(C)
    for act, value in sim.customer_terms(dyn.customer, p, pace).items():
        a = a.at[c[act]].set(value)
    return a


def customer_response(own: jnp.ndarray, const: Constants, level: jnp.ndarray, rep: jnp.ndarray, fit: jnp.ndarray,
                      industry: jnp.ndarray | None = None) -> jnp.ndarray:
    """``P(c' | I, r, fit)`` ``[C]`` from the customer's own logits ``own`` (`customer_own_logits`), plus the offsets
    of ``industry`` (an index; None where industries share the dynamics)."""
    logits = own + const.customer_shared[level, rep, fit]
    if industry is not None:
        logits = logits + const.industry_customer[industry, rep]
    return jax.nn.softmax(logits)


def interest_shift(p: Profile, const: Constants, dyn: DynamicsParams, rep: jnp.ndarray, fit: jnp.ndarray,
                   customer: jnp.ndarray, industry: jnp.ndarray | None = None) -> jnp.ndarray:
    """``P(d | r, fit, c')`` ``[3]`` for d in (-1, 0, 1) (``industry`` as in `customer_response`)."""
    sh = dyn.shift
    mu = (const.mood[customer] + fit * const.helpful[rep] * (sh.helpful + sh.helpful_per_skill * p.rep_skill)
          + (1 - fit) * sh.misfit + sh.pushy_per_skepticism * p.skepticism * const.pushy[rep])
    if industry is not None:
        mu = mu + const.industry_shift[industry, rep]
    deltas = jnp.asarray(sim.DELTAS, jnp.float32)
    inv_var = 1.0 / sh.sigma ** 2
    return jax.nn.softmax(deltas * mu * inv_var - 0.5 * deltas ** 2 * inv_var)


def end_odds(p: Profile, dyn: DynamicsParams, outcome_bias: jnp.ndarray, level: jnp.ndarray) -> jnp.ndarray:
    """``p_end(kind, I)`` ``[4]`` (by `END_KINDS`) at interest level ``level``."""
    x = (level - 3.0) / 3.0
    return jax.nn.sigmoid(jnp.stack([sim.outcome_logit(getattr(dyn.outcomes, kind), outcome_bias, x, p)
                                     for kind in sim.END_KINDS]))


def customer_tensors(p: Profile, const: Constants, dyn: DynamicsParams, outcome_bias: jnp.ndarray,
                     pace: float, industry: jnp.ndarray | None = None) -> CustomerTensors:
    """``build_tensors`` for one profile (of ``industry``, as in `customer_response`): every entry of the element
    functions above (which ``step`` evaluates one at a time), tabulated for the exact values
    (`salesrl_jax.env.values`)."""
    exchanges = const.by_phase.shape[0]
    levels, reps, fits = jnp.arange(L), jnp.arange(R), jnp.arange(2)
    own = customer_own_logits(p, dyn, pace)
    policy = jax.vmap(lambda e: jax.vmap(lambda c: rep_policy(p, const, dyn, e, c))(jnp.arange(PREV)))(
        jnp.arange(exchanges))
    logits = own + const.customer_shared
    if industry is not None:
        logits = logits + const.industry_customer[industry][None, :, None, :]
    customer = jax.nn.softmax(logits, axis=-1)
    shift = jax.vmap(lambda r: jax.vmap(lambda f: jax.vmap(
        lambda c: interest_shift(p, const, dyn, r, f, c, industry))(jnp.arange(C)))(fits))(reps)
    end = jax.vmap(lambda level: end_odds(p, dyn, outcome_bias, level.astype(jnp.float32)))(levels)
    return CustomerTensors(init=initial_interest(p, dyn), policy=policy, customer=customer, shift=shift, end=end)

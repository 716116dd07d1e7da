"""Latent-state dynamics of a simulated sales conversation, and its exact oracle.

The model (all per conversation, vectorised over a batch of ``N`` conversations):

* Static latent profile drawn once: need, budget fit, decision authority,
  urgency, skepticism (customer) and skill (rep), all in [0, 1]; with
  ``industry_dynamics`` also the industry's own offsets to the customer's
  answers and the interest drift (`industry_dynamics`; by default the
  industries share every coefficient).
* Dynamic latent state after exchange ``e``: interest level ``I in {0..L-1}``
  and the customer's last act ``c`` (what the rep has observed).
* Exchange ``e`` (rep turn ``2e``, customer turn ``2e+1``):

  - the rep picks an act ``r ~ pi_e(r | c)`` (a scripted, skill-dependent policy);
    ``fit = FIT[c, r]`` says whether the act answers what the customer just did;
  - the customer answers ``c' ~ P(c' | I, r, fit)``;
  - interest moves ``I' = clip(I + d)``, ``d in {-1, 0, 1}``, ``d ~ P(d | r, fit, c')``;
  - ``c'`` in {agree, decline, disengage} ends the conversation, and so does the
    length cap after exchange ``E-1``; the outcome is then Bernoulli with
    ``p_end(kind, I')``, which is never 0 or 1 (deals fall through, refusals
    come back): irreducible noise that no reader of the state can remove.

Because the state is Markov and small, the oracle ``P(sale | latent state)``
is computed exactly by backward induction over exchanges:

    W_{e+1}(I', c') = p_end(kind(c'), I')     if c' terminal or e+1 = E
                    = V_{e+1}(I', c')         otherwise
    H_e(I, r, f)    = sum_{c'} P(c'|I,r,f) sum_d P(d|r,f,c') W_{e+1}(clip(I+d), c')
    V_e(I, c)       = sum_r pi_e(r|c) H_e(I, r, FIT[c, r])

``H_e`` is the oracle just after the rep's turn at exchange ``e``; ``W_{e+1}``
just after the customer's. Sampling uses exactly the same tensors, so the
oracle is the true conditional probability, not an approximation.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from salesrl_jax.sim.params import ActTable, CustomerResponse, DynamicsParams, OutcomeLogits, ProfilePriors

REP_ACTS = (
    "opening", "discovery_question", "needs_summary", "value_pitch", "social_proof", "demo_offer",
    "objection_handling", "pricing", "discount", "close_attempt", "next_step",
)
CUSTOMER_ACTS = (
    "share_need", "ask_question", "objection_price", "objection_timing", "objection_authority",
    "objection_competitor", "buying_signal", "hesitate", "small_talk",
    "agree", "decline", "disengage",
)
# The rep's last turn after the customer ends the call: text only, no dynamics.
WRAP_ACTS = ("wrap_won", "wrap_lost", "wrap_follow_up")
END_KINDS = ("agree", "decline", "disengage", "cap")

R = len(REP_ACTS)
C = len(CUSTOMER_ACTS)
NONTERMINAL = 9  # customer acts [0, 9) continue the conversation
START = NONTERMINAL  # "previous customer act" before the first exchange
PREV = NONTERMINAL + 1
LEVELS = 7  # interest levels 0..6
DELTAS = np.array([-1, 0, 1])

_r = {name: i for i, name in enumerate(REP_ACTS)}
_c = {name: i for i, name in enumerate(CUSTOMER_ACTS)}


def _fit_table() -> np.ndarray:
    """FIT[c_prev, r] = 1 where rep act r is an apt answer to the customer's last act."""
    apt = {
        "share_need": ("discovery_question", "needs_summary", "value_pitch", "demo_offer"),
        "ask_question": ("value_pitch", "demo_offer", "pricing", "social_proof"),
        "objection_price": ("objection_handling", "discount", "value_pitch"),
        "objection_timing": ("objection_handling", "next_step"),
        "objection_authority": ("objection_handling", "next_step", "social_proof"),
        "objection_competitor": ("objection_handling", "social_proof", "demo_offer"),
        "buying_signal": ("close_attempt", "pricing", "next_step"),
        "hesitate": ("discovery_question", "social_proof", "objection_handling", "needs_summary"),
        "small_talk": ("discovery_question", "value_pitch"),
    }
    fit = np.zeros((PREV, R), dtype=np.int64)
    for prev, acts in apt.items():
        for act in acts:
            fit[_c[prev], _r[act]] = 1
    fit[START, _r["opening"]] = 1
    return fit


FIT = _fit_table()


@dataclasses.dataclass(frozen=True)
class Profile:
    """Static latent attributes, each ``[N]`` in [0, 1]."""

    need: np.ndarray
    budget_fit: np.ndarray
    authority: np.ndarray
    urgency: np.ndarray
    skepticism: np.ndarray
    rep_skill: np.ndarray
    competition: np.ndarray  # industry: how often a rival offer is on the table
    price_sensitivity: np.ndarray  # industry

    def as_rows(self) -> list[dict[str, float]]:
        names = ("need", "budget_fit", "authority", "urgency", "skepticism", "rep_skill")
        cols = [np.round(getattr(self, n), 4).tolist() for n in names]
        return [dict(zip(names, vals)) for vals in zip(*cols)]


def draw_profiles(rng: np.random.Generator, competition: np.ndarray, price_sensitivity: np.ndarray,
                  authority_base: np.ndarray, priors: ProfilePriors = ProfilePriors()) -> Profile:
    """Draw ``N`` static profiles; the industry arrays are ``[N]``. The draws' order is part of the bytes."""
    n = competition.shape[0]
    budget = (rng.beta(*priors.budget, n) * (1.0 - priors.budget_price_cut * price_sensitivity)
              + priors.budget_price_lift * price_sensitivity * rng.random(n))
    return Profile(
        need=rng.beta(*priors.need, n),
        budget_fit=np.clip(budget, 0.0, 1.0),
        authority=np.clip(priors.authority_own_weight * rng.beta(*priors.authority, n)
                          + priors.authority_industry_weight * authority_base, 0.0, 1.0),
        urgency=rng.beta(*priors.urgency, n),
        skepticism=rng.beta(*priors.skepticism, n),
        rep_skill=rng.beta(*priors.rep_skill, n),
        competition=competition,
        price_sensitivity=price_sensitivity,
    )


@dataclasses.dataclass(frozen=True)
class IndustryDynamics:
    """How one industry's buyers answer what the rep does, beyond the shared coefficients: offsets to the logit of
    every customer act after every rep act but the opening, and to the drift of interest after each rep act. With
    these, what works differs by industry (in one a demo may win buyers over, in another a discount), so a model
    trained on some industries meets dynamics it never saw in the others, not only new words and another population."""

    customer: np.ndarray  # [R, C] added to logit P(c' | I, r, fit) ([K, R, C] stacked, [N, R, C] per conversation)
    shift: np.ndarray  # [R] added to the interest drift mu after rep act r ([K, R], [N, R])

    def rows(self, index: np.ndarray) -> "IndustryDynamics":
        """Stacked offsets (`stacked_industry_dynamics`) taken at ``index``: each conversation's, by its industry."""
        return IndustryDynamics(customer=self.customer[index], shift=self.shift[index])


def industry_dynamics(name: str, scale: float) -> IndustryDynamics:
    """The offsets of industry ``name``: ``customer ~ N(0, scale^2)``, ``shift ~ N(0, (scale / 2)^2)``, zero for the
    opening, drawn from a generator seeded by the name alone, so that an industry keeps its dynamics across runs,
    seeds and the other industries drawn with it (a held-out test set meets the dynamics its industry always has)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    customer = scale * rng.standard_normal((R, C))
    shift = 0.5 * scale * rng.standard_normal(R)
    customer[_r["opening"]] = 0.0
    shift[_r["opening"]] = 0.0
    return IndustryDynamics(customer=customer, shift=shift)


def stacked_industry_dynamics(names: Sequence[str], scale: float) -> IndustryDynamics | None:
    """The offsets of each industry in ``names``, stacked (``customer [K, R, C]``, ``shift [K, R]``); None at scale 0,
    where the industries share the dynamics."""
    if scale == 0:
        return None
    tables = [industry_dynamics(name, scale) for name in names]
    return IndustryDynamics(customer=np.stack([t.customer for t in tables]), shift=np.stack([t.shift for t in tables]))


@dataclasses.dataclass(frozen=True)
class Tensors:
    """Every probability of the model for a batch: sampling and the oracle share them."""

    init: np.ndarray  # [N, L]            P(I_0)
    policy: np.ndarray  # [N, E, PREV, R]  pi_e(r | c_prev)
    customer: np.ndarray  # [N, L, R, 2, C]  P(c' | I, r, fit)
    shift: np.ndarray  # [N, R, 2, C, 3]    P(d | r, fit, c')
    end: np.ndarray  # [N, L, 4]           p_end(kind, I') for kinds END_KINDS


def _softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _by_act(table: ActTable, acts: tuple[str, ...]) -> np.ndarray:
    """A named table as a vector over ``acts`` (acts it does not name get 0)."""
    index = {name: i for i, name in enumerate(acts)}
    out = np.zeros(len(acts))
    for name, value in table:
        out[index[name]] = value
    return out


def customer_terms(cr: CustomerResponse, p, pace):
    """The per-customer terms of the customer's response logits, by act: arithmetic on ``p``'s attributes, so the
    same code serves the numpy batch here and one JAX customer (`salesrl_jax.env.tensors`)."""
    return {
        "share_need": cr.share_need + cr.share_need_per_need * p.need,
        "objection_price": (cr.price_objection + cr.price_objection_per_budget_gap * (1 - p.budget_fit)
                            + cr.price_objection_per_price_sensitivity * p.price_sensitivity),
        "objection_timing": cr.timing_objection + cr.timing_objection_per_urgency_gap * (1 - p.urgency),
        "objection_authority": cr.authority_objection + cr.authority_objection_per_authority_gap * (1 - p.authority),
        "objection_competitor": cr.competitor_objection + cr.competitor_objection_per_competition * p.competition,
        "buying_signal": cr.buying_signal + cr.buying_signal_per_skill_centred * (p.rep_skill - 0.5),
        "hesitate": cr.hesitate_per_skepticism * p.skepticism,
        "disengage": (cr.disengage + cr.disengage_per_need_gap * (1 - p.need)
                      + cr.disengage_per_skill_centred * (p.rep_skill - 0.5) + cr.disengage_per_pace * (pace - 1)),
    }


def outcome_logit(o: OutcomeLogits, outcome_bias, x, p):
    """``logit p_end`` of one way of ending at interest ``x`` in [-1, 1] (arithmetic, numpy or JAX alike)."""
    return (outcome_bias + o.intercept + o.per_interest * x + o.per_authority * (p.authority - 0.5)
            + o.per_budget * (p.budget_fit - 0.5) + o.per_urgency * (p.urgency - 0.5))


def build_tensors(p: Profile, exchanges: int, outcome_bias: float, pace: float,
                  params: DynamicsParams = DynamicsParams(), industry: IndustryDynamics | None = None) -> Tensors:
    """All transition tables for a batch of profiles.

    Args:
      p: the static profiles (``N`` of them).
      exchanges: the length cap ``E`` in rep/customer exchanges.
      outcome_bias: added to every outcome logit (calibrates the conversion rate).
      pace: > 1 makes reps close sooner and customers decide sooner (shorter calls).
      params: the coefficients (`salesrl_jax.sim.params`); the defaults are the simulator's.
      industry: each conversation's industry offsets (`industry_dynamics`, stacked: ``customer [N, R, C]``,
        ``shift [N, R]``), or None for dynamics shared by every industry (the default simulator).
    """
    n = p.need.shape[0]
    col = lambda a: a[:, None]  # noqa: E731 - [N] -> [N, 1] for broadcasting

    # Initial interest: needy, urgent, trusting customers start warmer.
    ii = params.initial_interest
    mu0 = ii.base + ii.per_need * p.need + ii.per_skepticism * p.skepticism + ii.per_urgency * p.urgency
    levels = np.arange(LEVELS)
    init = _softmax(-((levels[None, :] - col(mu0)) ** 2) / (2.0 * ii.variance))

    # Rep policy: skilled reps answer what they hear; novices pitch, discount, push to close.
    rp = params.rep
    base = _by_act(rp.base, REP_ACTS)
    novice = _by_act(rp.novice, REP_ACTS)
    e_idx = np.arange(exchanges)[:, None]
    phase = np.zeros((exchanges, R))
    phase[:, _r["discovery_question"]] = rp.discovery_per_exchange * e_idx[:, 0]
    phase[:, _r["needs_summary"]] = rp.summary_per_exchange * np.minimum(e_idx[:, 0], rp.summary_exchanges_cap)
    phase[:, _r["pricing"]] = rp.pricing_per_exchange * e_idx[:, 0]
    phase[:, _r["close_attempt"]] = rp.close_per_exchange * pace * e_idx[:, 0]
    phase[:, _r["next_step"]] = rp.next_step_per_exchange * pace * e_idx[:, 0]
    # logits = (base + phase)[e, r] + (fit_base + fit_per_skill skill) FIT[c, r] + (1 - skill) novice[r]
    # is separable, so the softmax is a product of three small exps, normalised.
    by_phase = np.exp(base + phase)  # [E, R]
    by_phase[:, _r["opening"]] = 0.0  # the opening happens once, at the start
    skill = p.rep_skill[:, None, None]
    by_rep = np.exp((rp.fit_base + rp.fit_per_skill * skill) * FIT[None] + (1 - skill) * novice)  # [N, PREV, R]
    policy = (by_phase[None, :, None, :] * by_rep[:, None, :, :]).astype(np.float32)
    policy[:, :, START, :] = 0.0  # START is only ever the state before exchange 0
    policy[:, :, START, _r["opening"]] = 1.0
    policy /= policy.sum(axis=-1, keepdims=True)

    # Customer response to (I, r, fit). The logits split into a per-customer part
    # a[N, C] and a shared part b[L, R, F, C], so the softmax is exp(a) * exp(b)
    # normalised: one exp over [N, C] instead of over [N, L, R, F, C].
    cr = params.customer
    x = (levels - 3.0) / 3.0  # interest in [-1, 1]
    a = np.zeros((n, C))
    b = np.zeros((LEVELS, R, 2, C))
    for act, value in customer_terms(cr, p, pace).items():
        a[:, _c[act]] = value
    shared = {"ask_question": cr.ask_question, "small_talk": cr.small_talk,
              "agree": cr.agree + cr.decide_per_pace * (pace - 1), "decline": cr.decline + cr.decide_per_pace * (pace - 1)}
    for act, value in shared.items():
        b[..., _c[act]] += value
    for act, value in cr.interest_slopes:
        b[..., _c[act]] += value * x[:, None, None]
    act_effect = np.stack([_by_act(dict(cr.act_effects).get(rep, ()), CUSTOMER_ACTS) for rep in REP_ACTS])  # [R, C]
    b += act_effect[None, :, None, :]
    b[:, :, 0, :] += _by_act(cr.misfit, CUSTOMER_ACTS)
    ea = np.exp(a - a.max(axis=1, keepdims=True)).astype(np.float32)
    eb = np.exp(b - b.max()).astype(np.float32)
    customer = ea[:, None, None, None, :] * eb[None]
    if industry is not None:  # per conversation [N, R, C]: one more factor of the softmax
        off = industry.customer
        customer *= np.exp(off - off.max(axis=-1, keepdims=True)).astype(np.float32)[:, None, :, None, :]
    customer /= customer.sum(axis=-1, keepdims=True)

    # Interest shift given (r, fit, c'): the customer's act says where interest went;
    # an apt act from a skilled rep adds to it, a misfire costs. P(d) is a discretised
    # Gaussian around mu: softmax_d(-(d - mu)^2 / 2 sigma^2) = softmax_d(d mu / sigma^2 - d^2 / 2 sigma^2).
    sh = params.shift
    mood = _by_act(sh.mood, CUSTOMER_ACTS)
    helpful = _by_act(tuple((act, 1.0) for act in sh.helpful_acts), REP_ACTS)
    pushy = _by_act(tuple((act, 1.0) for act in sh.pushy_acts), REP_ACTS)
    mu = np.broadcast_to(mood[None, None, None, :], (n, R, 2, C)).copy()
    mu[:, :, 1, :] += helpful[None, :, None] * (sh.helpful + sh.helpful_per_skill * p.rep_skill[:, None, None])
    mu[:, :, 0, :] += sh.misfit
    mu += sh.pushy_per_skepticism * p.skepticism[:, None, None, None] * pushy[None, :, None, None]
    if industry is not None:
        mu += industry.shift[:, :, None, None]
    inv_var = 1.0 / sh.sigma**2
    shift_logits = DELTAS * mu[..., None] * inv_var - 0.5 * DELTAS**2 * inv_var
    shift = _softmax(shift_logits).astype(np.float32)

    xe = np.broadcast_to(x[None, :], (n, LEVELS))  # [N, L]: every kind's logit is per customer

    columns = dataclasses.replace(p, authority=col(p.authority), budget_fit=col(p.budget_fit), urgency=col(p.urgency))
    end = np.stack([outcome_logit(getattr(params.outcomes, kind), outcome_bias, xe, columns) for kind in END_KINDS],
                   axis=-1)
    return Tensors(init=init, policy=policy, customer=customer, shift=shift, end=_sigmoid(end).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Oracle:
    """Exact conversion probabilities for every reachable latent state."""

    after_rep: np.ndarray  # [N, E, L, R, 2]   H_e(I, r, fit)
    after_customer: np.ndarray  # [N, E, L, C]  W_{e+1}(I', c'): after exchange e's customer turn
    prior: np.ndarray  # [N]                    before the conversation starts


def _end_kind(c: np.ndarray | int) -> np.ndarray:
    """Index into END_KINDS for a terminal customer act."""
    return np.asarray(c) - NONTERMINAL


def solve_oracle(t: Tensors) -> Oracle:
    """Backward induction over exchanges (see module docstring).

    ``P(c'|I,r,f) P(d|r,f,c')`` does not depend on the exchange, so it is formed
    once as a ``[N, L, (r f), (c' d)]`` matrix and each step is one batched
    matrix-vector product against ``W_{e+1}(clip(I+d), c')``.
    """
    n, exchanges = t.policy.shape[:2]
    f = 2
    joint = t.customer[..., None] * t.shift[:, None]  # [N, L, R, F, C, D]
    joint = joint.reshape(n, LEVELS, R * f, C * len(DELTAS))
    after_rep = np.empty((n, exchanges, LEVELS, R, f), dtype=t.customer.dtype)
    after_customer = np.empty((n, exchanges, LEVELS, C), dtype=t.customer.dtype)
    terminal = t.end[:, :, :3]  # [N, L', 3] agree/decline/disengage
    shifted = np.clip(np.arange(LEVELS)[:, None] + DELTAS[None, :], 0, LEVELS - 1)  # [L, D]
    value_next = t.end[:, :, 3:4].repeat(NONTERMINAL, axis=2)  # at the cap every state ends
    for e in range(exchanges - 1, -1, -1):
        w = np.concatenate([value_next, terminal], axis=2)  # [N, L', C]
        after_customer[:, e] = w
        w_shift = w[:, shifted, :].transpose(0, 1, 3, 2).reshape(n, LEVELS, C * len(DELTAS), 1)  # [N, L, (C D), 1]
        h = np.matmul(joint, w_shift)[..., 0].reshape(n, LEVELS, R, f)
        after_rep[:, e] = h
        q = h[:, :, np.arange(R)[None, :], FIT]  # [N, L, PREV, R]: Q(I, c_prev, r) = H(I, r, FIT[c_prev, r])
        value = np.einsum("npr,nlpr->nlp", t.policy[:, e], q)  # [N, L, PREV]
        value_next = value[:, :, :NONTERMINAL]
    prior = (t.init * value[:, :, START]).sum(axis=1)
    return Oracle(after_rep=after_rep, after_customer=after_customer, prior=prior)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """Sampled latent trajectories of a batch, padded to ``E`` exchanges."""

    exchanges: np.ndarray  # [N] exchanges played (>= 1)
    rep_acts: np.ndarray  # [N, E]
    customer_acts: np.ndarray  # [N, E]
    interest_before: np.ndarray  # [N, E] I at the rep's turn
    interest_after: np.ndarray  # [N, E] I' after the customer's turn
    oracle_after_rep: np.ndarray  # [N, E]
    oracle_after_customer: np.ndarray  # [N, E]
    end_kind: np.ndarray  # [N] index into END_KINDS
    end_prob: np.ndarray  # [N] p_end of the final state (== last oracle value)
    outcome: np.ndarray  # [N] 0/1


def _sample(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs [N, K]`` by inverse CDF."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=-1), probs.shape[-1] - 1)


def rollout(rng: np.random.Generator, t: Tensors, oracle: Oracle) -> Rollout:
    """Sample trajectories with the same tensors the oracle was solved from."""
    n, exchanges = t.policy.shape[:2]
    rows = np.arange(n)
    level = _sample(rng, t.init)
    prev = np.full(n, START)
    alive = np.ones(n, dtype=bool)
    played = np.zeros(n, dtype=np.int64)
    out = {k: np.zeros((n, exchanges), dtype=np.int64) for k in ("rep", "cust", "before", "after")}
    o_rep = np.zeros((n, exchanges))
    o_cust = np.zeros((n, exchanges))
    end_kind = np.full(n, END_KINDS.index("cap"))
    final_level = level.copy()
    for e in range(exchanges):
        rep = _sample(rng, t.policy[rows, e, prev])
        fit = FIT[prev, rep]
        cust = _sample(rng, t.customer[rows, level, rep, fit])
        d = DELTAS[_sample(rng, t.shift[rows, rep, fit, cust])]
        new_level = np.clip(level + d, 0, LEVELS - 1)
        o_rep[:, e] = np.where(alive, oracle.after_rep[rows, e, level, rep, fit], 0.0)
        o_cust[:, e] = np.where(alive, oracle.after_customer[rows, e, new_level, cust], 0.0)
        for key, value in (("rep", rep), ("cust", cust), ("before", level), ("after", new_level)):
            out[key][:, e] = np.where(alive, value, -1)
        played += alive
        ended = alive & (cust >= NONTERMINAL)
        end_kind = np.where(ended, _end_kind(np.where(ended, cust, NONTERMINAL)), end_kind)
        final_level = np.where(alive, new_level, final_level)
        alive = alive & ~ended
        level, prev = new_level, np.where(cust < NONTERMINAL, cust, prev)
    end_prob = t.end[rows, final_level, end_kind]
    outcome = (rng.random(n) < end_prob).astype(np.int64)
    return Rollout(
        exchanges=played, rep_acts=out["rep"], customer_acts=out["cust"], interest_before=out["before"],
        interest_after=out["after"], oracle_after_rep=o_rep, oracle_after_customer=o_cust,
        end_kind=end_kind, end_prob=end_prob, outcome=outcome,
    )

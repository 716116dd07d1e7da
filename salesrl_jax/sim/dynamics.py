"""Latent-state dynamics of a simulated sales conversation, and its exact oracle.

The model (all per conversation, vectorised over a batch of ``N`` conversations):

* Static latent profile drawn once: need, budget fit, decision authority,
  urgency, skepticism (customer) and skill (rep), all in [0, 1].
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

import numpy as np

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
                  authority_base: np.ndarray) -> Profile:
    """Draw ``N`` static profiles; the industry arrays are ``[N]``."""
    n = competition.shape[0]
    budget = rng.beta(2.4, 1.8, n) * (1.0 - 0.35 * price_sensitivity) + 0.2 * price_sensitivity * rng.random(n)
    return Profile(
        need=rng.beta(2.0, 2.0, n),
        budget_fit=np.clip(budget, 0.0, 1.0),
        authority=np.clip(0.6 * rng.beta(1.6, 1.4, n) + 0.4 * authority_base, 0.0, 1.0),
        urgency=rng.beta(1.5, 2.0, n),
        skepticism=rng.beta(2.0, 2.5, n),
        rep_skill=rng.beta(2.0, 2.0, n),
        competition=competition,
        price_sensitivity=price_sensitivity,
    )


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


def build_tensors(p: Profile, exchanges: int, outcome_bias: float, pace: float) -> Tensors:
    """All transition tables for a batch of profiles.

    Args:
      p: the static profiles (``N`` of them).
      exchanges: the length cap ``E`` in rep/customer exchanges.
      outcome_bias: added to every outcome logit (calibrates the conversion rate).
      pace: > 1 makes reps close sooner and customers decide sooner (shorter calls).
    """
    n = p.need.shape[0]
    col = lambda a: a[:, None]  # noqa: E731 - [N] -> [N, 1] for broadcasting

    # Initial interest: needy, urgent, trusting customers start warmer.
    mu0 = 1.0 + 2.6 * p.need - 0.9 * p.skepticism + 0.8 * p.urgency
    levels = np.arange(LEVELS)
    init = _softmax(-((levels[None, :] - col(mu0)) ** 2) / 2.0)

    # Rep policy: skilled reps answer what they hear; novices pitch, discount, push to close.
    base = np.array([0.0, 0.3, -0.3, 0.3, -0.3, -0.5, -0.8, -0.6, -1.2, -1.0, -1.0])
    novice = np.zeros(R)
    novice[[_r["value_pitch"], _r["discount"], _r["close_attempt"]]] = (0.9, 0.7, 0.7)
    e_idx = np.arange(exchanges)[:, None]
    phase = np.zeros((exchanges, R))
    phase[:, _r["discovery_question"]] = -0.35 * e_idx[:, 0]
    phase[:, _r["needs_summary"]] = 0.1 * np.minimum(e_idx[:, 0], 4)
    phase[:, _r["pricing"]] = 0.12 * e_idx[:, 0]
    phase[:, _r["close_attempt"]] = 0.3 * pace * e_idx[:, 0]
    phase[:, _r["next_step"]] = 0.2 * pace * e_idx[:, 0]
    # logits = (base + phase)[e, r] + (0.5 + 3 skill) FIT[c, r] + (1 - skill) novice[r]
    # is separable, so the softmax is a product of three small exps, normalised.
    by_phase = np.exp(base + phase)  # [E, R]
    by_phase[:, _r["opening"]] = 0.0  # the opening happens once, at the start
    skill = p.rep_skill[:, None, None]
    by_rep = np.exp((0.5 + 3.0 * skill) * FIT[None] + (1 - skill) * novice)  # [N, PREV, R]
    policy = (by_phase[None, :, None, :] * by_rep[:, None, :, :]).astype(np.float32)
    policy[:, :, START, :] = 0.0  # START is only ever the state before exchange 0
    policy[:, :, START, _r["opening"]] = 1.0
    policy /= policy.sum(axis=-1, keepdims=True)

    # Customer response to (I, r, fit). The logits split into a per-customer part
    # a[N, C] and a shared part b[L, R, F, C], so the softmax is exp(a) * exp(b)
    # normalised: one exp over [N, C] instead of over [N, L, R, F, C].
    x = (levels - 3.0) / 3.0  # interest in [-1, 1]
    a = np.zeros((n, C))
    b = np.zeros((LEVELS, R, 2, C))
    cust_terms = {
        "share_need": 0.2 + 0.8 * p.need,
        "objection_price": -0.8 + 2.2 * (1 - p.budget_fit) + 0.6 * p.price_sensitivity,
        "objection_timing": -1.0 + 2.0 * (1 - p.urgency),
        "objection_authority": -1.4 + 2.4 * (1 - p.authority),
        "objection_competitor": -1.4 + 1.8 * p.competition,
        "buying_signal": -0.8 + 0.6 * (p.rep_skill - 0.5),
        "hesitate": 0.8 * p.skepticism,
        "disengage": -0.75 + 0.6 * (1 - p.need) - 0.6 * (p.rep_skill - 0.5) + 0.5 * (pace - 1),
    }
    for act, value in cust_terms.items():
        a[:, _c[act]] = value
    shared = {"ask_question": 0.4, "small_talk": -0.3, "agree": -0.45 + 0.5 * (pace - 1),
              "decline": -0.25 + 0.5 * (pace - 1)}
    for act, value in shared.items():
        b[..., _c[act]] += value
    slope = {"buying_signal": 1.6, "hesitate": -1.0, "agree": 1.8, "decline": -1.6, "disengage": -1.2}
    for act, value in slope.items():
        b[..., _c[act]] += value * x[:, None, None]
    act_effect = np.zeros((R, C))

    def eff(rep: str, **effects: float) -> None:
        for act, value in effects.items():
            act_effect[_r[rep], _c[act]] += value

    eff("opening", small_talk=1.2, share_need=0.3, agree=-3.0, decline=-1.0, buying_signal=-1.0,
        objection_price=-0.5, objection_timing=-0.5, objection_authority=-0.5, objection_competitor=-0.5)
    eff("discovery_question", share_need=1.6, ask_question=-0.3, agree=-2.0)
    eff("needs_summary", buying_signal=0.6, share_need=0.5, agree=-0.5)
    eff("value_pitch", ask_question=0.7, buying_signal=0.3, objection_price=0.3, objection_competitor=0.3)
    eff("social_proof", objection_competitor=-0.8, hesitate=-0.3, buying_signal=0.3)
    eff("demo_offer", buying_signal=0.6, ask_question=0.4, agree=0.3)
    eff("objection_handling", objection_price=-0.6, objection_timing=-0.6, objection_authority=-0.6,
        objection_competitor=-0.6, buying_signal=0.3, hesitate=0.2)
    eff("pricing", objection_price=1.2, ask_question=0.4, agree=0.6, buying_signal=0.3)
    eff("discount", objection_price=-1.0, agree=1.0, buying_signal=0.4)
    eff("close_attempt", agree=2.6, decline=2.0, share_need=-1.0, small_talk=-1.0,
        objection_timing=0.5, objection_authority=0.6)
    eff("next_step", agree=1.8, decline=0.8, objection_timing=0.6)
    b += act_effect[None, :, None, :]
    mismatch = np.zeros(C)
    mismatch[[_c["hesitate"], _c["disengage"], _c["buying_signal"], _c["agree"]]] = (0.6, 0.9, -0.4, -0.4)
    b[:, :, 0, :] += mismatch
    ea = np.exp(a - a.max(axis=1, keepdims=True)).astype(np.float32)
    eb = np.exp(b - b.max()).astype(np.float32)
    customer = ea[:, None, None, None, :] * eb[None]
    customer /= customer.sum(axis=-1, keepdims=True)

    # Interest shift given (r, fit, c'): the customer's act says where interest went;
    # an apt act from a skilled rep adds to it, a misfire costs. P(d) is a discretised
    # Gaussian around mu: softmax_d(-(d - mu)^2 / 2 sigma^2) = softmax_d(d mu / sigma^2 - d^2 / 2 sigma^2).
    mood = np.array([0.35, 0.2, -0.3, -0.2, -0.2, -0.3, 0.6, -0.35, 0.05, 0.5, -0.6, -0.6])
    helpful = np.zeros(R)
    helpful[[_r[a] for a in ("discovery_question", "needs_summary", "value_pitch", "social_proof",
                              "demo_offer", "objection_handling")]] = 1.0
    pushy = np.zeros(R)
    pushy[[_r[a] for a in ("value_pitch", "pricing", "close_attempt")]] = 1.0
    mu = np.broadcast_to(mood[None, None, None, :], (n, R, 2, C)).copy()
    mu[:, :, 1, :] += helpful[None, :, None] * (0.1 + 0.5 * p.rep_skill[:, None, None])
    mu[:, :, 0, :] -= 0.35
    mu -= 0.25 * p.skepticism[:, None, None, None] * pushy[None, :, None, None]
    inv_var = 1.0 / 0.55**2
    shift_logits = DELTAS * mu[..., None] * inv_var - 0.5 * DELTAS**2 * inv_var
    shift = _softmax(shift_logits).astype(np.float32)

    xe = np.broadcast_to(x[None, :], (n, LEVELS))  # [N, L]: every kind's logit is per customer
    end = np.stack([
        outcome_bias + 1.5 + 1.0 * xe + 1.2 * (col(p.authority) - 0.5) + 0.8 * (col(p.budget_fit) - 0.5),
        outcome_bias - 2.4 + 0.8 * xe,
        outcome_bias - 1.8 + 1.0 * xe + 0.8 * (col(p.urgency) - 0.5),
        outcome_bias - 0.4 + 1.6 * xe,
    ], axis=-1)
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

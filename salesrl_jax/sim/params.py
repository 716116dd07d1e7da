"""The simulator's coefficients: every number of the data-generating process, named and documented.

`DynamicsParams` (gymnax's ``EnvParams`` style: frozen, with defaults) groups them by mechanism. Logits
are additive: a term "per X" multiplies the latent attribute X (in [0, 1]) or, where it says "centred",
X - 0.5. Interest ``x`` is the interest level rescaled to [-1, 1]. Every field can be changed alone, so
the data-generating process can be read and ablated field by field, and the defaults reproduce the
simulator's bytes at every seed (tested).
"""

from __future__ import annotations

import dataclasses

ActTable = tuple[tuple[str, float], ...]  # (act name, value) pairs; acts not named get 0


@dataclasses.dataclass(frozen=True)
class ProfilePriors:
    """Beta priors of the static latent profile, drawn once per conversation."""

    need: tuple[float, float] = (2.0, 2.0)
    budget: tuple[float, float] = (2.4, 1.8)
    """Budget fit before the industry's price sensitivity s: ``Beta * (1 - cut s) + lift s U(0, 1)``."""
    budget_price_cut: float = 0.35
    budget_price_lift: float = 0.2
    authority: tuple[float, float] = (1.6, 1.4)
    """Decision authority: ``own Beta + industry authority``, weighted as below."""
    authority_own_weight: float = 0.6
    authority_industry_weight: float = 0.4
    urgency: tuple[float, float] = (1.5, 2.0)
    skepticism: tuple[float, float] = (2.0, 2.5)
    rep_skill: tuple[float, float] = (2.0, 2.0)


@dataclasses.dataclass(frozen=True)
class InitialInterest:
    """P(I_0) = softmax over levels of ``-(level - mu)^2 / (2 variance)``, ``mu = base + per-attribute terms``."""

    base: float = 1.0
    per_need: float = 2.6
    per_skepticism: float = -0.9
    per_urgency: float = 0.8
    variance: float = 1.0


@dataclasses.dataclass(frozen=True)
class RepPolicy:
    """The scripted rep: ``logit(r | e, c) = base[r] + phase(e)[r] + (fit_base + fit_per_skill skill) FIT[c, r]
    + (1 - skill) novice[r]``; the opening is played once, first."""

    base: ActTable = (("opening", 0.0), ("discovery_question", 0.3), ("needs_summary", -0.3), ("value_pitch", 0.3),
                      ("social_proof", -0.3), ("demo_offer", -0.5), ("objection_handling", -0.8), ("pricing", -0.6),
                      ("discount", -1.2), ("close_attempt", -1.0), ("next_step", -1.0))
    novice: ActTable = (("value_pitch", 0.9), ("discount", 0.7), ("close_attempt", 0.7))
    """What unskilled reps over-use: pitch, discount, push to close."""
    discovery_per_exchange: float = -0.35
    summary_per_exchange: float = 0.1
    """... up to exchange ``summary_exchanges_cap``."""
    summary_exchanges_cap: int = 4
    pricing_per_exchange: float = 0.12
    close_per_exchange: float = 0.3
    """Multiplied by the pace: faster reps close sooner."""
    next_step_per_exchange: float = 0.2
    """Multiplied by the pace."""
    fit_base: float = 0.5
    fit_per_skill: float = 3.0


@dataclasses.dataclass(frozen=True)
class CustomerResponse:
    """``P(c' | I, r, fit)`` = softmax of per-customer terms, shared terms, interest slopes, the rep act's
    effects and a misfit penalty."""

    share_need: float = 0.2
    share_need_per_need: float = 0.8
    price_objection: float = -0.8
    price_objection_per_budget_gap: float = 2.2
    """Per (1 - budget fit)."""
    price_objection_per_price_sensitivity: float = 0.6
    timing_objection: float = -1.0
    timing_objection_per_urgency_gap: float = 2.0
    """Per (1 - urgency)."""
    authority_objection: float = -1.4
    authority_objection_per_authority_gap: float = 2.4
    """Per (1 - authority)."""
    competitor_objection: float = -1.4
    competitor_objection_per_competition: float = 1.8
    buying_signal: float = -0.8
    buying_signal_per_skill_centred: float = 0.6
    hesitate_per_skepticism: float = 0.8
    disengage: float = -0.75
    disengage_per_need_gap: float = 0.6
    """Per (1 - need)."""
    disengage_per_skill_centred: float = -0.6
    disengage_per_pace: float = 0.5
    """Per (pace - 1)."""
    ask_question: float = 0.4
    small_talk: float = -0.3
    agree: float = -0.45
    decline: float = -0.25
    decide_per_pace: float = 0.5
    """Added to agree and decline per (pace - 1): faster customers decide sooner."""
    interest_slopes: ActTable = (("buying_signal", 1.6), ("hesitate", -1.0), ("agree", 1.8), ("decline", -1.6),
                                 ("disengage", -1.2))
    """Logit per unit of interest x in [-1, 1]."""
    act_effects: tuple[tuple[str, ActTable], ...] = (
        ("opening", (("small_talk", 1.2), ("share_need", 0.3), ("agree", -3.0), ("decline", -1.0),
                     ("buying_signal", -1.0), ("objection_price", -0.5), ("objection_timing", -0.5),
                     ("objection_authority", -0.5), ("objection_competitor", -0.5))),
        ("discovery_question", (("share_need", 1.6), ("ask_question", -0.3), ("agree", -2.0))),
        ("needs_summary", (("buying_signal", 0.6), ("share_need", 0.5), ("agree", -0.5))),
        ("value_pitch", (("ask_question", 0.7), ("buying_signal", 0.3), ("objection_price", 0.3),
                         ("objection_competitor", 0.3))),
        ("social_proof", (("objection_competitor", -0.8), ("hesitate", -0.3), ("buying_signal", 0.3))),
        ("demo_offer", (("buying_signal", 0.6), ("ask_question", 0.4), ("agree", 0.3))),
        ("objection_handling", (("objection_price", -0.6), ("objection_timing", -0.6), ("objection_authority", -0.6),
                                ("objection_competitor", -0.6), ("buying_signal", 0.3), ("hesitate", 0.2))),
        ("pricing", (("objection_price", 1.2), ("ask_question", 0.4), ("agree", 0.6), ("buying_signal", 0.3))),
        ("discount", (("objection_price", -1.0), ("agree", 1.0), ("buying_signal", 0.4))),
        ("close_attempt", (("agree", 2.6), ("decline", 2.0), ("share_need", -1.0), ("small_talk", -1.0),
                           ("objection_timing", 0.5), ("objection_authority", 0.6))),
        ("next_step", (("agree", 1.8), ("decline", 0.8), ("objection_timing", 0.6))),
    )
    """Logit added to each customer act (inner) after each rep act (outer)."""
    misfit: ActTable = (("hesitate", 0.6), ("disengage", 0.9), ("buying_signal", -0.4), ("agree", -0.4))
    """Added when the rep's act does not answer the customer's last act."""


@dataclasses.dataclass(frozen=True)
class InterestShift:
    """``P(d | r, fit, c')`` for d in {-1, 0, 1}: a Gaussian of width ``sigma`` around ``mu``, discretised."""

    mood: ActTable = (("share_need", 0.35), ("ask_question", 0.2), ("objection_price", -0.3),
                      ("objection_timing", -0.2), ("objection_authority", -0.2), ("objection_competitor", -0.3),
                      ("buying_signal", 0.6), ("hesitate", -0.35), ("small_talk", 0.05), ("agree", 0.5),
                      ("decline", -0.6), ("disengage", -0.6))
    """Where the customer's act says interest went (mu's base)."""
    helpful_acts: tuple[str, ...] = ("discovery_question", "needs_summary", "value_pitch", "social_proof",
                                     "demo_offer", "objection_handling")
    helpful: float = 0.1
    """Added to mu when a helpful act fits, plus ``helpful_per_skill`` skill."""
    helpful_per_skill: float = 0.5
    misfit: float = -0.35
    """Added to mu when the rep's act does not fit."""
    pushy_acts: tuple[str, ...] = ("value_pitch", "pricing", "close_attempt")
    pushy_per_skepticism: float = -0.25
    """Added to mu per skepticism when the act is pushy."""
    sigma: float = 0.55


@dataclasses.dataclass(frozen=True)
class OutcomeLogits:
    """``logit p_end(kind, I') = bias + intercept + per_interest x + per_authority (authority - 0.5)
    + per_budget (budget fit - 0.5) + per_urgency (urgency - 0.5)`` for one way of ending."""

    intercept: float
    per_interest: float
    per_authority: float = 0.0
    per_budget: float = 0.0
    per_urgency: float = 0.0


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """Outcome odds by how the conversation ended; never 0 or 1 (deals fall through, refusals come back).
    The calibrated outcome bias is added to all four."""

    agree: OutcomeLogits = OutcomeLogits(1.5, 1.0, per_authority=1.2, per_budget=0.8)
    decline: OutcomeLogits = OutcomeLogits(-2.4, 0.8)
    disengage: OutcomeLogits = OutcomeLogits(-1.8, 1.0, per_urgency=0.8)
    cap: OutcomeLogits = OutcomeLogits(-0.4, 1.6)
    """The length cap reached without a decision."""


@dataclasses.dataclass(frozen=True)
class DynamicsParams:
    """Every coefficient of the latent dynamics (see `salesrl_jax.sim.dynamics`)."""

    profile: ProfilePriors = ProfilePriors()
    initial_interest: InitialInterest = InitialInterest()
    rep: RepPolicy = RepPolicy()
    customer: CustomerResponse = CustomerResponse()
    shift: InterestShift = InterestShift()
    outcomes: Outcomes = Outcomes()

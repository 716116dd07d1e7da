"""Rep policies for the environment, all of one shape: ``prepare(state, params) -> aux`` once per conversation
(after ``reset``), then ``act(key, state, obs, aux, params) -> action`` per exchange.

* ``scripted``: the simulator's own rep (today's behaviour in the data): ``r ~ pi_e(r | c)``, skill-dependent.
* ``rule``: a fixed table in the incumbent package's style: the customer's last act decides the next act, and
  after ``RULE_CLOSE_AFTER`` exchanges the rep tries to close.
* ``ceiling``: the exact optimal rep given the latent interest (`salesrl_jax.env.values`, ``optimal``): an upper
  bound for any policy that sees only what is said. ``ceiling_acts``: the same without ending the call itself.
* ``learned``: a trained actor-critic (`salesrl_jax.guidance.ppo`) reading its view's observation only; greedy.

A policy that reads a view other than the dialogue acts carries it (``view``, `salesrl_jax.guidance.views`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from salesrl_jax.env.environment import EnvParams, EnvState, sample, tensors_of
from salesrl_jax.env.tensors import rep_policy
from salesrl_jax.env.values import solve
from salesrl_jax.sim import dynamics as sim


class Policy(NamedTuple):
    name: str
    prepare: Callable[[EnvState, EnvParams], Any]
    act: Callable[[jnp.ndarray, EnvState, jnp.ndarray, Any, EnvParams], jnp.ndarray]
    view: Any = None  # what ``obs`` is: None for the dialogue-act view (`ActsView`)


def _none(state: EnvState, params: EnvParams) -> jnp.ndarray:
    return jnp.zeros(())


def scripted() -> Policy:
    def act(key, state, obs, aux, params):
        exchange = jnp.minimum(state.exchange, params.exchanges - 1)
        return sample(key, rep_policy(state.profile, params.const, params.dynamics, exchange, state.prev))

    return Policy("scripted", _none, act)


RULES = {  # the customer's last act -> the rep's next act
    "share_need": "needs_summary", "ask_question": "demo_offer", "objection_price": "discount",
    "objection_timing": "next_step", "objection_authority": "social_proof", "objection_competitor": "social_proof",
    "buying_signal": "close_attempt", "hesitate": "objection_handling", "small_talk": "discovery_question",
}
RULE_CLOSE_AFTER = 6


def rule_table() -> Policy:
    table = [sim.REP_ACTS.index(RULES[c]) for c in sim.CUSTOMER_ACTS[:sim.NONTERMINAL]]
    table.append(sim.REP_ACTS.index("opening"))  # START
    table = jnp.asarray(table, jnp.int32)
    close = sim.REP_ACTS.index("close_attempt")

    def act(key, state, obs, aux, params):
        return jnp.where(state.exchange >= RULE_CLOSE_AFTER, close, table[state.prev])

    return Policy("rule", _none, act)


def ceiling(allow_end: bool = True) -> Policy:
    """Greedy on the exact optimal action values ``Q_e(I, c, a)`` (the time cost of ``params`` included);
    ``allow_end=False``: the best rep who never ends the call itself (``ceiling_acts``)."""
    def prepare(state, params):
        return solve(tensors_of(state, params), params.const.fit, "optimal", params.time_cost, allow_end).q

    def act(key, state, obs, q, params):
        row = q[jnp.minimum(state.exchange, params.exchanges - 1), state.level, state.prev]
        return jnp.argmax(row if allow_end else row[:-1]).astype(jnp.int32)

    return Policy("ceiling" if allow_end else "ceiling_acts", prepare, act)


def learned(apply: Callable[[jnp.ndarray], Any], name: str = "learned", view: Any = None) -> Policy:
    """``apply(obs) -> PolicyOutput``; the most probable action; ``obs`` from ``view``."""
    def act(key, state, obs, aux, params):
        return jnp.argmax(apply(obs).logits).astype(jnp.int32)

    return Policy(name, _none, act, view)

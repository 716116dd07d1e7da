"""The sales conversation as a pure JAX environment in gymnax's shape.

    params = make_params(SimulatorConfig(), time_cost=0.0)       # frozen: coefficients, industries, outcome bias
    obs, state = reset(key, params)                              # a new customer: profile and latent interest
    obs, state, reward, done, info = step(key, state, action, params)

One step is one exchange: the rep's act (``action`` in ``0..R-1``, `REP_ACTS`), then the customer's answer and the
move of the latent interest, drawn from the same tensors as the numpy simulator (`salesrl_jax.sim.dynamics`).
``action == END_CALL`` ends the call without an exchange (the outcome is then drawn as when the customer
disengages: no decision, at the current interest; see `END_CALL_KIND`). The
conversation ends when the customer agrees, declines or disengages, at the length cap, or on ``END_CALL``; its
outcome is Bernoulli with ``p_end(kind, I)``. Reward: the sale (1 or 0) at the end, minus ``time_cost`` per
exchange played (so that shorter calls count when asked). A finished state stays as it is (reward 0).

Every draw is an inverse-CDF of one uniform, so two policies stepped with the same keys meet the same customers
and the same chance (common random numbers for A/B tests).

Observation (`observe`, view "acts"): what a live system sees of the dialogue acts so far, no latent state: the
counts of each rep and customer act so far (divided by the cap), the customer's last act (one-hot, START before
the first exchange) and the exchange index (divided by the cap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from salesrl_jax.env.tensors import (
    Constants,
    CustomerTensors,
    Profile,
    constants,
    customer_own_logits,
    customer_response,
    customer_tensors,
    draw_profile,
    end_odds,
    initial_interest,
    interest_shift,
)
from salesrl_jax.sim import dynamics as sim
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.industries import BY_NAME
from salesrl_jax.sim.params import DynamicsParams

R, C, PREV, L = sim.R, sim.C, sim.PREV, sim.LEVELS
END_CALL = R  # the action that ends the call
NUM_ACTIONS = R + 1
ACTIONS = (*sim.REP_ACTS, "end_call")
CAP_KIND = sim.END_KINDS.index("cap")
# The rep ending the call leaves the customer without a decision, as when they disengage: the sale is then drawn
# with the disengaged customer's odds at the current interest (a follow-up that may or may not land). Not the cap's:
# the cap's odds belong to a call that ran its full length engaged, and would make hanging up at once a winning
# policy (60% of customers converted with no word said, measured, against the scripted rep's 44%).
END_CALL_KIND = sim.END_KINDS.index("disengage")
OBS_DIM = R + C + PREV + 1


@struct.dataclass
class EnvParams:
    """Frozen environment parameters: the simulator's coefficients (static), its industries and calibrated outcome
    bias, and the per-exchange time cost of the reward."""

    const: Constants
    outcome_bias: jnp.ndarray  # [] the numpy simulator's calibration to its target conversion rate
    time_cost: jnp.ndarray  # [] subtracted from the reward per exchange played
    dynamics: DynamicsParams = struct.field(pytree_node=False)
    exchanges: int = struct.field(pytree_node=False)  # the length cap E
    pace: float = struct.field(pytree_node=False)
    industries: tuple[str, ...] = struct.field(pytree_node=False)
    industry_dynamics: float = struct.field(pytree_node=False, default=0.0)  # 0: the industries share the dynamics

    def offsets_index(self, industry: jnp.ndarray) -> jnp.ndarray | None:
        """The index the industry offsets are read by (``industry``), or None where the industries share the
        dynamics (the program then has no offsets in it at all)."""
        return industry if self.industry_dynamics else None


def make_params(sim_config: SimulatorConfig = SimulatorConfig(), dynamics: DynamicsParams = DynamicsParams(),
                time_cost: float = 0.0, outcome_bias: float | None = None) -> EnvParams:
    """The environment of ``sim_config`` (its included industries, length cap, pace; the outcome bias calibrated
    as the numpy simulator calibrates it, unless given)."""
    from salesrl_jax.sim.generate import calibrate_outcome_bias

    if time_cost < 0:
        raise ValueError(f"time_cost must be >= 0, got {time_cost}")
    names = sim_config.included_industries
    table = np.array([(BY_NAME[n].competition, BY_NAME[n].price_sensitivity, BY_NAME[n].authority) for n in names])
    offsets = sim.stacked_industry_dynamics(names, sim_config.industry_dynamics)
    bias = calibrate_outcome_bias(sim_config, params=dynamics) if outcome_bias is None else outcome_bias
    return EnvParams(const=constants(dynamics, sim_config.max_exchanges, sim_config.pace, table, offsets),
                     outcome_bias=jnp.asarray(bias, jnp.float32), time_cost=jnp.asarray(time_cost, jnp.float32),
                     dynamics=dynamics, exchanges=sim_config.max_exchanges, pace=sim_config.pace,
                     industries=tuple(names), industry_dynamics=float(sim_config.industry_dynamics))


@struct.dataclass
class EnvState:
    """One conversation: its customer, the latent interest, what has been said, and how it ended. The customer's
    probabilities are computed from the profile where a step needs them (a few dozen numbers), not carried: a
    state is small, so replacing finished conversations costs little."""

    profile: Profile
    industry: jnp.ndarray  # [] int32 index into params.industries
    level: jnp.ndarray  # [] int32 latent interest 0..L-1 (hidden from the observation)
    prev: jnp.ndarray  # [] int32 the customer's last non-terminal act (START before the first exchange)
    exchange: jnp.ndarray  # [] int32 exchanges played
    rep_counts: jnp.ndarray  # [R] float32
    customer_counts: jnp.ndarray  # [C] float32
    done: jnp.ndarray  # [] bool
    end_kind: jnp.ndarray  # [] int32 index into END_KINDS (-1 while running)
    sale_prob: jnp.ndarray  # [] float32 p_end of the final state (0 while running)
    sale: jnp.ndarray  # [] bool the drawn outcome (False while running)


def sample(key: jnp.ndarray, probs: jnp.ndarray) -> jnp.ndarray:
    """One categorical draw by inverse CDF of one uniform (as `salesrl_jax.sim.dynamics._sample`)."""
    cdf = jnp.cumsum(probs)
    u = jax.random.uniform(key) * cdf[-1]
    return jnp.minimum(jnp.sum(cdf < u), probs.shape[-1] - 1).astype(jnp.int32)


def observe(state: EnvState, params: EnvParams) -> jnp.ndarray:
    """``[OBS_DIM]`` float32: act counts / cap, the last customer act one-hot, the exchange index / cap."""
    cap = float(params.exchanges)
    return jnp.concatenate([state.rep_counts / cap, state.customer_counts / cap, jax.nn.one_hot(state.prev, PREV),
                            (state.exchange / cap)[None]]).astype(jnp.float32)


def reset(key: jnp.ndarray, params: EnvParams) -> tuple[jnp.ndarray, EnvState]:
    """A new customer: industry uniform over ``params.industries``, profile from the simulator's priors, initial
    interest from its ``P(I_0)``."""
    k_industry, k_profile, k_level = jax.random.split(key, 3)
    industry = jax.random.randint(k_industry, (), 0, len(params.industries))
    profile = draw_profile(k_profile, industry, params.const, params.dynamics)
    state = EnvState(profile=profile, industry=industry, level=sample(k_level, initial_interest(profile,
                                                                                                params.dynamics)),
                     prev=jnp.asarray(sim.START, jnp.int32), exchange=jnp.zeros((), jnp.int32),
                     rep_counts=jnp.zeros(R), customer_counts=jnp.zeros(C), done=jnp.zeros((), bool),
                     end_kind=jnp.full((), -1, jnp.int32), sale_prob=jnp.zeros(()), sale=jnp.zeros((), bool))
    return observe(state, params), state


def tensors_of(state: EnvState, params: EnvParams) -> CustomerTensors:
    """Every probability of the state's customer (for exact values: `salesrl_jax.env.values`)."""
    return customer_tensors(state.profile, params.const, params.dynamics, params.outcome_bias, params.pace,
                            params.offsets_index(state.industry))


def step(key: jnp.ndarray, state: EnvState, action: jnp.ndarray, params: EnvParams
         ) -> tuple[jnp.ndarray, EnvState, jnp.ndarray, jnp.ndarray, dict]:
    """One exchange (or the end of the call): ``(obs, state, reward, done, info)``; see the module docstring.
    ``info``: ``sale_prob`` (the final state's sale probability at the end, else 0: an unbiased, lower-variance
    stand-in for the sale), ``customer_act``, ``played`` (whether an exchange was played)."""
    k_customer, k_shift, k_outcome = jax.random.split(key, 3)
    p, const, dyn = state.profile, params.const, params.dynamics
    end_call = action == END_CALL
    rep = jnp.minimum(action, R - 1).astype(jnp.int32)
    fit = const.fit[state.prev, rep]
    own = customer_own_logits(p, dyn, params.pace)
    industry = params.offsets_index(state.industry)
    customer = sample(k_customer, customer_response(own, const, state.level, rep, fit, industry))
    delta = jnp.asarray(sim.DELTAS, jnp.int32)[sample(k_shift, interest_shift(p, const, dyn, rep, fit, customer,
                                                                               industry))]
    terminal = customer >= sim.NONTERMINAL
    capped = state.exchange + 1 >= params.exchanges
    level = jnp.where(end_call, state.level, jnp.clip(state.level + delta, 0, L - 1))
    kind = jnp.where(end_call, END_CALL_KIND,
                     jnp.where(terminal, customer - sim.NONTERMINAL, CAP_KIND)).astype(jnp.int32)
    ends = end_call | terminal | capped
    sale_prob = end_odds(p, dyn, params.outcome_bias, level.astype(jnp.float32))[kind]
    sale = jax.random.uniform(k_outcome) < sale_prob
    played = ~end_call
    new = EnvState(
        profile=p, industry=state.industry, level=level,
        prev=jnp.where(played & ~terminal, customer, state.prev).astype(jnp.int32),
        exchange=state.exchange + played.astype(jnp.int32),
        rep_counts=state.rep_counts + played * jax.nn.one_hot(rep, R),
        customer_counts=state.customer_counts + played * jax.nn.one_hot(customer, C),
        done=ends, end_kind=jnp.where(ends, kind, -1).astype(jnp.int32),
        sale_prob=jnp.where(ends, sale_prob, 0.0), sale=ends & sale)
    reward = jnp.where(ends, new.sale.astype(jnp.float32), 0.0) - params.time_cost * played
    # A finished conversation stays as it is.
    new = jax.tree.map(lambda a, b: jnp.where(state.done, a, b), state, new)
    reward = jnp.where(state.done, 0.0, reward)
    info = {"sale_prob": jnp.where(state.done, 0.0, new.sale_prob), "customer_act": customer,
            "played": played & ~state.done}
    return observe(new, params), new, reward, new.done, info


def replace_finished(done: jnp.ndarray, fresh: EnvState, state: EnvState) -> EnvState:
    """A batch of states ``[N]`` with the finished ones (``done [N]``) replaced by ``fresh`` customers (gymnax's
    auto-reset: ``fresh`` is drawn for every slot and selected where done)."""
    return jax.tree.map(lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b), fresh, state)

"""Whole conversations under a policy, with common random numbers.

Conversation ``i`` of a run with key ``k`` draws everything from ``k_i = fold_in(k, i)``: its customer from
``fold_in(k_i, 0)``, exchange ``e``'s customer answer, interest move and outcome from ``fold_in(k_i, 1 + e)``, the
policy's own randomness from ``fold_in(k_i, 10_000 + e)``, and a policy's view (its text and timing) from
``fold_in(k_i, 20_000 + e)`` (``fold_in(k_i, 30_000)`` before the first exchange). Two policies run with the same
key therefore meet the same customers and the same chance at every exchange: their difference is the policies', not
the draw's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from salesrl_jax.env.environment import EnvParams, reset, step
from salesrl_jax.guidance.policies import Policy
from salesrl_jax.guidance.views import ActsView


class Episodes(NamedTuple):
    """Finished conversations (numpy, ``[N]`` unless said)."""

    sale: np.ndarray  # bool
    sale_prob: np.ndarray  # p_end of the final state: the sale's expectation given how the call ended
    exchanges: np.ndarray  # int
    industry: np.ndarray  # int
    end_kind: np.ndarray  # index into END_KINDS
    rep_counts: np.ndarray  # [N, R]
    customer_counts: np.ndarray  # [N, C]
    ret: np.ndarray  # the reward summed: sale - time cost x exchanges


def _episode(policy: Policy, key: jnp.ndarray, params: EnvParams):
    view = ActsView(params) if policy.view is None else policy.view
    _, state = reset(jax.random.fold_in(key, 0), params)
    obs, view_state = view.reset(jax.random.fold_in(key, 30_000), state)
    aux = policy.prepare(state, params)

    def one(carry, e):
        state, view_state, obs, ret = carry
        action = policy.act(jax.random.fold_in(key, 10_000 + e), state, obs, aux, params)
        _, after, reward, _, info = step(jax.random.fold_in(key, 1 + e), state, action, params)
        obs, view_state = view.step(jax.random.fold_in(key, 20_000 + e), view_state, state, after, action, info)
        return (after, view_state, obs, ret + reward), None

    (state, _, _, ret), _ = jax.lax.scan(one, (state, view_state, obs, jnp.zeros(())),
                                         jnp.arange(params.exchanges))
    return state, ret


def run_episodes(policy: Policy, key: jnp.ndarray, conversations: int, params: EnvParams,
                 batch: int = 8192) -> Episodes:
    """``conversations`` whole conversations under ``policy``, ``batch`` at a time (jitted, vmapped; the last batch
    is padded to the others' size and cut, so that one compiled program serves them all)."""
    industries = getattr(policy.view, "industries", params.industries)
    if industries != params.industries:
        raise ValueError(f"policy {policy.name!r} reads utterances rendered for the industries {industries}, not for "
                         f"this environment's {params.industries}: run it with the simulator settings it was trained "
                         "with")
    size = min(batch, conversations)
    run = jax.jit(jax.vmap(lambda i: _episode(policy, jax.random.fold_in(key, i), params)))
    parts = []
    for start in range(0, conversations, size):
        kept = min(size, conversations - start)
        state, ret = jax.tree.map(lambda x: np.asarray(x)[:kept], run(jnp.arange(start, start + size)))
        if not state.done.all():
            raise AssertionError("a conversation outlived the length cap")  # step ends every call at the cap
        parts.append(Episodes(state.sale, state.sale_prob, state.exchange, state.industry, state.end_kind,
                              state.rep_counts, state.customer_counts, ret))
    return Episodes(*(np.concatenate(cols) for cols in zip(*parts)))

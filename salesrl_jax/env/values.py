"""Exact values by backward induction over exchanges: the scripted rep's (the simulator's oracle prior) and the
optimal rep's (the ceiling of any guidance policy), for one conversation's tensors (vmap over customers).

With ``W_E(I', c') = p_end(cap, I')`` for every non-terminal ``c'`` and ``p_end(kind(c'), I')`` for terminal ones,

    H_e(I, r, f)  = sum_c' P(c' | I, r, f) sum_d P(d | r, f, c') W_{e+1}(clip(I + d), c')
    scripted:  V_e(I, c) = sum_r pi_e(r | c) H_e(I, r, FIT[c, r])                      (`solve_oracle`'s V)
    optimal:   Q_e(I, c, r) = H*_e(I, r, FIT[c, r]) - kappa,   Q_e(I, c, END) = p_end(disengage, I)
               V*_e(I, c) = max_a Q_e(I, c, a)

and ``W_{e+1}(I', c') = V_{e+1}(I', c')`` for non-terminal ``c'`` before the cap. ``kappa`` is the per-exchange
time cost, so ``V*`` is the best expected ``sale - kappa x exchanges`` that a rep who sees the latent interest can
reach: no policy that sees less does better. The prior is ``sum_I P(I_0) V_0(I, START)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from salesrl_jax.env.tensors import CustomerTensors
from salesrl_jax.sim import dynamics as sim

L, R, C, PREV = sim.LEVELS, sim.R, sim.C, sim.PREV
CAP_KIND = sim.END_KINDS.index("cap")
END_CALL_KIND = sim.END_KINDS.index("disengage")  # as `salesrl_jax.env.environment.END_CALL_KIND`


class Values(NamedTuple):
    q: jnp.ndarray  # [E, L, PREV, R + 1]  action values (the rep acts', then END = p_end(disengage))
    prior: jnp.ndarray  # []  expected return before the conversation starts


def _after_rep(t: CustomerTensors, w: jnp.ndarray) -> jnp.ndarray:
    """``H(I, r, f)`` from ``W(I', c') [L, C]``."""
    shifted = jnp.clip(jnp.arange(L)[:, None] + jnp.asarray(sim.DELTAS)[None, :], 0, L - 1)  # [L, D]
    w_shift = w[shifted]  # [L, D, C]: W(clip(I + d), c')
    inner = jnp.einsum("rfcd,ldc->lrfc", t.shift, w_shift)  # sum_d P(d | r, f, c') W(clip(I + d), c')
    return jnp.einsum("lrfc,lrfc->lrf", t.customer, inner)


def solve(t: CustomerTensors, fit: jnp.ndarray, kind: str = "optimal", time_cost: jnp.ndarray | float = 0.0,
          allow_end: bool = True) -> Values:
    """``kind="scripted"``: the scripted rep's values (its prior is the simulator's oracle prior);
    ``"optimal"``: the best rep's (see the module docstring); ``allow_end=False`` leaves ``END`` out of its max
    (a rep who may only choose acts: the conversation then ends as the simulator's do)."""
    exchanges = t.policy.shape[0]
    terminal = t.end[:, :3]  # [L, 3] agree / decline / disengage
    cap = t.end[:, CAP_KIND]  # [L]
    hang_up = t.end[:, END_CALL_KIND]  # [L] the rep's END
    rows = jnp.arange(R)[None, :]

    def back(w_next_nonterminal, e):
        w = jnp.concatenate([w_next_nonterminal, terminal], axis=1)  # [L, C]
        h = _after_rep(t, w)  # [L, R, 2]
        q_rep = h[:, rows, fit] - (time_cost if kind == "optimal" else 0.0)  # [L, PREV, R]
        q = jnp.concatenate([q_rep, jnp.broadcast_to(hang_up[:, None, None], (L, PREV, 1))], axis=-1)
        if kind == "optimal":
            value = q.max(-1) if allow_end else q_rep.max(-1)
        else:
            value = jnp.einsum("pr,lpr->lp", t.policy[e], q_rep)
        return value[:, :sim.NONTERMINAL], (q, value[:, sim.START])

    start = jnp.broadcast_to(cap[:, None], (L, sim.NONTERMINAL))  # at the cap every state ends
    _, (q, v_start) = jax.lax.scan(back, start, jnp.arange(exchanges), reverse=True)
    return Values(q=q, prior=jnp.sum(t.init * v_start[0]))

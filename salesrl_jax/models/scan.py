"""First-order linear recurrences as a parallel scan: ``h_t = a_t h_{t-1} + b_t``.

The composition of two steps ``x -> a1 x + b1`` then ``x -> a2 x + b2`` is ``x -> (a1 a2) x + (a2 b1 + b2)``,
an associative operator, so ``jax.lax.associative_scan`` solves the recurrence in ``O(log T)`` depth.
The encoder's decayed history pools (``a`` = decay, reset to 0 at a conversation start) and PPO's GAE
(``a = gamma lambda (1 - done)``, scanned in reverse) are both this recurrence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compose_affine(earlier: tuple[jnp.ndarray, jnp.ndarray], later: tuple[jnp.ndarray, jnp.ndarray]
                   ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(a1, b1)`` then ``(a2, b2)`` -> ``(a1 a2, a2 b1 + b2)``."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def affine_scan(a: jnp.ndarray, b: jnp.ndarray, *, reverse: bool = False, axis: int = 0
                ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(gain_t, h_t)`` along ``axis`` from ``h_{-1} = 0``: ``h_t = a_t h_{t-1} + b_t`` and
    ``gain_t = a_0 ... a_t`` (what an initial ``h_{-1}`` would be multiplied by). ``a`` broadcasts
    against ``b``; ``reverse`` runs from the last element to the first."""
    return jax.lax.associative_scan(compose_affine, (a, b), reverse=reverse, axis=axis)

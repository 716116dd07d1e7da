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


def affine_scan(a: jnp.ndarray, b: jnp.ndarray, *, reverse: bool = False, axis: int = 0, segments: int = 1
                ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(gain_t, h_t)`` along ``axis`` from ``h_{-1} = 0``: ``h_t = a_t h_{t-1} + b_t`` and
    ``gain_t = a_0 ... a_t`` (what an initial ``h_{-1}`` would be multiplied by). ``a`` broadcasts
    against ``b``; ``reverse`` runs from the last element to the first.

    ``segments > 1``: the axis holds that many equal slices, each its own recurrence from ``h = 0`` (a
    packed minibatch cut into slices of whole conversations, `salesrl_jax.parallel`). Where the slices
    begin a conversation this changes no value; what it changes is the program: the scan runs along a
    new inner axis, so a mesh that shards the slices over devices scans each device's rows locally
    instead of gathering the whole axis."""
    if segments == 1:
        return jax.lax.associative_scan(compose_affine, (a, b), reverse=reverse, axis=axis)
    n = b.shape[axis]
    if n % segments:
        raise ValueError(f"affine_scan: {n} rows do not split into {segments} equal segments")

    def split(x):
        return x.reshape(x.shape[:axis] + (segments, n // segments) + x.shape[axis + 1:])

    gain, h = jax.lax.associative_scan(compose_affine, (split(a), split(b)), reverse=reverse, axis=axis + 1)
    return gain.reshape(gain.shape[:axis] + (n,) + gain.shape[axis + 2:]), h.reshape(b.shape)


def restarting_sums(values: jnp.ndarray, starts: jnp.ndarray, *, segments: int = 1
                    ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(gain_t, h_t)`` of the running sums ``h_t = [not starts_t] h_{t-1} + values_t`` along the first axis of
    ``values [N, ...]`` (a sum per conversation of flat rows, restarting at each ``starts [N]``); ``gain_t`` is 0
    from a row that starts a conversation on and 1 before it (what a carried sum would be multiplied by). The
    `affine_scan` of factors 0 / 1: no long running total is subtracted, so no precision is lost on long arrays."""
    continues = jnp.where(starts, 0.0, 1.0).reshape(starts.shape + (1,) * (values.ndim - 1))
    return affine_scan(continues, values, segments=segments)

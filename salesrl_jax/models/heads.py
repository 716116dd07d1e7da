"""Heads on the encoder state: the policy (a Beta over the conversion probability), the value,
and an ensemble of probability heads whose disagreement is the uncertainty signal."""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

from salesrl_jax.models.layers import Dense, Int8Spec


def beta_policy(logit: jnp.ndarray, concentration: jnp.ndarray) -> distrax.Beta:
    """Beta with mean ``sigmoid(logit)`` and ``alpha + beta = concentration``:
    ``alpha = mu kappa``, ``beta = (1 - mu) kappa``. Its mean is the model's prediction."""
    mean = jax.nn.sigmoid(logit)
    return distrax.Beta(mean * concentration, (1.0 - mean) * concentration)


class PolicyHead(nnx.Module):
    """state ``[..., S]`` -> (mean logit ``[...]``, concentration ``[...]``)."""

    def __init__(self, state_dim: int, min_concentration: float, *, rngs: nnx.Rngs):
        self.min_concentration = min_concentration
        self.linear = Dense(state_dim, 2, rngs=rngs)

    def __call__(self, state: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        raw = self.linear(state)
        # Start concentrated around the mean (softplus(raw) + min ~ 2 + 0.7 at init), learn from there.
        return raw[..., 0], self.min_concentration + jax.nn.softplus(raw[..., 1] + 3.0) * 10.0


class MLPHead(nnx.Module):
    """state ``[..., S]`` -> scalar ``[...]`` through one hidden layer."""

    def __init__(self, state_dim: int, hidden: int, *, rngs: nnx.Rngs, quantized: Int8Spec | None = None):
        self.hidden = Dense(state_dim, hidden, rngs=rngs, quantized=quantized)
        self.out = Dense(hidden, 1, rngs=rngs)

    def __call__(self, state: jnp.ndarray, state_q: jnp.ndarray | None = None) -> jnp.ndarray:
        """``state_q``: the state already quantized with this head's input scale (int8 form, calibrated)."""
        hidden = self.hidden(state) if state_q is None else self.hidden.apply_quantized(state_q)
        return self.out(jax.nn.gelu(hidden))[..., 0]


class EnsembleHeads(nnx.Module):
    """``K`` independent `MLPHead` logit heads with stacked parameters, built with ``nnx.vmap``."""

    def __init__(self, state_dim: int, hidden: int, size: int, *, rngs: nnx.Rngs, quantized: Int8Spec | None = None):
        self.size = size

        @nnx.split_rngs(splits=size)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs: nnx.Rngs) -> MLPHead:
            return MLPHead(state_dim, hidden, rngs=rngs, quantized=quantized)

        self.heads = create(rngs)

    def __call__(self, state: jnp.ndarray, state_q: jnp.ndarray | None = None) -> jnp.ndarray:
        """Logits ``[K, ...]``; ``state_q`` as in `MLPHead` (one quantized state shared by every head)."""
        # Applied with jax.vmap over the stacked parameters (split / merge), which also works
        # inside lax.scan bodies, where NNX transforms of captured modules are not allowed.
        graphdef, params = nnx.split(self.heads)
        return jax.vmap(lambda p: nnx.merge(graphdef, p)(state, state_q))(params)

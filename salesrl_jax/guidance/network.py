"""The guidance actor-critic: two tanh MLPs over the observation, a categorical over the rep's next acts."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


class ActorCritic(nnx.Module):
    """``(logits [..., actions], value [...])`` from ``obs [..., obs_dim]``; orthogonal initialisation with a small
    policy head (the usual PPO practice: a near-uniform first policy)."""

    def __init__(self, obs_dim: int, actions: int, hidden: int, *, rngs: nnx.Rngs):
        ortho = nnx.initializers.orthogonal
        dense = lambda i, o, scale: nnx.Linear(i, o, kernel_init=ortho(scale), rngs=rngs)  # noqa: E731
        self.actor_in, self.actor_hidden = dense(obs_dim, hidden, 2 ** 0.5), dense(hidden, hidden, 2 ** 0.5)
        self.actor_out = dense(hidden, actions, 0.01)
        self.critic_in, self.critic_hidden = dense(obs_dim, hidden, 2 ** 0.5), dense(hidden, hidden, 2 ** 0.5)
        self.critic_out = dense(hidden, 1, 1.0)

    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        a = jnp.tanh(self.actor_hidden(jnp.tanh(self.actor_in(obs))))
        v = jnp.tanh(self.critic_hidden(jnp.tanh(self.critic_in(obs))))
        return self.actor_out(a), self.critic_out(v)[..., 0]

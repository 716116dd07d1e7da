"""The guidance actor-critic: two tanh MLPs over the observation, a categorical over the rep's next acts, a state
value, and action values.

The critic's trunk feeds two heads: the state value ``V(s)`` (GAE's baseline) and the action values ``Q(s, a)``
for every act, regressed on the lambda-return of the act taken (`salesrl_jax.guidance.ppo`). With the expected
sale as the reward and no time cost, ``Q(s, a)`` estimates the conversion probability if the rep plays ``a`` now
and follows the policy afterwards: the per-candidate estimate guidance shows at inference.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from flax import nnx


class PolicyOutput(NamedTuple):
    logits: jnp.ndarray  # [..., actions]
    value: jnp.ndarray  # [...]
    q: jnp.ndarray  # [..., actions]


class ActorCritic(nnx.Module):
    """`PolicyOutput` from ``obs [..., obs_dim]``; orthogonal initialisation with a small policy head (the usual PPO
    practice: a near-uniform first policy)."""

    def __init__(self, obs_dim: int, actions: int, hidden: int, *, rngs: nnx.Rngs, normalize: bool = False):
        ortho = nnx.initializers.orthogonal
        # An encoder state is wide, offset and unevenly scaled: a LayerNorm in front keeps the tanh units from
        # saturating at the start (the acts view is already in [0, 1] and needs none).
        self.norm = nnx.LayerNorm(obs_dim, rngs=rngs) if normalize else None
        dense = lambda i, o, scale: nnx.Linear(i, o, kernel_init=ortho(scale), rngs=rngs)  # noqa: E731
        self.actor_in, self.actor_hidden = dense(obs_dim, hidden, 2 ** 0.5), dense(hidden, hidden, 2 ** 0.5)
        self.actor_out = dense(hidden, actions, 0.01)
        self.critic_in, self.critic_hidden = dense(obs_dim, hidden, 2 ** 0.5), dense(hidden, hidden, 2 ** 0.5)
        self.critic_out = dense(hidden, 1, 1.0)
        self.q_out = dense(hidden, actions, 1.0)

    def __call__(self, obs: jnp.ndarray) -> PolicyOutput:
        if self.norm is not None:
            obs = self.norm(obs)
        a = jnp.tanh(self.actor_hidden(jnp.tanh(self.actor_in(obs))))
        v = jnp.tanh(self.critic_hidden(jnp.tanh(self.critic_in(obs))))
        return PolicyOutput(self.actor_out(a), self.critic_out(v)[..., 0], self.q_out(v))

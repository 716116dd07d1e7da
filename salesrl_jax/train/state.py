"""The training state as one named pytree, and the optimizers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    """Everything a jitted update reads and writes (the graph definition stays outside, static)."""

    params: nnx.State  # the agent's parameters
    opt_state: optax.OptState
    step: jnp.ndarray  # [] int32 optimizer steps taken in this phase
    key: jnp.ndarray  # [2] uint32 PRNG key (raw, so checkpoints hold a plain array)


def adamw_schedule(learning_rate: float, total_steps: int, weight_decay: float, max_grad_norm: float):
    """Clipped AdamW with a 5% linear warm-up and cosine decay to 5% of the peak."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(total_steps // 20, 1),
                                                  max(total_steps, 2), learning_rate * 0.05)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adamw(schedule, weight_decay=weight_decay))


def adam_linear(learning_rate: float, total_steps: int, max_grad_norm: float):
    """Clipped Adam with a linear decay to zero (the PPO default of the PPO paper and CleanRL)."""
    schedule = optax.linear_schedule(learning_rate, 0.0, max(total_steps, 1))
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(schedule, eps=1e-5))


def init_state(params: nnx.State, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32),
                      jax.random.PRNGKey(seed))

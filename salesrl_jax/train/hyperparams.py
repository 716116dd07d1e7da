"""Numeric hyperparameters as a pytree of arrays: one compiled update serves every setting (and vmaps)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from salesrl_jax.run.config import TrainConfig


@struct.dataclass
class Hyperparams:
    """The numeric hyperparameters the jitted losses read, as arrays (vmappable for sweeps)."""

    ensemble_weight: jnp.ndarray
    clip_eps: jnp.ndarray
    value_coef: jnp.ndarray
    entropy_coef: jnp.ndarray
    gamma: jnp.ndarray
    gae_lambda: jnp.ndarray
    input_dropout: jnp.ndarray  # share of turn-embedding entries zeroed in supervised training (0: none)
    last_turn_share: jnp.ndarray  # share of the supervised loss on conversations' last turns (0: every turn alike)
    text_dropout: jnp.ndarray  # share of conversations read without their text in supervised training (0: none)
    ema_decay: jnp.ndarray  # the parameters' running average's decay in supervised training (0: the parameters)

    @classmethod
    def pretrain(cls, config: TrainConfig) -> "Hyperparams":
        p = config.ppo
        return cls(*(jnp.asarray(v, jnp.float32) for v in (
            config.pretrain.ensemble_weight, p.clip_eps, p.value_coef, p.entropy_coef, p.gamma, p.gae_lambda,
            config.pretrain.input_dropout, config.pretrain.last_turn_share, config.pretrain.text_dropout,
            config.pretrain.ema_decay)))

    @classmethod
    def ppo(cls, config: TrainConfig) -> "Hyperparams":
        p = config.ppo
        return cls(*(jnp.asarray(v, jnp.float32) for v in (
            p.ensemble_weight, p.clip_eps, p.value_coef, p.entropy_coef, p.gamma, p.gae_lambda, 0.0, 0.0, 0.0, 0.0)))

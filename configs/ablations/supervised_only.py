"""Ablation: supervised pretraining only, no PPO."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"ppo.enabled": False})

"""Ablation: PPO from scratch, no supervised pretraining (the encoder learns from the reward alone)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"pretrain.enabled": False, "ppo.updates": 400})

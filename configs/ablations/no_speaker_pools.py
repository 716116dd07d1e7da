"""Ablation: one history pool over all turns (no separate customer pool)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.speaker_pools": False})

"""Ablation: no ensemble heads (no uncertainty signal)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.ensemble_size": 0})

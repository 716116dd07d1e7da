"""Ablation: the state sees only the current turn (no history pools)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.history": 'none'})

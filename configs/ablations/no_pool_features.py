"""Ablation: the history pools average the turns' text vectors alone, not their turn-level features (the model before
session 20: after a rep's turn only the pools remember what the customer's last turn was like)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.pool_features": False})

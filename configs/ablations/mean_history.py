"""Ablation: history as a plain running mean (no recency weighting, no learned importance)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.history": 'mean'})

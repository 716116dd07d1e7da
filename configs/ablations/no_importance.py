"""Ablation: recency-weighted history without the learned importance scores."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.learned_importance": False})

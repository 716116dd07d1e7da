"""Ablation: text embeddings only: no turn, engagement, position or speaker features."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.use_features": False, "model.use_engagement": False, "model.use_position": False})

"""Ablation: no turn features (speaking time, questions, sentiment, cues)."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.use_features": False})

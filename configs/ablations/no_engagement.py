"""Ablation: no customer-engagement features."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.use_engagement": False})

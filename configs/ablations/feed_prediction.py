"""Ablation: the previous prediction feeds into the state."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.feed_prediction": True})

"""Ablation: no text at all (the paper's "minus embeddings"): the turn vector is projected from the turn features."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"model.use_text": False})

"""Flax NNX modules: state encoder, policy / value / ensemble heads, the agent that joins them.

Imports are lazy so that reading a config (``salesrl_jax.models.config``) does not load JAX.
"""

import importlib

_EXPORTS = {
    "AgentOutput": "salesrl_jax.models.agent", "SalesAgent": "salesrl_jax.models.agent",
    "previous_predictions": "salesrl_jax.models.agent", "ModelConfig": "salesrl_jax.models.config",
    "EncoderCarry": "salesrl_jax.models.encoder", "StateEncoder": "salesrl_jax.models.encoder",
    "TurnInputs": "salesrl_jax.models.inputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'salesrl_jax.models' has no attribute {name!r}")

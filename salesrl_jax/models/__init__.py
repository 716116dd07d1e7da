"""Flax NNX modules: state encoder, policy / value / ensemble heads, the agent that joins them.

Imports are lazy so that reading a config (``salesrl_jax.models.config``) does not load JAX.
"""

from salesrl_jax._lazy import lazy_exports

_EXPORTS = {
    "AgentOutput": "salesrl_jax.models.agent", "SalesAgent": "salesrl_jax.models.agent",
    "previous_predictions": "salesrl_jax.models.agent", "ModelConfig": "salesrl_jax.models.config",
    "EncoderCarry": "salesrl_jax.models.encoder", "StateEncoder": "salesrl_jax.models.encoder",
    "TurnInputs": "salesrl_jax.models.inputs",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

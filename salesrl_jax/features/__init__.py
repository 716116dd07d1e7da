"""Per-turn numbers a model reads beside the text embedding (the paper's turn features)."""

from salesrl_jax.features.turn_features import FEATURE_NAMES, FeatureState, conversation_features, step

__all__ = ["FEATURE_NAMES", "FeatureState", "conversation_features", "step"]

"""salesrl-jax: real-time, turn-by-turn sales-conversion prediction in JAX.

The public API, loaded lazily so that ``import salesrl_jax`` (and ``salesrl --help``) stays fast:

- data: `Conversation`, `Turn`, `read_conversations`, `write_conversations`
- embeddings and arrays: `EmbedderConfig`, `TurnArrays`, `embed_archive`
- model and training: `ModelConfig`, `SalesAgent`, `TrainConfig`, `load_config`, `with_overrides`,
  `train_and_evaluate`, `TrainedModel`
- inference: `Scorer`, `score_archive`, `quantize_model`, `quantize_params`
- evaluation: `evaluate_model`, `recalibrate_model`, `fit_platt`, `recalibrated_params`, `fit_confidence`
- pipelines: `run_demo`

docs/architecture.md shows how the packages depend on each other.
"""

from salesrl_jax._lazy import lazy_exports

_EXPORTS = {
    "Conversation": "salesrl_jax.data.records", "Turn": "salesrl_jax.data.records",
    "read_conversations": "salesrl_jax.data.readers", "write_conversations": "salesrl_jax.data.writers",
    "EmbedderConfig": "salesrl_jax.embed.config", "TurnArrays": "salesrl_jax.arrays.store",
    "embed_archive": "salesrl_jax.arrays.build", "ModelConfig": "salesrl_jax.models.config",
    "SalesAgent": "salesrl_jax.models.agent", "TrainConfig": "salesrl_jax.run.config",
    "load_config": "salesrl_jax.run.config", "train_and_evaluate": "salesrl_jax.train.loop",
    "Scorer": "salesrl_jax.infer.scorer", "score_archive": "salesrl_jax.infer.archive",
    "quantize_params": "salesrl_jax.infer.quantize",
    "fit_platt": "salesrl_jax.run.recalibration", "recalibrated_params": "salesrl_jax.run.recalibration",
    "fit_confidence": "salesrl_jax.eval.confidence_fit",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

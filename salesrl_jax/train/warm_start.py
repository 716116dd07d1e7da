"""Warm start: a run whose parameters start from another trained run's, for example supervised training on
simulator conversations before fine-tuning on a small set of real ones (`TrainConfig.init_from`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.bag import Statistic
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.run.checkpoints import find_checkpoint
from salesrl_jax.run.trained_model import TrainedModel

# How the bag starts and whether it trains: neither changes the parameters' structure, and a warm start takes the
# source's kernel whatever its own start would have been.
TRAINING_ONLY_FIELDS = ("bag_basis", "bag_trainable")


def model_difference(a: ModelConfig, b: ModelConfig) -> list[str]:
    """The model fields in which ``a`` and ``b`` differ (empty: one parameter structure)."""
    return [f.name for f in dataclasses.fields(a)
            if f.name not in TRAINING_ONLY_FIELDS and getattr(a, f.name) != getattr(b, f.name)]


class WarmStart(NamedTuple):
    params: list[nnx.State]  # the new runs' initial parameters
    source: dict  # what started them: {"path", "params_sha256"} of the source checkpoint (saved in each run's meta)


def warm_start_params(fresh: list[nnx.State], source: str | Path, arrays: TurnArrays, model: ModelConfig
                      ) -> WarmStart:
    """``fresh`` (new runs' initial parameters, one per seed trained together, their statistics already fitted),
    each with every trainable parameter taken from the best checkpoint of the trained run at ``source`` (read once).

    Fitted statistics (`salesrl_jax.models.bag.Statistic`: the n-gram idf, the wide term's weights and gain) keep
    this run's values: they describe this run's training split, not the source's. The source must have this run's
    model structure, embedding space and turn features; anything else is refused with the difference named (a
    parameter from another space would be silently meaningless)."""
    trained = TrainedModel(find_checkpoint(source, served=False))  # a run's best as training left it, not recalibrated
    trained.require_compatible(arrays.identity, arrays.feature_names, what=f"{arrays.path} (training data)")
    differ = model_difference(trained.config.model, model)
    if differ:
        raise ValueError(f"init_from {source}: its model differs from this run's in "
                         f"{', '.join('model.' + d for d in differ)} (a warm start needs one parameter structure): use "
                         "the source run's model settings")

    def take(new: nnx.Variable, old: nnx.Variable) -> nnx.Variable:
        if isinstance(new, Statistic):
            return new
        if new.value.shape != old.value.shape:  # the model config matched, so this would be a library bug
            raise ValueError(f"init_from {source}: a parameter of shape {old.value.shape} where this run has "
                             f"{new.value.shape}")
        return new.replace(jnp.asarray(old.value, new.value.dtype))

    params = [jax.tree.map(take, start, trained.params, is_leaf=lambda x: isinstance(x, nnx.Variable))
              for start in fresh]
    # The path alone is not provenance (the source may be retrained in place): its parameters' digest is.
    return WarmStart(params, {"path": str(trained.directory), "params_sha256": trained.params_digest})

"""The trained-model artefact: what `salesrl train` leaves and every consumer (evaluation, scoring,
quantization, calibration) loads. It lives below both training and inference, so neither imports
the other.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from salesrl_jax.embed.base import EmbedderIdentity
from salesrl_jax.embed.ngrams import is_sparse
from salesrl_jax.io.digest import tree_digest
from salesrl_jax.io.recorded_path import recorded_path
from salesrl_jax.models.agent import create_agent
from salesrl_jax.run.checkpoints import (
    PARAMS_DIGEST,
    CheckpointReadError,
    find_checkpoint,
    read_meta,
    restore_params,
)
from salesrl_jax.run.confidence_store import StaleConfidence, confidence_directory, load_confidence
from salesrl_jax.run.config import TrainConfig, config_from_dict


def _restore(directory: Path, like, digest: str | None):
    """`restore_params`; runs saved before a wide-term statistic existed are restored without it and given the value
    that serves what they served: a run of session 17 has no ``wide_map`` (the identity map adds the plain running
    mean), and runs of sessions 17-19 have no ``wide_customer`` (zeros: one weight per gram for every speaker)."""
    import jax
    import jax.numpy as jnp

    from salesrl_jax.models.bag import IDENTITY_WIDE_MAP, Statistic

    try:
        return restore_params(directory, like, digest)
    except CheckpointReadError as err:
        project = like["encoder"].get("project") if "encoder" in like else None
        if project is None or "wide" not in project:
            raise
        error = err
    defaults = {"wide_map": jnp.asarray(IDENTITY_WIDE_MAP, jnp.float32),
                "wide_customer": jnp.zeros(project["wide"].shape, jnp.float32)}
    # Orbax's mismatch message does not reliably name the missing leaf: try the layouts older runs saved, newest first.
    for absent in (("wide_customer",), ("wide_map", "wide_customer")):
        older = jax.tree.map(lambda x: x, like)
        for name in absent:
            del older["encoder"]["project"][name]
        try:
            params = restore_params(directory, older, digest)
        except CheckpointReadError:
            continue
        for name in absent:
            params["encoder"]["project"][name] = Statistic(defaults[name])
        return params
    raise error


class TrainedModel:
    """A trained agent ready for inference: graph, parameters, resolved config, and what it was trained on."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.meta = read_meta(directory)
        saved = self.meta["config"]
        # Saved before the field existed: a model without it (a random, trained bag, as every bag was then).
        for field, before in (("wide_text", False), ("pool_features", False), ("bag_basis", "random"),
                              ("bag_trainable", True)):
            if field not in saved.get("model", {}):
                saved = {**saved, "model": {**saved.get("model", {}), field: before}}
        self.config: TrainConfig = config_from_dict(saved)
        self.identity = EmbedderIdentity(**self.meta["embedder"])
        self.feature_names = tuple(self.meta["features"])
        self.graphdef, like = create_agent(self.config.model, int(self.meta["embed_dim"]), self.config.seed,
                                           sparse_text=self.sparse_text, abstract=True)
        self.params = _restore(directory, like, self.meta.get(PARAMS_DIGEST))
        self._confidence: tuple | None = None

    @property
    def confidence(self):
        """The fitted `ConfidenceParams` beside this model (`salesrl_jax.run.confidence_store`), or None when the
        model has none (or a stale one, fitted for other parameters: said, not silent). A fit from another
        embedding space is refused."""
        if self._confidence is None:
            directory = confidence_directory(self.directory)
            params = None
            if (directory / "meta.json").exists():
                try:
                    params, _ = load_confidence(directory, self.identity, self.params_digest)
                except StaleConfidence as err:
                    warnings.warn(f"{err}; scoring without confidence", stacklevel=2)
            self._confidence = (params,)
        return self._confidence[0]

    @property
    def training_data(self) -> Path:
        """The run's training arrays (``data.train``), recorded as `salesrl train` was given them: a relative path is
        read from this directory, then from each folder above the model (`salesrl_jax.io.recorded_path`)."""
        return recorded_path(self.config.data.train, self.directory)

    @property
    def sparse_text(self) -> bool:
        """Whether the model reads sparse n-gram bags (its own embedding bag and idf) instead of dense embeddings."""
        return is_sparse(self.identity)

    @property
    def params_digest(self) -> str:
        """SHA-256 of the float parameters (checked against the one recorded at save time when loaded)."""
        return self.meta.get(PARAMS_DIGEST) or tree_digest(self.params)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TrainedModel":
        return cls(find_checkpoint(path))

    def require_split(self, split: str) -> None:
        """Refuse ``split="valid"`` for a model that held no validation split out (``data.valid_fraction`` 0): every
        conversation of its training arrays is in-sample."""
        if split == "valid" and self.config.data.valid_fraction <= 0:
            raise ValueError(f"the model at {self.directory} held out no validation split (data.valid_fraction 0): "
                             "pass --data ARRAYS of conversations it never trained on, with --split all")

    def require_compatible(self, identity, feature_names, what: str) -> None:
        """Refuse data from another embedding space or feature set, with a clear message."""
        identity.require_same(self.identity, what=f"the model at {self.directory}")
        if tuple(feature_names) != self.feature_names:
            raise ValueError(f"{what} has features {list(feature_names)}, but the model at {self.directory} was "
                             f"trained on {list(self.feature_names)}; re-embed with this library version or retrain")

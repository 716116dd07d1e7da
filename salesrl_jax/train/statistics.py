"""Statistics a model fits from its training split before any gradient step (the n-gram bag's idf), never from
validation or test conversations."""

from __future__ import annotations

import numpy as np
from flax import nnx

from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.bag import document_frequency, smooth_idf


def training_idf(arrays: TurnArrays, valid_fraction: float, split_seed: int) -> np.ndarray:
    """The smooth idf ``[buckets]`` of sparse n-gram arrays over their training split (`smooth_idf`), part by part
    (bounded RAM)."""
    df = np.zeros(arrays.dim, np.int64)
    conversations = 0
    for part in arrays.iter_parts():
        chosen = split_conversations(part, "train", valid_fraction, split_seed)
        if not len(chosen):
            continue
        offsets = np.asarray(part.offsets)
        rows = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in chosen])
        df += document_frequency(np.asarray(part.gram_ids)[rows], np.repeat(chosen, offsets[chosen + 1] - offsets[chosen]),
                                 arrays.dim)
        conversations += len(chosen)
    return smooth_idf(df, conversations)


def fit_statistics(graphdef: nnx.GraphDef, params: nnx.State, arrays: TurnArrays, valid_fraction: float,
                   split_seed: int) -> nnx.State:
    """``params`` with every fitted statistic set from the training split of ``arrays`` (unchanged for dense text)."""
    agent = nnx.merge(graphdef, params)
    if not arrays.sparse or not hasattr(agent.encoder.project, "idf"):  # dense text, or a features-only model
        return params
    agent.encoder.project.idf.value = training_idf(arrays, valid_fraction, split_seed)
    return nnx.split(agent)[1]

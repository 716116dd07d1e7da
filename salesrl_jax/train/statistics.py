"""Statistics a model fits before any gradient step: the n-gram bag's idf from its training split, and the wide term's
weights and gain from every labelled conversation, cross-fitted so that no validation turn is read with weights
fitted on its own conversation (`salesrl_jax.train.wide_fit`); never from test conversations."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.bag import document_frequency, smooth_idf
from salesrl_jax.models.predict import HOLDOUT


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


class FittedStatistics(NamedTuple):
    params: list[nnx.State]  # the members' initial parameters, statistics set
    report: dict  # what a run records of the fits in its checkpoint meta (empty when nothing was fitted)
    offsets: dict | None = None  # the wide term's out-of-fold logit of each training turn (`WideFit.offsets`)


def fit_statistics(graphdef: nnx.GraphDef, members: list[nnx.State], arrays: TurnArrays, valid_fraction: float,
                   split_seed: int) -> FittedStatistics:
    """Each of ``members`` (the initial parameters of runs trained together) with every fitted statistic set from
    ``arrays``: the n-gram bag's idf (training split), with `ModelConfig.bag_basis` lsa its kernel's starting basis
    (`salesrl_jax.train.bag_basis`: training split), and with `ModelConfig.wide_text` the wide term's weights
    (`salesrl_jax.train.wide_fit`: every labelled conversation, cross-fitted). Fitted once: they do not depend on
    the seed. Unchanged for dense text.
    The report holds the wide term's strength, cross-validated log loss per strength tried and gain (``wide_fit``), or
    why none was fitted (``wide_fit.skipped``: the run then adds no wide term), and the validation turns' cross-fitting
    (`salesrl_jax.models.predict.HOLDOUT`, read by `cross_fitted`)."""
    agents = [nnx.merge(graphdef, params) for params in members]
    if not arrays.sparse or not agents or not hasattr(agents[0].encoder.project, "idf"):  # dense, or features only
        return FittedStatistics(members, {})
    idf = training_idf(arrays, valid_fraction, split_seed)
    wide, report, offsets = None, {}, None
    if agents[0].encoder.wide:
        from salesrl_jax.train.wide_fit import NoWideTerm, fit_wide

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NoWideTerm)
            fit = fit_wide(arrays, idf, valid_fraction, split_seed)
        for warning in caught:  # said as before, and the reason kept with the run
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        skipped = [str(w.message) for w in caught if issubclass(w.category, NoWideTerm)]
        if fit is None:
            report["wide_fit"] = {"skipped": skipped[0] if skipped else "no wide term was fitted"}
        else:
            wide, offsets = (jnp.asarray(fit.weights), jnp.asarray(fit.customer_weights)), fit.offsets
            if fit.holdout:  # the validation turns' cross-fitting, for everything that predicts the split
                report[HOLDOUT] = {"data": str(Path(arrays.path).resolve()), "parts": list(arrays.part_digests),
                                   "valid_fraction": valid_fraction, "split_seed": split_seed,
                                   "turns": {c: [round(float(v), 6) for v in d] for c, d in fit.holdout.items()}}
            report["wide_fit"] = {"l2": fit.l2, "cv_log_loss": {str(k): v for k, v in fit.cv_log_loss.items()},
                                  "wide_map": list(fit.wide_map), "gain_log_loss": fit.gain_log_loss,
                                  "nonzero_weights": int(np.count_nonzero(fit.weights)),
                                  "nonzero_customer_weights": int(np.count_nonzero(fit.customer_weights))}
    basis = None
    bag = agents[0].encoder.project
    if agents[0].encoder.config.bag_basis == "lsa":
        from salesrl_jax.train.bag_basis import lsa_basis

        basis = lsa_basis(arrays, idf, valid_fraction, split_seed, bag.kernel[...].shape[1])
        if basis is not None:
            report["bag_basis"] = {"kind": "lsa", "turns": basis.turns,
                                   "singular_values": [round(float(v), 6) for v in basis.singular_values]}
    for agent in agents:
        agent.encoder.project.idf.value = jnp.asarray(idf)
        if basis is not None:  # every member starts from the one basis (it does not depend on the seed)
            agent.encoder.project.kernel.value = jnp.asarray(basis.kernel)
        if wide is not None:
            agent.encoder.project.wide.value, agent.encoder.project.wide_customer.value = wide
            agent.encoder.project.wide_map.value = jnp.asarray(fit.wide_map, jnp.float32)
    return FittedStatistics([nnx.split(agent)[1] for agent in agents], report, offsets)

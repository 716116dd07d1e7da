"""Fit the confidence module (`salesrl_jax.models.confidence`) of a trained model, and save it beside the model.

1. **Reference bank**: the encoder states of ``bank_size`` turns drawn at random from the model's training split.
2. **Text reference**: n-gram models mark the buckets their idf weighs (the training split shows them in at least
   ``MIN_DF`` conversations); dense models keep a text bank: ``text_bank_size`` random training turns' embeddings
   in a seeded random projection to ``text_dim`` dimensions.
3. **Calibration** on held-out conversations (the model's validation split by default), which the bank never
   holds: per turn bucket, the mean and spread of the two novelty signals and the sorted novelty scores (the
   familiarity's p-values); least squares of the squared error ``(y - p)^2`` on the signals; and the intervals:
   split-conformal on ``|q - p|`` when every calibration turn carries a true probability ``q`` (simulator data),
   inductive Venn-Abers from the outcomes otherwise.

Turn buckets (Mondrian categories) are chosen from the calibration data: consecutive turn indices are pooled until a
bucket holds ``MIN_BUCKET_TURNS`` calibration turns, so early turns each get their own and the long tail shares one.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from flax import nnx
from scipy.optimize import isotonic_regression

from salesrl_jax.arrays.split import Split, split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.metrics.selective import conformal_rank
from salesrl_jax.models.confidence import (
    ERROR_FEATURES,
    ConfidenceParams,
    TurnSignals,
    bucket_keys,
    error_features,
    running_text_novelty,
    signals_of,
    standardised_novelty,
    turn_bucket,
)
from salesrl_jax.models.predict import HOLDOUT, cross_fitted, make_predict, predict_arrays, shared_predict, wide_map_of
from salesrl_jax.run.confidence_store import confidence_directory, save_confidence
from salesrl_jax.run.config import ConfidenceConfig
from salesrl_jax.run.trained_model import TrainedModel

MIN_BUCKET_TURNS = 300  # calibration turns per turn bucket: a conformal quantile of 300 scores moves coverage ~1.7 pp
MAX_VENN_TURNS = 1000  # Venn-Abers costs O(n^2) per bucket: a larger bucket is subsampled to this many turns
FEW_CONVERSATIONS = 100
DISTINCT_OVERSAMPLE = 3.0  # training turns read per text-bank row wanted, before repeats are dropped
WHOLE_RANGE = 1e6  # a conformal quantile too few calibration turns can give: the interval is [0, 1]
MIN_SPREAD = 1e-3  # floor of the novelty signals' standard deviations (both are O(0.1-1) when they vary)


@dataclasses.dataclass
class ConfidenceFit:
    params: ConfidenceParams
    fit: dict
    path: Path

    def summary(self) -> str:
        fit = self.fit
        weights = ", ".join(f"{name} {w:+.5f}" for name, w in zip(ERROR_FEATURES, fit["error_weights"]))
        lines = [f"confidence module fitted on {fit['turns']:,} turns of {fit['conversations']:,} conversations "
                 f"({fit['data']}, split {fit['split']}); bank of {fit['bank']:,} training states; text novelty: "
                 f"{fit['text']}; intervals: {fit['interval']} at {fit['interval_level']:.0%}",
                 f"expected squared error = p(1-p) + max(0, {weights})"]
        lines.append(f"turn buckets (turn numbers starting each): {fit['bucket_starts']}")
        lines.append(f"wrote {self.path}")
        return "\n".join(lines)


def _sampler(share: float, rng: np.random.Generator):
    return lambda chosen: chosen[rng.random(len(chosen)) < share]


def _ridge(features: np.ndarray, target: np.ndarray, strength: float = 1e-3) -> np.ndarray:
    """Least squares ``argmin ||X w - y||^2 + strength n ||w'||^2`` with the columns after the first (the bias)
    standardised, so the penalty weighs every signal alike whatever its units; returns ``w`` in the raw units."""
    x = np.asarray(features, np.float64)
    mean, std = x[:, 1:].mean(0), np.maximum(x[:, 1:].std(0), 1e-9)
    z = np.concatenate([np.ones((len(x), 1)), (x[:, 1:] - mean) / std], 1)
    penalty = strength * len(x) * np.eye(z.shape[1])
    penalty[0, 0] = 0.0
    w = np.linalg.solve(z.T @ z + penalty, z.T @ np.asarray(target, np.float64))
    slopes = w[1:] / std
    return np.concatenate([[w[0] - slopes @ mean], slopes]).astype(np.float32)


def choose_buckets(turn_index: np.ndarray, minimum: int = MIN_BUCKET_TURNS) -> np.ndarray:
    """Turn numbers starting each bucket: consecutive turn indices pooled until a bucket holds ``minimum``
    calibration turns; a short remainder joins the last bucket (the last bucket is open-ended)."""
    counts = np.bincount(np.asarray(turn_index, np.int64))
    starts, held = [1], 0
    for index, count in enumerate(counts):
        if held >= minimum:
            starts.append(index + 1)
            held = 0
        held += count
    if held < minimum and len(starts) > 1:
        starts.pop()
    return np.asarray(starts, np.int32)


def venn_abers_gaps(scores: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inductive Venn-Abers over calibration ``scores`` and ``outcomes``: the sorted scores ``[n]`` and, for a test
    score in each of the ``n + 1`` gaps between them (``searchsorted(sorted, s, side="right")``), the pair
    ``(p0, p1)``: the isotonic regression of the outcomes with the test point added with label 0 (and 1), read at
    the test point (Vovk & Petej, 2014)."""
    order = np.argsort(scores, kind="stable")
    s, y = np.asarray(scores, np.float64)[order], np.asarray(outcomes, np.float64)[order]
    n = len(s)
    low, high = np.empty(n + 1), np.empty(n + 1)
    for j in range(n + 1):
        for label, out in ((0.0, low), (1.0, high)):
            out[j] = isotonic_regression(np.insert(y, j, label), increasing=True).x[j]
    return s, low, high


def fit_confidence(model_path: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None,
                   split: Split = "valid", config: ConfidenceConfig | None = None) -> ConfidenceFit:
    """Fit the confidence module of the model at ``model_path`` and save it beside it (see the module docstring).

    ``data`` defaults to the run's training arrays with ``split="valid"`` (the conversations it held out);
    ``split="all"`` calibrates on every labelled conversation of arrays the model never trained on. ``config``
    defaults to the model's own ``confidence`` section."""
    model = TrainedModel.load(model_path)
    config = config or model.config.confidence
    run_data = model.config.data
    data = Path(data) if data is not None else model.training_data
    model.require_split(split)
    calibration_arrays = TurnArrays.open(data)
    model.require_compatible(calibration_arrays.identity, calibration_arrays.feature_names,
                             f"the cached arrays at {data}")
    training = TurnArrays.open(model.training_data)
    rng = np.random.default_rng(config.seed)
    rows = model.config.eval_rows_per_minibatch

    # 1. the bank: states of random training-split turns
    train_turns = _training_turns(training, run_data)
    share = min(1.0, 2.0 * config.bank_size / max(sum(len(t) for _, t in train_turns), 1))
    states = predict_arrays(make_predict(model.graphdef, extra=lambda out, inputs, _: out.state), model.params,
                            training, split="train", valid_fraction=run_data.valid_fraction,
                            split_seed=run_data.split_seed, rows=rows, choose=_sampler(share, rng)).extra
    bank = states[rng.choice(len(states), min(config.bank_size, len(states)), replace=False)]

    # 2. the text reference
    text, gram_seen = "none", np.zeros(1, np.float32)
    text_projection, text_bank = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    pure = nnx.to_pure_dict(model.params)
    if model.sparse_text and "idf" in pure["encoder"]["project"]:
        text, gram_seen = "sparse", (np.asarray(pure["encoder"]["project"]["idf"]) > 0).astype(np.float32)
    elif not model.sparse_text:
        text = "dense"
        text_projection, text_bank = _text_bank(train_turns, config.text_bank_size, config.text_dim, rng)

    # 3. calibration on held-out turns
    shell = _shell(bank, gram_seen, text_projection, text_bank, config, text)
    pred = predict_arrays(shared_predict(model.graphdef, signals_of), model.params, calibration_arrays,
                          split=split, valid_fraction=run_data.valid_fraction, split_seed=run_data.split_seed,
                          rows=rows, args=shell)
    pred = cross_fitted(pred, model.meta.get(HOLDOUT), wide_map_of(model.params), calibration_arrays, split,
                        run_data.valid_fraction, run_data.split_seed)  # the wide term out of fold, as validation
    if len(pred.ids) < FEW_CONVERSATIONS:
        warnings.warn(f"the confidence module is calibrated on {len(pred.ids)} conversations only ({data}, split "
                      f"{split}): its familiarity and intervals are coarse; calibrate on more held-out conversations "
                      "(--data ARRAYS --split all)", stacklevel=2)
    params, fit = calibrate(shell, pred.prediction, pred.uncertainty, pred.extra, pred.turn_index, pred.outcome,
                            pred.oracle, config)
    fit.update(data=str(data), split=split, conversations=len(pred.ids), bank=len(bank), text=text)
    path = save_confidence(confidence_directory(model.directory), params, model.identity, model.params_digest, fit)
    return ConfidenceFit(params, fit, path)


def _training_turns(training: TurnArrays, run_data) -> list[tuple[object, np.ndarray]]:
    """``(part, row indices of its training-split turns)`` for every part of the training arrays."""
    picked = []
    for p in range(len(training)):
        part = training.part(p)
        chosen = split_conversations(part, "train", run_data.valid_fraction, run_data.split_seed)
        offsets = np.asarray(part.offsets)
        turns = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in chosen]) if len(chosen) else []
        picked.append((part, np.asarray(turns, np.int64)))
    return picked


def _text_bank(picked: list[tuple[object, np.ndarray]], size: int, dim: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """A random projection ``[D, P]`` and the unit-normalised projected embeddings ``[<= size, P]`` of random
    distinct training-split turns (``picked``: `_training_turns`): a repeated text ("Okay.") takes one row, so the
    bank covers more of what the training data says (half of a sample of simulator turns are repeats)."""
    total = sum(len(t) for _, t in picked)
    share = min(1.0, DISTINCT_OVERSAMPLE * size / max(total, 1))
    x = np.concatenate([np.asarray(part.embeddings[np.sort(t[rng.random(len(t)) < share])])
                        for part, t in picked])
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))[:, 0]
    _, first = np.unique(rows, return_index=True)  # one row per distinct embedding
    x = x[rng.permutation(first)[:size]].astype(np.float32)
    projection = (np.eye(x.shape[1], dtype=np.float32) if x.shape[1] <= dim
                  else (rng.normal(size=(x.shape[1], dim)) / np.sqrt(dim)).astype(np.float32))
    y = x @ projection
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-6)
    return projection, y.astype(np.float32)


def _per_bucket(buckets: int) -> dict[str, np.ndarray]:
    """Placeholder per-bucket arrays for ``buckets`` turn buckets (what `calibrate` fills)."""
    return dict(novelty_loc=np.zeros((buckets, 2), np.float32), novelty_scale=np.ones((buckets, 2), np.float32),
                novelty_keys=np.zeros(1, np.float32), novelty_end=np.zeros(buckets, np.int32),
                novelty_count=np.zeros(buckets, np.int32), interval_quantile=np.full(buckets, WHOLE_RANGE, np.float32),
                venn_keys=np.zeros(1, np.float32), venn_low=np.zeros(buckets + 1, np.float32),
                venn_high=np.ones(buckets + 1, np.float32))


def _shell(bank, gram_seen, text_projection, text_bank, config: ConfidenceConfig, text: str) -> ConfidenceParams:
    """The parameters the signal pass needs (bank and text reference); the rest is filled by `calibrate`."""
    return ConfidenceParams(
        bucket_starts=np.ones(1, np.int32), bank=np.asarray(bank, np.float32),
        bank_norms=np.sum(np.asarray(bank, np.float32) ** 2, -1), gram_seen=gram_seen,
        text_projection=text_projection, text_bank=text_bank, error_weights=np.zeros(len(ERROR_FEATURES), np.float32),
        familiarity_level=np.float32(config.familiarity_level), low_threshold=np.float32(config.low_threshold),
        interval_level=np.float32(config.interval_level),
        interval_scale_weights=np.zeros(len(ERROR_FEATURES), np.float32), **_per_bucket(1),
        text=text, interval="conformal")


def calibrate(shell: ConfidenceParams, prediction: np.ndarray, uncertainty: np.ndarray, signals: TurnSignals,
              turn_index: np.ndarray, outcome: np.ndarray, oracle: np.ndarray, config: ConfidenceConfig
              ) -> tuple[ConfidenceParams, dict]:
    """Everything but the bank and the text reference, from the calibration turns' predictions and signals (flat
    ``[turns]`` arrays in conversation order)."""
    p = np.asarray(prediction, np.float64)
    y = np.asarray(outcome, np.float64)
    distance = np.asarray(signals.distance, np.float64)
    text_so_far = running_text_novelty(signals.text_novelty, turn_index).astype(np.float64)
    starts = choose_buckets(turn_index)
    bucket = np.asarray(turn_bucket(starts, turn_index))
    rows = [np.flatnonzero(bucket == b) for b in range(len(starts))]
    shell = shell.replace(bucket_starts=starts, **_per_bucket(len(starts)))
    both = np.stack([distance, text_so_far], 1)
    loc = np.stack([both[r].mean(0) for r in rows]).astype(np.float32)
    # A floor on the spread: a signal that barely varies on calibration data (text novelty of a model whose
    # training turns span the whole space) must not turn float rounding into large z-scores.
    scale = np.stack([np.maximum(both[r].std(0), MIN_SPREAD) for r in rows]).astype(np.float32)
    params = shell.replace(novelty_loc=loc, novelty_scale=scale)
    z_d, z_m = (np.asarray(z, np.float64) for z in standardised_novelty(params, distance, text_so_far, turn_index))
    novelty = np.maximum(z_d, z_m)
    keys = [np.asarray(bucket_keys(b, novelty[r], xp=np)) for b, r in enumerate(rows)]
    counts = np.array([len(r) for r in rows], np.int32)
    params = params.replace(novelty_keys=np.sort(np.concatenate(keys)).astype(np.float32),
                            novelty_end=np.cumsum(counts).astype(np.int32), novelty_count=counts)
    phi = np.asarray(error_features(p, np.asarray(uncertainty, np.float64), z_d, z_m,
                                    np.asarray(turn_index, np.float64)), np.float64)
    has_oracle = bool(np.isfinite(oracle).all())
    # The squared error beyond what a calibrated model expects, p(1 - p): from outcomes (y - p)^2 - p(1 - p); with a
    # known true probability q its expectation given q, (q - p)(1 - 2p), the same target with less noise (module doc).
    q = np.asarray(oracle, np.float64)
    excess = (q - p) * (1 - 2 * p) if has_oracle else (y - p) ** 2 - p * (1 - p)
    params = params.replace(error_weights=_ridge(phi, excess))
    fit = {"turns": int(len(p)), "error_weights": [float(w) for w in params.error_weights],
           "bucket_starts": starts.tolist(), "interval_level": config.interval_level,
           "familiarity_level": config.familiarity_level}
    level = config.interval_level
    if has_oracle:
        residual = np.abs(q - p)
        weights = _ridge(phi, residual)
        sigma = np.clip(phi @ weights, 5e-3, 1.0)
        score = residual / sigma
        quantile = []
        for r in rows:
            k = conformal_rank(len(r), level)
            quantile.append(np.sort(score[r])[k - 1] if k <= len(r) else WHOLE_RANGE)
        params = params.replace(interval="conformal", interval_scale_weights=weights,
                                interval_quantile=np.asarray(quantile, np.float32))
    else:
        logit = np.log(np.clip(p, 1e-7, 1 - 1e-7)) - np.log1p(-np.clip(p, 1e-7, 1 - 1e-7))
        rng = np.random.default_rng(config.seed)
        venn_keys, low, high = [], [], []
        for b, r in enumerate(rows):
            if len(r) > MAX_VENN_TURNS:
                r = np.sort(rng.choice(r, MAX_VENN_TURNS, replace=False))
            s, p0, p1 = venn_abers_gaps(logit[r], y[r])
            venn_keys.append(np.asarray(bucket_keys(b, s, xp=np)))
            low.append(p0)
            high.append(p1)
        params = params.replace(interval="venn-abers", venn_keys=np.concatenate(venn_keys).astype(np.float32),
                                venn_low=np.concatenate(low).astype(np.float32),
                                venn_high=np.concatenate(high).astype(np.float32))
    fit["interval"] = params.interval
    return params, fit

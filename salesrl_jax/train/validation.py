"""Validation during training: the model's metrics on the run's held-out split."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from flax import nnx

from salesrl_jax import metrics
from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.predict import cross_fitted, predict_arrays, shared_predict, wide_map_of
from salesrl_jax.run.config import TrainConfig

Validator = Callable[[nnx.State], dict[str, float]]


class BaseRates(NamedTuple):
    """The constant predictors a model must beat, from the training split."""

    turns: float  # the share of training turns whose conversation converted (what every turn's loss weighs)
    conversations: float  # the share of training conversations that converted (one last turn each)


def training_base_rate(arrays: TurnArrays, config: TrainConfig) -> BaseRates:
    """The training split's conversion rates, by turn and by conversation: the constant predictors a model must beat
    over all turns and at the last turn. A long call weighs more in the first; at the last turn each conversation
    counts once, so the second is its fair constant. Refuses a training split with one outcome only (there is
    nothing to learn, and every AUC would be NaN)."""
    turns = converted_turns = conversations = converted = 0
    for part in arrays.iter_parts():
        chosen = split_conversations(part, "train", config.data.valid_fraction, config.data.split_seed)
        lengths = part.lengths[chosen]
        won = np.asarray(part.outcome)[chosen] == 1
        turns += int(lengths.sum())
        converted_turns += int((lengths * won).sum())
        conversations += len(chosen)
        converted += int(won.sum())
    if turns == 0:
        raise ValueError(f"{arrays.path}: no labelled training conversations ({arrays.labels_note()})")
    if converted in (0, conversations):
        raise ValueError(f"{arrays.path}: every labelled training conversation has outcome {int(converted > 0)}; "
                         "a model cannot learn to tell outcomes apart from one outcome")
    return BaseRates(turns=converted_turns / turns, conversations=converted / conversations)


def make_validator(graphdef: nnx.GraphDef, arrays: TurnArrays, config: TrainConfig, holdout: dict | None = None
                   ) -> Validator:
    """``validate(params) -> metrics``: log loss and Brier over every turn of the validation split (the best
    checkpoint is the lowest log loss), and last-turn AUC, accuracy, Brier, ECE and log loss for the log; beside them
    ``base_rate_log_loss`` and ``base_rate_last_turn_log_loss``, the log loss of always predicting the training base
    rate on the same turns, the rate by turn over all turns and by conversation at the last turn (`training_base_rate`).
    A model that beats it on neither learned nothing; on long calls whose outcome shows only late, the early turns'
    average hides what the last turns learned. ``holdout``: the wide term's cross-fitting of
    the split (`salesrl_jax.models.predict.cross_fitted`), so that no validation turn reads weights fitted on it."""
    predict = shared_predict(graphdef)  # one compiled predictor per model structure in a process
    rate = training_base_rate(arrays, config)

    def validate(params: nnx.State) -> dict[str, float]:
        pred = predict_arrays(predict, params, arrays, split="valid", valid_fraction=config.data.valid_fraction,
                              split_seed=config.data.split_seed, rows=config.eval_rows_per_minibatch)
        pred = cross_fitted(pred, holdout, wide_map_of(params), arrays, "valid", config.data.valid_fraction,
                            config.data.split_seed)
        last = metrics.summary(pred.prediction[pred.last], pred.outcome[pred.last])
        return {"log_loss": metrics.log_loss(pred.prediction, pred.outcome),
                "base_rate_log_loss": metrics.log_loss(np.full(len(pred.outcome), rate.turns), pred.outcome),
                "brier": metrics.brier(pred.prediction, pred.outcome),
                "last_turn_auc": last["auc"], "last_turn_accuracy": last["accuracy"],
                "last_turn_brier": last["brier"], "last_turn_ece": last["ece"],
                "last_turn_log_loss": metrics.log_loss(pred.prediction[pred.last], pred.outcome[pred.last]),
                "base_rate_last_turn_log_loss": metrics.log_loss(np.full(int(pred.last.sum()), rate.conversations),
                                                                 pred.outcome[pred.last]),
                "conversations": len(pred.ids)}

    return validate

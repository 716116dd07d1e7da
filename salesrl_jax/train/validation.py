"""Validation during training: the model's metrics on the run's held-out split."""

from __future__ import annotations

from typing import Callable

from flax import nnx

from salesrl_jax import metrics
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.config import TrainConfig

Validator = Callable[[nnx.State], dict[str, float]]


def make_validator(graphdef: nnx.GraphDef, arrays: TurnArrays, config: TrainConfig) -> Validator:
    """``validate(params) -> metrics``: log loss and Brier over every turn of the validation split (the best
    checkpoint is the lowest log loss), and last-turn AUC, accuracy, Brier and ECE for the log."""
    predict = make_predict(graphdef)

    def validate(params: nnx.State) -> dict[str, float]:
        pred = predict_arrays(predict, params, arrays, split="valid", valid_fraction=config.data.valid_fraction,
                              split_seed=config.data.split_seed, rows=config.eval_rows_per_minibatch)
        last = metrics.summary(pred.prediction[pred.last], pred.outcome[pred.last])
        return {"log_loss": metrics.log_loss(pred.prediction, pred.outcome),
                "brier": metrics.brier(pred.prediction, pred.outcome),
                "last_turn_auc": last["auc"], "last_turn_accuracy": last["accuracy"],
                "last_turn_brier": last["brier"], "last_turn_ece": last["ece"], "conversations": len(pred.ids)}

    return validate

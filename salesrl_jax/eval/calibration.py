"""`salesrl calibrate`: a trained model recalibrated on held-out turns, written as a new model directory.

The maths (Platt and temperature scaling folded into the policy head) and the recalibration every finished
training run makes of its own best model live in `salesrl_jax.run.recalibration`; this adds what a standalone
recalibration needs beyond it: fitting on any arrays and split, and refitting the confidence module, which reads
the probabilities that moved.
"""

from __future__ import annotations

import os
from typing import Literal

from salesrl_jax.arrays.split import Split
from salesrl_jax.run.checkpoints import export_model
from salesrl_jax.run.recalibration import Recalibration, fit_recalibration, recalibrated_params
from salesrl_jax.run.trained_model import TrainedModel


def recalibrate_model(model_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      data: str | os.PathLike[str] | None = None, split: Split = "valid",
                      turns: Literal["all", "last"] = "all", form: Literal["platt", "temperature"] = "platt"
                      ) -> Recalibration:
    """Fit Platt scaling of a trained model on held-out turns and export the recalibrated model to ``out``.

    ``data`` defaults to the run's training arrays with ``split="valid"`` (the split the model held out);
    ``split="all"`` fits on every labelled conversation of arrays the model never trained on. ``turns="last"``
    fits on each conversation's last turn only (where the outcome is nearest); the default fits on every turn.
    ``form="temperature"`` fits the slope alone (`fit_platt` with ``intercept=False``). A run directory gives the
    model it serves (its own recalibration, if it made one: `salesrl_jax.run.checkpoints.find_checkpoint`).
    """
    model = TrainedModel.load(model_path)
    scaling, fit = fit_recalibration(model, data, split, turns, form, stacklevel=3)
    path = export_model(out, recalibrated_params(model.params, model.config.model, scaling),
                        {**model.meta, "recalibration": fit})
    if model.confidence is not None:  # the source's confidence fit read its probabilities: refit for the new ones
        from salesrl_jax.eval.confidence_fit import fit_confidence

        fit_confidence(path, data=fit["data"], split=split)
    return Recalibration(scaling, fit, path, fit["before"], fit["after"])

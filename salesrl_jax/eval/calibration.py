"""Post-hoc recalibration of the conversion probability: Platt scaling of the policy's mean logit.

With ``z`` the model's logit (its prediction is ``sigmoid(z)``), the recalibrated prediction is

    p' = sigmoid(a z + b)

with ``(a, b)`` maximising the Bernoulli likelihood of the outcomes on held-out turns (Platt, 1999;
temperature scaling, Guo et al., 2017, is the case ``b = 0``, ``a = 1 / T``). The map is monotone
for ``a > 0``, so ranking (AUC) is unchanged; only the probabilities move.

It is folded into the model, whose logit is the policy head's first output column ``x W[:, 0] + c_0``
plus, for an n-gram model with the wide term, ``max(alpha + beta log t, 0) (m_t + shift)``
(`salesrl_jax.models.bag`): ``W[:, 0] -> a W[:, 0]``, ``c_0 -> a c_0 + b`` and ``(alpha, beta) -> a (alpha,
beta)`` (``a > 0``). Every way of running the model (batch, streaming, int8, archive scoring) then serves the
recalibrated probability with no extra operation. The ensemble members add the same wide term, so their logits
move together with it. A model that feeds its previous prediction back into its state cannot be recalibrated
this way (the fed-back value would change what the state sees), so it is refused.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Literal

import jax
import numpy as np
from flax import nnx

from salesrl_jax import metrics
from salesrl_jax.arrays.split import Split
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.models.predict import predict_arrays, shared_predict
from salesrl_jax.run.checkpoints import export_model
from salesrl_jax.run.trained_model import TrainedModel

_EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class PlattScaling:
    slope: float  # a
    intercept: float  # b

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """``sigmoid(a z + b)`` for logits ``[n]``."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.slope * np.asarray(logits, np.float64) + self.intercept, -50.0, 50.0)))


def logits_of(probs: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))``, with ``p`` clipped to ``[1e-7, 1 - 1e-7]``."""
    p = np.clip(np.asarray(probs, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(logits: np.ndarray, outcomes: np.ndarray, iterations: int = 100, intercept: bool = True
              ) -> PlattScaling:
    """Maximum-likelihood ``(a, b)`` by Newton's method on the mean negative log-likelihood

        L(a, b) = -mean[y log s + (1 - y) log(1 - s)],   s = sigmoid(a z + b),

    whose gradient is ``mean[(s - y) (z, 1)]`` and Hessian ``mean[s (1 - s) (z, 1)(z, 1)^T]`` (convex;
    a 1e-9 ridge keeps it invertible when ``z`` is constant). Starts at the identity ``(1, 0)``.
    ``intercept=False`` fixes ``b = 0``: temperature scaling, ``a = 1 / T`` alone (the model's own base rate
    kept; one parameter, so less to get wrong from a small held-out split).
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(outcomes, np.float64)
    if z.ndim != 1 or z.shape != y.shape or len(z) == 0:
        raise ValueError(f"fit_platt needs logits and outcomes of one shape [n > 0], got {z.shape} and {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("fit_platt needs outcomes in {0, 1}")
    x = np.stack([z, np.ones_like(z)], axis=1)  # [n, 2]
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        s = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -50.0, 50.0)))  # no overflow if the data are separable
        gradient = x.T @ (s - y) / len(z)
        hessian = (x * (s * (1 - s))[:, None]).T @ x / len(z) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient) if intercept else np.array([gradient[0] / hessian[0, 0], 0.0])
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return PlattScaling(float(theta[0]), float(theta[1]))


def check_recalibratable(config: ModelConfig) -> None:
    if config.feed_prediction:
        raise ValueError("model.feed_prediction is on: the model reads its own previous prediction, so its output "
                         "cannot be recalibrated without changing its state")


def recalibrated_params(params: nnx.State, config: ModelConfig, scaling: PlattScaling) -> nnx.State:
    """The agent's parameters with ``scaling`` folded into the policy head's mean-logit column (see module
    docstring); every other parameter is unchanged."""
    check_recalibratable(config)
    pure = nnx.to_pure_dict(params)
    linear = pure["policy"]["linear"]
    kernel, bias = np.array(linear["kernel"]), np.array(linear["bias"])
    kernel[:, 0] *= scaling.slope
    bias[0] = scaling.slope * bias[0] + scaling.intercept
    linear["kernel"], linear["bias"] = kernel, bias
    project = pure["encoder"].get("project", {})
    if "wide_map" in project:  # the wide term is part of the logit: its gain scales with it
        if scaling.slope <= 0:
            raise ValueError(f"a recalibration slope of {scaling.slope:.4f} would turn the model's wide term off: "
                             "the model ranks the fitting turns no better than chance")
        wide_map = np.array(project["wide_map"], np.float32)
        wide_map[:2] *= scaling.slope
        project["wide_map"] = wide_map
    result = jax.tree.map(lambda x: x, params)
    nnx.replace_by_pure_dict(result, pure)
    return result


@dataclasses.dataclass
class Recalibration:
    """What `recalibrate_model` fitted and wrote, with in-sample metrics before and after."""

    scaling: PlattScaling
    fit: dict  # saved in the new model's meta as ``recalibration``
    path: Path  # the new model's checkpoint directory
    before: dict[str, float]  # log loss, Brier, ECE on the fitting turns
    after: dict[str, float]

    def summary(self) -> str:
        fit = self.fit
        name = "Temperature" if fit.get("form") == "temperature" else "Platt"
        lines = [f"{name} scaling p' = sigmoid({self.scaling.slope:.4f} z + {self.scaling.intercept:.4f}), fitted on "
                 f"{fit['turns']:,} turns of {fit['conversations']:,} conversations ({fit['data']}, split {fit['split']}"
                 f"{', last turns only' if fit.get('fitted_on') == 'last' else ''})",
                 "on those turns (in-sample)   log loss   Brier     ECE"]
        for name, m in (("before", self.before), ("after", self.after)):
            lines.append(f"  {name:<26} {m['log_loss']:8.4f} {m['brier']:8.4f} {m['ece']:7.4f}")
        lines.append(f"wrote {self.path}")
        return "\n".join(lines)


def _calibration_metrics(probs: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    return {"log_loss": metrics.log_loss(probs, outcome), "brier": metrics.brier(probs, outcome),
            "ece": metrics.expected_calibration_error(probs, outcome)}


FEW_CONVERSATIONS = 100  # a fit on fewer is noisy: said, not silent


def recalibrate_model(model_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      data: str | os.PathLike[str] | None = None, split: Split = "valid",
                      turns: Literal["all", "last"] = "all", form: Literal["platt", "temperature"] = "platt"
                      ) -> Recalibration:
    """Fit Platt scaling of a trained model on held-out turns and export the recalibrated model to ``out``.

    ``data`` defaults to the run's training arrays with ``split="valid"`` (the split the model held out);
    ``split="all"`` fits on every labelled conversation of arrays the model never trained on. ``turns="last"``
    fits on each conversation's last turn only (where the outcome is nearest); the default fits on every turn.
    ``form="temperature"`` fits the slope alone (`fit_platt` with ``intercept=False``).
    """
    model = TrainedModel.load(model_path)
    check_recalibratable(model.config.model)
    data = Path(data) if data is not None else model.config.data.train
    if split == "valid" and model.config.data.valid_fraction <= 0:
        raise ValueError(f"the model at {model.directory} held out no validation split (data.valid_fraction 0): "
                         "pass --data ARRAYS of conversations it never trained on, with --split all")
    arrays = TurnArrays.open(data)
    model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {data}")
    pred = predict_arrays(shared_predict(model.graphdef), model.params, arrays, split=split,
                          valid_fraction=model.config.data.valid_fraction,
                          split_seed=model.config.data.split_seed, rows=model.config.eval_rows_per_minibatch)
    if len(pred.ids) < FEW_CONVERSATIONS:
        warnings.warn(f"{form.capitalize()} scaling fitted on {len(pred.ids)} conversations only ({data}, split "
                      f"{split}): the map "
                      "is noisy; fit on more held-out conversations (--data ARRAYS --split all)", stacklevel=2)
    rows = pred.last if turns == "last" else np.ones(len(pred.prediction), bool)
    scaling = fit_platt(logits_of(pred.prediction[rows]), pred.outcome[rows], intercept=form == "platt")
    before, after = pred.prediction[rows], scaling(logits_of(pred.prediction[rows]))
    fit = {"slope": scaling.slope, "intercept": scaling.intercept, "data": str(data), "split": split,
           "conversations": len(pred.ids), "turns": int(len(before)), "fitted_on": turns, "form": form,
           "from": str(model.directory)}
    path = export_model(out, recalibrated_params(model.params, model.config.model, scaling),
                        {**model.meta, "recalibration": fit})
    if model.confidence is not None:  # the source's confidence fit read its probabilities: refit for the new ones
        from salesrl_jax.eval.confidence_fit import fit_confidence

        fit_confidence(path, data=data, split=split)
    return Recalibration(scaling, fit, path, _calibration_metrics(before, pred.outcome[rows]),
                         _calibration_metrics(after, pred.outcome[rows]))

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

Every finished training run recalibrates its own best model on its validation split where that split shows it
miscalibrated (`recalibrate_run`, temperature scaling by default; `miscalibration_test`) and its directory serves
the result; `salesrl calibrate` (`salesrl_jax.eval.calibration`)
writes a recalibrated copy fitted on any arrays.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
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
from salesrl_jax.models.predict import HOLDOUT, cross_fitted, predict_arrays, shared_predict, wide_map_of
from salesrl_jax.run.checkpoints import CALIBRATED, export_checkpoint, find_checkpoint
from salesrl_jax.run.config import TrainConfig
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
    ``intercept=False`` fixes ``b = 0``: temperature scaling, ``a = 1 / T`` alone (one parameter, so less to get
    wrong from a small held-out split; centred at logit 0, so a slope under 1 pulls every prediction toward 0.5, not
    toward the base rate: a temperature centred on the split's base rate was measured and was worse, session 31).
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


def miscalibration_test(logits: np.ndarray, outcomes: np.ndarray, groups: np.ndarray, scaling: PlattScaling,
                        intercept: bool) -> tuple[float, float]:
    """``(W, p)``: the Wald test of the identity map (``a = 1``, and ``b = 0`` with ``intercept``) at the fitted
    ``scaling``, with a covariance robust to the turns of one conversation being correlated (``groups [n]``: the
    conversation of each turn):

        W = (theta - theta_0)^T V^-1 (theta - theta_0),   V = H^-1 (sum_c g_c g_c^T) H^-1,

    ``H = sum_i s_i (1 - s_i) x_i x_i^T`` and ``g_c = sum_{i in c} (s_i - y_i) x_i`` over conversation ``c``'s turns,
    ``x_i = (z_i, 1)`` (``(z_i)`` alone for temperature scaling), ``s_i`` the fitted probability; ``p`` from the
    chi-squared distribution with one or two degrees of freedom. A small ``p`` says the split shows the model
    miscalibrated beyond its sampling noise; a large one, that the fitted map is indistinguishable from the identity
    (on ~170 conversations a temperature's 95% interval spans about +-0.5: docs/benchmarks.md, session 31)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(outcomes, np.float64)
    x = np.stack([z, np.ones_like(z)], axis=1) if intercept else z[:, None]
    theta = np.array([scaling.slope, scaling.intercept] if intercept else [scaling.slope])
    s = scaling(z)
    hessian = (x * (s * (1 - s))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    scores = np.zeros((group.max() + 1, x.shape[1]))
    np.add.at(scores, group, (s - y)[:, None] * x)
    inverse = np.linalg.inv(hessian)
    covariance = inverse @ (scores.T @ scores) @ inverse
    delta = theta - (np.array([1.0, 0.0]) if intercept else np.array([1.0]))
    wald = float(delta @ np.linalg.solve(covariance + 1e-12 * np.eye(len(delta)), delta))
    p = math.exp(-wald / 2) if intercept else math.erfc(math.sqrt(wald / 2))  # chi-squared tail, 2 or 1 dof
    return wald, p


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
    """What a recalibration fitted and wrote, with in-sample metrics before and after."""

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
        if "p_value" in fit:  # fits saved before session 31 have no test
            lines.append(f"the map against the identity (Wald, by conversation): W = {fit['wald']:.2f}, "
                         f"p = {fit['p_value']:.3g}")
        lines.append(f"wrote {self.path}")
        return "\n".join(lines)


def _calibration_metrics(probs: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    return {"log_loss": metrics.log_loss(probs, outcome), "brier": metrics.brier(probs, outcome),
            "ece": metrics.expected_calibration_error(probs, outcome)}


FEW_CONVERSATIONS = 100  # a fit on fewer is noisy: said, not silent
# `recalibrate_run` fits a map only where the validation split shows one at this level: the config's default.
MISCALIBRATION_LEVEL = TrainConfig.recalibration_level


def recalibrate_run(workdir: str | os.PathLike[str], form: Literal["platt", "temperature"] = "temperature",
                    level: float = MISCALIBRATION_LEVEL) -> Recalibration | None:
    """Recalibrate a finished run's best model on its validation split (every turn) and save it beside the best as
    ``RUN/checkpoints/calibrated``, which the run directory then serves (`find_checkpoint`): what `salesrl train`
    does at the end of a run (``recalibration``), so the model a run hands over is calibrated out of the box.

    A no-op when the saved recalibration was fitted, in this form, on the current best parameters (a rerun of a
    finished run); a stale one (a new best since, a kill mid-save) is replaced. None, with a warning, and the best
    model served as it is, where a fit would mislead: a validation split of fewer than `FEW_CONVERSATIONS`
    conversations (a temperature fitted on a few dozen can be anything: a separable split drives it to infinity), a
    slope that is not positive (the best model ranks its validation turns no better than chance), or a map the split
    cannot tell from the identity (`miscalibration_test`'s ``p`` at least ``level``; 1 recalibrates whatever it shows).

    Why the test: on real corpora of about 1,000 conversations a fold's validation split holds 150-200 of them, and
    out of fold the temperatures fitted there made the served probabilities worse, not better (last-turn log loss
    higher on six of eight targets on two corpora, 28 of 30 fitted slopes within their 95% interval of 1; docs/benchmarks.md,
    session 31). A real miscalibration shows with enough conversations: twice-too-confident logits on 600
    conversations read p < 1e-6 (tests/run/test_recalibration.py).

    In a distributed run every process calls it, as every process saves checkpoints: orbax writes together."""
    workdir = Path(workdir)
    best = TrainedModel.load(find_checkpoint(workdir, served=False))
    target = workdir / "checkpoints" / CALIBRATED
    if target.exists():
        try:
            saved = TrainedModel.load(target)
            fit = saved.meta.get("recalibration", {})
            # Kept where this level would make it again (a fit saved before the test existed is decided afresh).
            if (fit.get("from_sha256") == best.params_digest and fit.get("form") == form
                    and fit.get("p_value", 1.0) < level):
                return Recalibration(PlattScaling(fit["slope"], fit["intercept"]), fit, target, fit["before"],
                                     fit["after"])
        except (OSError, ValueError, KeyError):  # incomplete or from another version: fitted again below
            pass
        _together("recalibration: read")
        if jax.process_index() == 0:
            shutil.rmtree(target)
        _together("recalibration: removed")
    scaling, fit = fit_recalibration(best, None, "valid", "all", form, warn_few=False)
    skip = (f"its validation split holds {fit['conversations']} conversations, too few to fit a {form} scaling on "
            f"(fewer than {FEW_CONVERSATIONS}; `salesrl calibrate --data ARRAYS --split all` fits one on held-out "
            "arrays)" if fit["conversations"] < FEW_CONVERSATIONS else
            f"its fitted slope {scaling.slope:.4f} is not positive (the best model ranks its validation turns no "
            "better than chance)" if scaling.slope <= 0 else
            f"its validation split shows no miscalibration to correct: the fitted map (slope {scaling.slope:.3f}, "
            f"intercept {scaling.intercept:.3f}) is within its sampling noise of the identity on "
            f"{fit['conversations']} conversations (p = {fit['p_value']:.2f}, at least {level:g})"
            if fit["p_value"] >= level else None)
    if skip:
        warnings.warn(f"{workdir}: not recalibrated: {skip}; the run serves its best checkpoint as it is",
                      stacklevel=3)
        return None
    path = export_checkpoint(target, recalibrated_params(best.params, best.config.model, scaling),
                             {**best.meta, "recalibration": fit})
    return Recalibration(scaling, fit, path, fit["before"], fit["after"])


def _together(name: str) -> None:
    """Every process of a distributed run reaches this point before any goes on (nothing to do in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def fit_recalibration(model: TrainedModel, data: str | os.PathLike[str] | None, split: Split,
                      turns: Literal["all", "last"], form: Literal["platt", "temperature"], stacklevel: int = 2,
                      warn_few: bool = True) -> tuple[PlattScaling, dict]:
    """The scaling of ``model`` fitted on ``data`` (default: its training arrays) and its record: what was fitted on
    what, and the fitting turns' log loss, Brier and ECE before and after."""
    check_recalibratable(model.config.model)
    data = Path(data) if data is not None else model.training_data
    model.require_split(split)
    arrays = TurnArrays.open(data)
    model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {data}")
    pred = predict_arrays(shared_predict(model.graphdef), model.params, arrays, split=split,
                          valid_fraction=model.config.data.valid_fraction,
                          split_seed=model.config.data.split_seed, rows=model.config.eval_rows_per_minibatch)
    # The run's own validation split with the wide term out of fold, as early stopping read it (`cross_fitted`).
    pred = cross_fitted(pred, model.meta.get(HOLDOUT), wide_map_of(model.params), arrays, split,
                        model.config.data.valid_fraction, model.config.data.split_seed)
    if warn_few and len(pred.ids) < FEW_CONVERSATIONS:
        warnings.warn(f"{form.capitalize()} scaling fitted on {len(pred.ids)} conversations only ({data}, split "
                      f"{split}): the map "
                      "is noisy; fit on more held-out conversations (--data ARRAYS --split all)", stacklevel=stacklevel)
    rows = pred.last if turns == "last" else np.ones(len(pred.prediction), bool)
    z, y, platt = logits_of(pred.prediction[rows]), pred.outcome[rows], form == "platt"
    scaling = fit_platt(z, y, intercept=platt)
    wald, p_value = miscalibration_test(z, y, pred.conversation[rows], scaling, intercept=platt)
    before, after = pred.prediction[rows], scaling(z)
    fit = {"slope": scaling.slope, "intercept": scaling.intercept, "wald": wald, "p_value": p_value,
           "data": str(data), "split": split,
           "conversations": len(pred.ids), "turns": int(len(before)), "fitted_on": turns, "form": form,
           "from": str(model.directory), "from_sha256": model.params_digest,
           "before": _calibration_metrics(before, pred.outcome[rows]),
           "after": _calibration_metrics(after, pred.outcome[rows])}
    return scaling, fit

"""Post-hoc recalibration of the conversion probability: Platt scaling of the policy's mean logit.

With ``z`` the model's logit (its prediction is ``sigmoid(z)``), the recalibrated prediction is

    p' = sigmoid(a z + b)

with ``(a, b)`` maximising the Bernoulli likelihood of the outcomes on held-out turns (Platt, 1999;
temperature scaling, Guo et al., 2017, is the case ``b = 0``, ``a = 1 / T``). The map is monotone
for ``a > 0``, so ranking (AUC) is unchanged; only the probabilities move.

It is folded into the policy head, whose first output column is ``z = x W[:, 0] + c_0``:
``W[:, 0] -> a W[:, 0]`` and ``c_0 -> a c_0 + b``. Every way of running the model (batch,
streaming, int8, archive scoring) then serves the recalibrated probability with no extra
operation. A model that feeds its previous prediction back into its state cannot be recalibrated
this way (the fed-back value would change what the state sees), so it is refused.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from salesrl_jax.models.config import ModelConfig

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


def fit_platt(logits: np.ndarray, outcomes: np.ndarray, iterations: int = 100) -> PlattScaling:
    """Maximum-likelihood ``(a, b)`` by Newton's method on the mean negative log-likelihood

        L(a, b) = -mean[y log s + (1 - y) log(1 - s)],   s = sigmoid(a z + b),

    whose gradient is ``mean[(s - y) (z, 1)]`` and Hessian ``mean[s (1 - s) (z, 1)(z, 1)^T]`` (convex;
    a 1e-9 ridge keeps it invertible when ``z`` is constant). Starts at the identity ``(1, 0)``.
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
        step = np.linalg.solve(hessian, gradient)
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
    result = jax.tree.map(lambda x: x, params)
    nnx.replace_by_pure_dict(result, pure)
    return result

"""Metrics of probability forecasts against binary outcomes (numpy only; no JAX, no model).

The lowest layer of the package graph: evaluation reports, validation during training and the
simulator's summary all score predictions with these same functions.
"""

from salesrl_jax.metrics.binary import (
                                        Reliability,
                                        accuracy,
                                        brier,
                                        expected_calibration_error,
                                        log_loss,
                                        reliability,
                                        roc_auc,
                                        summary,
)

__all__ = ["Reliability", "accuracy", "brier", "expected_calibration_error", "log_loss", "reliability", "roc_auc",
           "summary"]

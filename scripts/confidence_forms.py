"""Can a confidence both flag unfamiliar conversations and rank errors? Forms of the confidence module, measured on
an in-distribution test set and an out-of-distribution one (issue 14's held-out-industry experiment).

    python scripts/confidence_forms.py --model run --data arr-test-in --ood-data arr-test-out

For a model with a confidence fit, on every turn of both sets, it prints per form: the AUROC separating the two sets
per conversation after 4 turns (as `salesrl evaluate --ood-data`), and the AURC of the 0/1 error on the
in-distribution set and on both together (lower is better). The forms:

- ``|p - 0.5|`` (the baseline) and the fitted module, and its familiarity alone;
- the module refitted nowhere, with its familiarity level alpha set to each of ``--levels``, with its fitted error
  weights and with them zeroed (the error estimate is then p(1-p) alone);
- isotonic maps of |p - 0.5| to the error rate per turn bucket (``--buckets``: how many, turns 13 and later pooled),
  fitted on the model's own validation split: whether re-ranking by turn position helps;
- a logistic regression of the 0/1 error on every signal (|p - 0.5|, p(1-p), the heads' spread, the state distance,
  the text novelty so far, 1/t, the familiarity), fitted on half of the in-distribution conversations and scored on
  the other half and on the out-of-distribution set: the best a fitted combination of the signals ranks errors.

Needs scikit-learn: ``pip install -e '.[baselines]'``. Measured results: docs/benchmarks.md, "Session 15".
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from salesrl_jax import help_text
from salesrl_jax.eval.confidence_report import OOD_TURN, in_vs_out_auroc
from salesrl_jax.eval.evaluate import predict_with_confidence
from salesrl_jax.metrics import selective
from salesrl_jax.models.confidence import confidence_outputs, running_text_novelty
from salesrl_jax.run.trained_model import TrainedModel


@dataclasses.dataclass(frozen=True)
class Config:
    model: str
    """A trained run with a confidence fit."""
    data: str
    """Cached arrays of the in-distribution test set."""
    ood_data: str
    """Cached arrays of the out-of-distribution set (e.g. held-out industries)."""
    levels: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
    """Familiarity levels alpha to try (the gate g = min(1, familiarity / alpha))."""
    buckets: tuple[int, ...] = (1, 4, 13)
    """Turn buckets of the isotonic error maps to try."""


class Turns(NamedTuple):
    """What the measures read of a set of turns."""

    prediction: np.ndarray
    outcome: np.ndarray
    turn_index: np.ndarray


def turns(pred, rows: np.ndarray | None = None) -> Turns:
    chosen = slice(None) if rows is None else rows
    return Turns(pred.prediction[chosen], pred.outcome[chosen], pred.turn_index[chosen])


def error(pred) -> np.ndarray:
    return ((pred.prediction >= 0.5) != (pred.outcome == 1)).astype(np.float64)


def signal_features(pred) -> np.ndarray:
    """``[turns, 7]``: the signals a fitted combination may use, each a function of turns 1..t."""
    p = pred.prediction.astype(np.float64)
    running = running_text_novelty(np.asarray(pred.extra.text_novelty), pred.turn_index)
    return np.column_stack([np.abs(p - 0.5), p * (1 - p), pred.uncertainty, np.asarray(pred.extra.distance), running,
                            1.0 / (pred.turn_index + 1), pred.confidence.familiarity])


def measure(inside: Turns, outside: Turns, conf_in: np.ndarray, conf_out: np.ndarray) -> dict[str, float]:
    a, b = inside.turn_index == OOD_TURN - 1, outside.turn_index == OOD_TURN - 1
    loss_in, loss_out = error(inside), error(outside)
    return {"auroc_at_4": in_vs_out_auroc(conf_in[a], conf_out[b]),
            "aurc_in": selective.aurc(conf_in, loss_in),
            "aurc_mixed": selective.aurc(np.concatenate([conf_in, conf_out]), np.concatenate([loss_in, loss_out]))}


def matched_error(inside, outside, bins: int = 20) -> tuple[float, float]:
    """The out-of-distribution set's 0/1 error rate, and the rate its turns would have with the in-distribution
    set's error rate at the same margin |p - 0.5| (bins: quantiles of the in-distribution margins). Deferring
    unfamiliar turns can only beat |p - 0.5| if the first exceeds the second: if the model is as often wrong at a
    given margin out of distribution as in it, an unfamiliar turn is no riskier than a familiar one that looks alike."""
    margin_in, margin_out = np.abs(inside.prediction - 0.5), np.abs(outside.prediction - 0.5)
    edges = np.quantile(margin_in, np.linspace(0, 1, bins + 1)[1:-1])
    bin_in, bin_out = np.searchsorted(edges, margin_in), np.searchsorted(edges, margin_out)
    rate_in = np.bincount(bin_in, error(inside), bins) / np.maximum(np.bincount(bin_in, minlength=bins), 1)
    return float(error(outside).mean()), float(rate_in[bin_out].mean())


def _turn_bucket(turn_index: np.ndarray, count: int) -> np.ndarray:
    return np.minimum(np.minimum(turn_index, 12) * count // 13, count - 1)


def isotonic_error_maps(pred, count: int) -> list:
    """Per turn bucket, a decreasing isotonic map from |p - 0.5| to the 0/1 error rate."""
    from sklearn.isotonic import IsotonicRegression

    bucket = _turn_bucket(pred.turn_index, count)
    return [IsotonicRegression(increasing=False, out_of_bounds="clip").fit(
        np.abs(pred.prediction[bucket == k] - 0.5), error(pred)[bucket == k]) for k in range(count)]


def mapped_confidence(maps: list, pred, count: int) -> np.ndarray:
    """Minus the mapped error rate; ties within a flat step broken by |p - 0.5|."""
    margin = np.abs(pred.prediction - 0.5).astype(np.float64)
    bucket, out = _turn_bucket(pred.turn_index, count), np.zeros(len(margin))
    for k, iso in enumerate(maps):
        rows = bucket == k
        out[rows] = -iso.predict(margin[rows]) + 1e-6 * margin[rows]
    return out


def main(config: Config) -> dict[str, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression

    model = TrainedModel.load(config.model)
    fit = model.confidence
    if fit is None:
        raise SystemExit(f"{config.model}: no confidence fit (salesrl confidence --model {config.model})")
    inside, _ = predict_with_confidence(model, model.graphdef, model.params, config.data, "all", None)
    outside, _ = predict_with_confidence(model, model.graphdef, model.params, config.ood_data, "all", None)
    t_in, t_out = turns(inside), turns(outside)
    table = {"|p - 0.5|": measure(t_in, t_out, np.abs(inside.prediction - 0.5), np.abs(outside.prediction - 0.5)),
             "module as fitted": measure(t_in, t_out, inside.confidence.confidence, outside.confidence.confidence),
             "familiarity alone": measure(t_in, t_out, inside.confidence.familiarity, outside.confidence.familiarity)}
    for alpha in config.levels:
        for zeroed in (False, True):
            params = fit.replace(familiarity_level=jnp.asarray(alpha, jnp.float32),
                                 error_weights=fit.error_weights * (0.0 if zeroed else 1.0))
            conf = [confidence_outputs(params, pred.prediction, pred.uncertainty, pred.extra, pred.turn_index)
                    .confidence for pred in (inside, outside)]
            name = f"alpha {alpha}" + (", error weights zeroed" if zeroed else "")
            table[name] = measure(t_in, t_out, np.asarray(conf[0]), np.asarray(conf[1]))

    # Per-turn-bucket isotonic maps of |p - 0.5| to the error rate, fitted on the validation split.
    valid, _ = predict_with_confidence(model, model.graphdef, model.params, model.config.data.train, "valid", None)
    for count in config.buckets:
        maps = isotonic_error_maps(valid, count)
        table[f"isotonic |p - 0.5| by turn, {count} bucket(s)"] = measure(
            t_in, t_out, mapped_confidence(maps, inside, count), mapped_confidence(maps, outside, count))

    # The best a fitted combination does: fitted on the even-numbered in-distribution conversations, measured on the
    # odd-numbered ones (beside |p - 0.5| on the same half) and the out-of-distribution set.
    fit_rows = inside.conversation % 2 == 0
    features_in, features_out = signal_features(inside), signal_features(outside)
    regression = LogisticRegression(max_iter=2000).fit(features_in[fit_rows], error(inside)[fit_rows])
    half = turns(inside, ~fit_rows)
    table["logistic regression on every signal (odd half)"] = measure(
        half, t_out, -regression.decision_function(features_in[~fit_rows]), -regression.decision_function(features_out))
    table["|p - 0.5| (odd half)"] = measure(half, t_out, np.abs(half.prediction - 0.5), np.abs(t_out.prediction - 0.5))

    width = max(len(name) for name in table) + 2
    print(f"0/1 error rate: in-distribution {error(inside).mean():.3f}, "
          f"out of distribution {error(outside).mean():.3f}")
    actual, expected = matched_error(inside, outside)
    print(f"out of distribution at the in-distribution error rate of each margin |p - 0.5|: {expected:.3f} "
          f"(actual {actual:.3f}: {actual - expected:+.3f})")
    print("form".ljust(width) + f"{'AUROC@4':>9}{'AURC in':>9}{'mixed':>9}")
    for name, row in table.items():
        print(name.ljust(width) + f"{row['auroc_at_4']:9.3f}{row['aurc_in']:9.4f}{row['aurc_mixed']:9.4f}")
    return table


if __name__ == "__main__":
    main(help_text.cli(Config))

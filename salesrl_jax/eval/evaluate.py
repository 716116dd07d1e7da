"""`salesrl evaluate` as a function: a trained model's predictions on cached arrays, tabulated and reported."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from flax import nnx

from salesrl_jax.arrays.split import Split
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.eval.confidence_report import confidence_tables, ood_tables
from salesrl_jax.eval.report import evaluation_tables, format_tables, write_report
from salesrl_jax.models.confidence import confidence_outputs, signals_of, turn_bucket
from salesrl_jax.models.predict import (
    HOLDOUT,
    TurnPredictions,
    cross_fitted,
    predict_arrays,
    shared_predict,
    wide_map_of,
)
from salesrl_jax.run.trained_model import TrainedModel


def check_labels(pred: TurnPredictions, data) -> None:
    """Outcomes are 0 or 1, and both occur: otherwise the metrics would be nonsense (an outcome code of 7) or
    undefined (AUC of a single class), so say which instead of printing them."""
    outcomes = np.unique(pred.outcome)
    bad = [int(o) for o in outcomes if o not in (0, 1)]
    if bad:
        first = pred.ids[int(pred.conversation[np.isin(pred.outcome, bad)][0])]
        raise ValueError(f"{data}: outcomes must be 0 or 1, found {bad} (first in conversation {first!r}); "
                         "re-embed the archive with this library (its reader validates outcomes)")
    if len(outcomes) < 2:
        raise ValueError(f"{data}: every evaluated conversation has outcome {int(outcomes[0])}: AUC and calibration "
                         "need both outcomes; evaluate on a set with both")


class Section(NamedTuple):
    """A part of an evaluation computed beyond this package (the baselines beside the model, say): its tables under
    ``key`` in ``metrics.json``, and its Markdown, printed and reported after the evaluation's own tables."""

    key: str
    tables: dict
    markdown: list[str]
    report_only: tuple[str, ...] | list[str] = ()  # the report's lines that a terminal cannot show (its figures)


@dataclasses.dataclass
class Evaluation:
    predictions: TurnPredictions
    tables: dict
    report: Path
    sections: list[Section] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        extra = "".join("\n" + "\n".join(s.markdown) for s in self.sections)
        return f"{format_tables(self.tables)}{extra}\n\nreport: {self.report}"


def predict_with_confidence(model: TrainedModel, graphdef, params, data, split: Split, max_conversations: int | None
             ) -> tuple[TurnPredictions, TurnArrays]:
    """Every turn's prediction on ``data`` (and its arrays), with the confidence module's outputs when the model
    has a fit."""
    model.require_split(split)
    arrays = TurnArrays.open(data)
    model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {data}")
    confidence = model.confidence
    pred = predict_arrays(shared_predict(graphdef, None if confidence is None else signals_of), params, arrays,
                          split=split, valid_fraction=model.config.data.valid_fraction,
                          split_seed=model.config.data.split_seed, rows=model.config.eval_rows_per_minibatch,
                          max_conversations=max_conversations, args=confidence)
    # The run's own validation split as its training read it: the wide term out of fold (`cross_fitted`).
    pred = cross_fitted(pred, model.meta.get(HOLDOUT), wide_map_of(model.params), arrays, split,
                        model.config.data.valid_fraction, model.config.data.split_seed)
    check_labels(pred, data)
    if confidence is not None:
        pred.confidence = confidence_outputs(confidence, pred.prediction, pred.uncertainty, pred.extra,
                                             pred.turn_index)
    return pred, arrays


def evaluate_model(model: TrainedModel, data: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   split: Split = "all", max_conversations: int | None = None,
                   weights: tuple[nnx.GraphDef, nnx.State] | None = None, label: str = "",
                   ood_data: str | os.PathLike[str] | None = None, plots: bool = True,
                   sections: Sequence[Callable[[TurnPredictions, Path], Section]] = ()) -> Evaluation:
    """Predict every turn of the labelled conversations of ``data`` (or of the model's validation split of it,
    ``split="valid"``) and write ``report.md``, ``metrics.json`` and plots to ``out``.

    ``weights`` replaces the model's own graph and parameters (the int8 form, say); ``label`` names them. A model
    with a confidence fit is evaluated for it too (`salesrl_jax.eval.confidence_report`); ``ood_data``: arrays of
    out-of-distribution conversations (other industries, another corpus) the confidence should tell apart;
    ``plots=False`` leaves the report's figures out (a study reads only the numbers); each of ``sections`` is called
    with the predictions and ``out`` once they are made, and its `Section` joins the tables and the report.
    """
    if ood_data is not None and model.confidence is None:  # said before any work
        raise ValueError(f"--ood-data: the model at {model.directory} has no confidence fit; fit it with "
                         "`salesrl confidence MODEL` first")
    graphdef, params = weights or (model.graphdef, model.params)
    pred, arrays = predict_with_confidence(model, graphdef, params, data, split, max_conversations)
    header = (f"model `{model.directory}` ({model.config.name}{', ' + label if label else ''}), "
              f"data `{data}`, embeddings `{arrays.identity.key}`")
    tables = evaluation_tables(pred)
    if pred.confidence is not None:
        fitted = model.confidence
        starts, counts = np.asarray(fitted.bucket_starts), np.asarray(fitted.novelty_count)

        def calibration_turns(turn_index: int) -> int:  # of the bucket whose quantile that turn's interval used
            return int(counts[int(turn_bucket(starts, turn_index, xp=np))])

        tables["confidence"] = confidence_tables(pred, float(fitted.interval_level), calibration_turns)
    if ood_data is not None:
        outside, _ = predict_with_confidence(model, graphdef, params, ood_data, "all", max_conversations)
        tables["ood"] = ood_tables(pred, outside)
        header += f"; out-of-distribution data `{ood_data}`"
    out = Path(out)
    added = [section(pred, out) for section in sections]
    for section in added:
        tables[section.key] = section.tables
    report = write_report(pred, out, f"Evaluation: {model.config.name}", header, tables=tables, plots=plots,
                          markdown=[line for section in added for line in (*section.markdown, *section.report_only)])
    return Evaluation(pred, tables, report, added)

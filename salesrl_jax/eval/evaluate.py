"""`salesrl evaluate` as a function: a trained model's predictions on cached arrays, tabulated and reported."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from flax import nnx

from salesrl_jax.arrays.split import Split
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.eval.report import evaluation_tables, format_tables, write_report
from salesrl_jax.models.predict import TurnPredictions, make_predict, predict_arrays
from salesrl_jax.run.trained_model import TrainedModel


@dataclasses.dataclass
class Evaluation:
    predictions: TurnPredictions
    tables: dict
    report: Path

    def summary(self) -> str:
        return f"{format_tables(self.tables)}\n\nreport: {self.report}"


def evaluate_model(model: TrainedModel, data: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   split: Split = "all", max_conversations: int | None = None,
                   weights: tuple[nnx.GraphDef, nnx.State] | None = None, label: str = "") -> Evaluation:
    """Predict every turn of the labelled conversations of ``data`` (or of the model's validation split of it,
    ``split="valid"``) and write ``report.md``, ``metrics.json`` and plots to ``out``.

    ``weights`` replaces the model's own graph and parameters (the int8 form, say); ``label`` names them.
    """
    arrays = TurnArrays.open(data)
    model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {data}")
    graphdef, params = weights or (model.graphdef, model.params)
    pred = predict_arrays(make_predict(graphdef), params, arrays, split=split,
                          valid_fraction=model.config.data.valid_fraction, split_seed=model.config.data.split_seed,
                          rows=model.config.eval_rows_per_minibatch, max_conversations=max_conversations)
    header = (f"model `{model.directory}` ({model.config.name}{', ' + label if label else ''}), "
              f"data `{data}`, embeddings `{arrays.identity.key}`")
    report = write_report(pred, Path(out), f"Evaluation: {model.config.name}", header)
    return Evaluation(pred, evaluation_tables(pred), report)

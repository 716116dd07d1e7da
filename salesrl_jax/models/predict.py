"""Per-turn predictions of a model over cached arrays, with everything evaluation needs beside them.

Used by training (validation), evaluation, calibration and archive scoring alike: the model applied to
the arrays it reads, below all of them in the package graph.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.arrays.batches import gather_packed, plan_packing
from salesrl_jax.arrays.split import Split, split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.inputs import TurnInputs


@dataclasses.dataclass
class TurnPredictions:
    """Flat per-turn arrays for a set of conversations, in cache order (turns of a conversation consecutive)."""

    prediction: np.ndarray  # [turns] P(sale | turns 1..t)
    uncertainty: np.ndarray  # [turns] ensemble disagreement
    oracle: np.ndarray  # [turns] simulator ground truth (NaN for real data)
    outcome: np.ndarray  # [turns] the conversation's outcome
    turn_index: np.ndarray  # [turns] 0-based
    length: np.ndarray  # [turns] the conversation's number of turns
    conversation: np.ndarray  # [turns] index into ids
    ids: list[str]
    industries: list[str | None]  # per conversation
    extra: object = None  # the predictor's extra per-turn outputs (`make_predict`), rows as above
    confidence: object = None  # `salesrl_jax.models.confidence.ConfidenceOutput` of numpy [turns] arrays, if computed

    @property
    def last(self) -> np.ndarray:
        """Mask of each conversation's last turn."""
        return self.turn_index == self.length - 1


PREDICT_BLOCK_ROWS = 1024  # larger batches run block by block on CPU (same result, faster: see make_predict)


def default_block_rows() -> int:
    """`PREDICT_BLOCK_ROWS` on CPU; 0 (one pass) on an accelerator, where a host loop over blocks would copy every
    block from the host and back (measured on an H200: 342k turns/s at a batch of 16,384 block by block, against
    2.6M at a batch of 1,024 in one pass)."""
    return PREDICT_BLOCK_ROWS if jax.default_backend() == "cpu" else 0


def make_predict(graphdef: nnx.GraphDef, block_rows: int | None = None, extra: Callable | None = None
                 ) -> Callable:
    """``predict(params, inputs) -> (prediction [N], uncertainty [N])``, jitted once per row count.

    ``extra(out, inputs, args) -> pytree of [N, ...] arrays`` adds per-turn outputs computed in the same jitted
    pass from the `AgentOutput`, the inputs and ``args`` (arrays given at call time, ``predict(params, inputs,
    args)``: the confidence module's parameters, say); ``predict`` then returns ``(prediction, uncertainty,
    extra)``.

    A batch of more than ``block_rows`` rows (a multiple of it; default `default_block_rows`, 0 for one pass)
    runs as a host loop over blocks of
    ``block_rows``, carrying the history pools across block edges (`SalesAgent.predict_block`): the
    same result as one pass. Each block's working set stays in cache, and a host loop beats a
    ``lax.scan`` over blocks here: inside XLA:CPU's loop body the pools' associative scan fuses its
    levels with the slicing of the scanned inputs and runs several times slower (docs/benchmarks.md).
    """

    def outputs(out, inputs: TurnInputs, args):
        base = (out.prediction, out.uncertainty)
        return base if extra is None else base + (extra(out, inputs, args),)

    @jax.jit
    def whole(params, inputs: TurnInputs, args):
        return outputs(nnx.merge(graphdef, params).predict(inputs), inputs, args)

    @jax.jit
    def block(params, inputs: TurnInputs, carry, args):
        out, carry = nnx.merge(graphdef, params).predict_block(inputs, carry)
        return outputs(out, inputs, args), carry

    block_rows = default_block_rows() if block_rows is None else block_rows

    def predict(params, inputs: TurnInputs, args=None):
        n = inputs.features.shape[0]
        if not block_rows or n <= block_rows or n % block_rows:
            return whole(params, inputs, args)
        encoder = nnx.merge(graphdef, params).encoder
        if encoder.config.feed_prediction:
            return whole(params, inputs, args)
        # Committed to the device, as the carries the blocks return are: an uncommitted first carry compiled the
        # block program twice (2 s of every archive scored).
        carry = jax.device_put(encoder.init_carry(), jax.local_devices()[0])
        host = jax.tree.map(np.asarray, inputs)  # numpy slices are free; slicing device arrays costs an op each
        results = []
        for start in range(0, n, block_rows):
            rows = jax.tree.map(lambda x: x[start:start + block_rows], host)  # noqa: B023
            result, carry = block(params, rows, carry, args)
            results.append(result)
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *results)

    predict.programs = {"whole": whole, "block": block}  # the jitted programs (their compile caches: tests)
    return predict


@functools.lru_cache(maxsize=16)
def shared_predict(graphdef: nnx.GraphDef, extra: Callable | None = None) -> Callable:
    """`make_predict` once per model structure (and ``extra``, a module-level function): models that differ only in
    their parameters (a study's seeds, a crossval's folds, a model and its recalibrated copy) share its compiled
    programs, about 1 s of compiling per model otherwise."""
    return make_predict(graphdef, extra=extra)


def predict_part(predict: Callable, params, part, conversations: np.ndarray, rows: int,
                 chunk_minibatches: int = 8, args=None) -> tuple:
    """``predict``'s outputs ``[part turns, ...]`` (prediction, uncertainty, and any extra) for ``conversations`` of
    ``part`` (NaN elsewhere); ``args`` as in `make_predict`."""
    columns = None
    planned = plan_packing(part.lengths, conversations, rows)
    for start in range(0, len(planned), chunk_minibatches):
        minibatches = planned[start:start + chunk_minibatches]
        batch = gather_packed(part, minibatches, rows, len(minibatches))
        for m in range(len(minibatches)):
            leaves, tree = jax.tree.flatten(predict(params, TurnInputs.from_packed(batch, m), *(
                () if args is None else (args,))))
            if columns is None:
                columns = [np.full((part.num_turns,) + leaf.shape[1:], np.nan, np.float32) for leaf in leaves]
            keep = batch.index[m] >= 0
            for column, leaf in zip(columns, leaves):
                column[batch.index[m][keep]] = np.asarray(leaf)[keep]
    if columns is None:  # no conversation chosen: nothing predicted
        return np.full(part.num_turns, np.nan, np.float32), np.full(part.num_turns, np.nan, np.float32)
    return jax.tree.unflatten(tree, columns)


def predict_arrays(predict: Callable, params, arrays: TurnArrays, *, split: Split = "all", valid_fraction: float = 0.0,
                   split_seed: int = 0, rows: int = 4096, max_conversations: int | None = None, args=None,
                   choose: Callable[[np.ndarray], np.ndarray] | None = None) -> TurnPredictions:
    """Predict every turn of the chosen labelled conversations (``split``: all / valid / train; ``choose`` keeps a
    subset of each part's chosen conversation indices). A ``predict`` with extra outputs (`make_predict`), called
    with ``args``, fills ``TurnPredictions.extra``."""
    extras: list = []
    columns: dict[str, list] = {k: [] for k in ("prediction", "uncertainty", "oracle", "outcome", "turn_index",
                                                "length", "conversation")}
    ids: list[str] = []
    industries: list[str | None] = []
    for p in range(len(arrays)):
        part = arrays.part(p)
        chosen = split_conversations(part, split, valid_fraction, split_seed)
        if choose is not None:
            chosen = choose(chosen)
        if max_conversations is not None:
            chosen = chosen[:max(max_conversations - len(ids), 0)]
        if not len(chosen):
            continue
        turn_pred, turn_unc, *extra = predict_part(predict, params, part, chosen, rows, args=args)
        offsets = np.asarray(part.offsets)
        rows_of = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in chosen])
        if extra:
            extras.append(jax.tree.map(lambda x: x[rows_of], extra[0]))  # noqa: B023
        lengths = offsets[chosen + 1] - offsets[chosen]
        base = len(ids)
        columns["prediction"].append(turn_pred[rows_of])
        columns["uncertainty"].append(turn_unc[rows_of])
        columns["oracle"].append(np.asarray(part.oracle_prob)[rows_of])
        columns["outcome"].append(np.repeat(np.asarray(part.outcome)[chosen], lengths).astype(np.int8))
        columns["turn_index"].append(np.asarray(part.turn_index)[rows_of].astype(np.int32))
        columns["length"].append(np.repeat(lengths, lengths).astype(np.int32))
        columns["conversation"].append(np.repeat(np.arange(base, base + len(chosen)), lengths))
        names = part.industry_names()
        ids.extend(part.ids[c] for c in chosen)
        industries.extend(names[c] for c in chosen)
        if max_conversations is not None and len(ids) >= max_conversations:
            break
    if not ids:
        raise ValueError(f"{arrays.path}: no labelled conversations in the {split!r} split to evaluate "
                         f"({arrays.labels_note()})")
    out = {k: np.concatenate(v) for k, v in columns.items()}
    if np.isnan(out["prediction"]).any():
        raise AssertionError("a turn was not predicted")  # a packing bug, never bad input
    extra = jax.tree.map(lambda *xs: np.concatenate(xs), *extras) if extras else None
    return TurnPredictions(**out, ids=ids, industries=industries, extra=extra)


HOLDOUT = "wide_holdout"
"""The checkpoint meta key of a run's validation cross-fitting (`cross_fitted`): the data it was fitted on, its
``valid_fraction`` and ``split_seed``, and per validation conversation id the wide term's out-of-fold running logit less
the full weights' at each turn (`salesrl_jax.train.wide_fit`)."""


def wide_map_of(params) -> np.ndarray | None:
    """The model's wide-term map ``(alpha, beta, shift)`` (None: no wide term)."""
    project = nnx.to_pure_dict(params).get("encoder", {}).get("project", {})
    return None if "wide_map" not in project else np.asarray(project["wide_map"], np.float64)


def cross_fitted(pred: TurnPredictions, record: dict | None, wide_map, arrays: TurnArrays, split: Split,
                 valid_fraction: float, split_seed: int) -> TurnPredictions:
    """``pred`` of a run's own validation split as if the wide term had not read its conversations.

    The wide term's weights are fitted on every labelled conversation, the validation split's included, and the
    model serves them; a validation turn read with them is partly in-sample. With ``m_t`` the running logit under the
    full weights and ``m_t^oof`` under the weights of the cross-validation fold that held the conversation out, the
    turn's logit moves by

        max(alpha + beta log t, 0) (m_t^oof - m_t)

    (the model's own ``alpha, beta``: a recalibration scales them), which is the prediction the same model makes with
    the out-of-fold weights, as its training turns were read. Early stopping, the recalibration and the confidence
    fit all read the validation split so. The ensemble's uncertainty is left as predicted. Unchanged when ``record``
    (`HOLDOUT`) is None or was fitted on other arrays (their parts' digests, or their path where the manifest has
    none: a moved copy still matches), another split, or ``split`` is not ``valid``."""
    if (record is None or wide_map is None or split != "valid" or record["valid_fraction"] != valid_fraction
            or record["split_seed"] != split_seed or not _same_arrays(record, arrays)):
        return pred
    alpha, beta = float(wide_map[0]), float(wide_map[1])
    # One flat table of every predicted conversation's differences (empty where it has none), read per turn at
    # offset[conversation] + turn: a loop over conversations, not turns.
    differences = [np.asarray(record["turns"].get(i, ()), np.float64) for i in pred.ids]
    lengths = np.array([len(d) for d in differences], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    table = np.concatenate(differences + [np.zeros(1)])
    conversation, t = np.asarray(pred.conversation, np.int64), np.asarray(pred.turn_index, np.int64)
    present = t < lengths[conversation]
    shift = np.where(present, table[np.where(present, offsets[conversation] + t, len(table) - 1)], 0.0)
    shift *= np.maximum(alpha + beta * np.log(t + 1.0), 0.0)
    p = np.clip(pred.prediction.astype(np.float64), 1e-7, 1 - 1e-7)
    z = np.log(p) - np.log1p(-p) + shift
    return dataclasses.replace(pred, prediction=(1.0 / (1.0 + np.exp(-z))).astype(pred.prediction.dtype))


def _same_arrays(record: dict, arrays: TurnArrays) -> bool:
    digests = list(arrays.part_digests)
    if record.get("parts") and None not in digests:
        return record["parts"] == digests
    return Path(record["data"]).resolve() == Path(arrays.path).resolve()

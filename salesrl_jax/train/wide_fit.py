"""The wide term's statistics (`salesrl_jax.models.bag`, `ModelConfig.wide_text`), fitted on every labelled
conversation before the deep model trains: a whole-dialogue logistic regression on the mean of the turns' raw tf-idf
vectors, and the gain its running mean earns at each turn, from its out-of-fold logits.

With ``x_i`` the sublinear tf-idf vector of turn ``i`` (the bag's idf), ``c_i`` 1 if the customer speaks it (the
``is_customer`` turn feature), conversation ``c`` of ``T_c`` turns and outcome ``y_c``:

1. **Weights.** ``z_c(w, u, b) = b + (1 / T_c) sum_{i<=T_c} x_i . (w + c_i u)`` and

       L(w, u, b) = mean_c [ log(1 + exp(z_c)) - y_c z_c ] + (lam / 2) (||w||^2 + ||u||^2)

   minimised by L-BFGS, ``lam`` chosen from `L2_GRID` by k-fold cross-validation over the labelled conversations,
   the validation split's included (held-out log loss; each fold's path warm-started from strong to weak). With
   ``u = 0`` this is the TF-IDF baselines' whole-dialogue variant, the strongest of them late in a conversation;
   ``u`` lets the same words weigh differently from the customer (a linear probe on PersuasionForGood: last-turn AUC
   0.698 without it, 0.710 with it; CaSiNo level, 0.637 against 0.638; docs/benchmarks.md, session 19). It is
   fitted as one weight vector over ``2 buckets`` on each turn's slots twice (`speaker_slots`).
2. **Gain.** Each fitted turn's out-of-fold running logit ``m_t = z_t`` (the weights of the fold that held its
   conversation out, read at turn ``t``), centred by its mean ``mu``; then ``(alpha, beta)`` maximising the
   likelihood of ``y`` under ``sigmoid(d + (alpha + beta log t) (m_t - mu))`` over every fitted turn. Stored as
   ``wide_map = (alpha, beta, -mu)`` with the full-data weights: ``d`` is dropped, the deep heads have their own
   base rate.

3. **Cross-fitting.** The fit reads the validation split too: a linear model gains most from every conversation,
   and on small data the split is a fifth of them (`salesrl crossval` on 500 conversations: last-turn AUC +0.017 on
   CaSiNo, +0.027 on PersuasionForGood for the linear model alone; docs/benchmarks.md, session 29). No validation
   turn is read in-sample: `WideFit.holdout` keeps, per validation conversation, the difference between its running
   logit under the weights of the fold that held it out and under the full weights, and whatever predicts the run's
   validation split (early stopping, the recalibration, the confidence fit, `salesrl evaluate --split valid`) moves
   each turn's logit by it (`salesrl_jax.models.predict.cross_fitted`), as the training turns are read.

4. **Offsets.** The deep model trains with the term off (`salesrl_jax.models.bag.without_wide_term`), its loss
   adding at each training turn ``max(alpha + beta log t, 0) (m_t - mu)`` from that turn's out-of-fold ``m_t``
   (`WideFit.offsets`; the full weights for a training conversation beyond `MAX_FIT_CONVERSATIONS`, which no fit
   saw). So the deep heads learn what the linear model misses on turns it did not fit; everywhere else they are
   scored beside the full-data weights.

Measured with `salesrl crossval` (docs/benchmarks.md, sessions 18-19), last-turn AUC. Session 17's form, an
every-turn fit at a fixed strong L2 added to the logits in training too: PersuasionForGood 0.677, CaSiNo 0.638. The
linear model alone, whole-dialogue against every-turn: 0.698 against 0.667 (PersuasionForGood). Weighed against the
deep model on the inner validation split instead (two weights on 150-180 conversations): 0.680, the weights swinging
from -0.19 to +0.43 between folds.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from salesrl_jax.arrays.split import split_conversations, validation_mask
from salesrl_jax.arrays.store import Part, TurnArrays
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.models.bag import sublinear_tfidf
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.models.scan import restarting_sums

L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
"""The ``lam`` the weights' cross-validation chooses from (the loss is a mean over conversations, so scikit-learn's
``C`` is ``1 / (lam x conversations)``). PersuasionForGood's and CaSiNo's folds choose 3e-3 to 1e-2."""
CV_FOLDS = 5
MAX_FIT_CONVERSATIONS = 20_000
"""At most this many training conversations (the first of each part, in cache order) fit the wide term: it matters
on small sets, and a linear model on the mean tf-idf has long converged by then; RAM stays bounded on 1M."""
MIN_FIT_CONVERSATIONS = 50
"""Fewer training conversations fit no wide term (it adds 0; the run warns): a whole-dialogue model on a handful of
conversations separates them perfectly, and its out-of-fold gain has nothing to be measured on."""
CUSTOMER_FEATURE = FEATURE_NAMES.index("is_customer")  # c_i of the module docstring, from the turn features
LBFGS_STEPS = 150
"""At most this many L-BFGS steps per fit (checked against scikit-learn's lbfgs); a fit stops sooner once its
gradient's norm is under `LBFGS_TOLERANCE`."""
LBFGS_TOLERANCE = 1e-7
"""Measured on a PersuasionForGood crossval fold (813 conversations, 40k buckets in use), along `L2_GRID` warm-started:
the loss is within 1e-6 of its 150-step value after 7-24 steps, and the gradient's norm falls to float32's floor
(about 8e-9) within 20-45; a fit run to the fixed 150 steps spent 18 of the fold's 53 s of training there."""


class NoWideTerm(UserWarning):
    """Why a run fits no wide term (`fit_wide` returns None): its message is also recorded in the checkpoint meta."""


@dataclasses.dataclass(frozen=True)
class TurnRows:
    """The turns of some conversations, flat, conversations consecutive: what the fit reads."""

    ids: np.ndarray  # [N, K] int32 bucket ids (0: padding)
    counts: np.ndarray  # [N, K] float32 counts
    starts: np.ndarray  # [N] bool: first turn of its conversation
    labels: np.ndarray  # [N] float32: the conversation's outcome
    source: tuple = ()  # (part number, the rows' indices in that part [n]) per piece, in row order
    customer: np.ndarray | None = None  # [N] float32: c_i, 1 where the customer speaks (None: nobody)


@dataclasses.dataclass(frozen=True)
class WideFit:
    """The fitted statistics and how they were chosen."""

    weights: np.ndarray  # [buckets] float32: w, fitted on every training conversation
    customer_weights: np.ndarray  # [buckets] float32: u, the customer's turns' own weights (fitted with w)
    wide_map: tuple[float, float, float]  # (alpha, beta, shift): the gain at turn t and the centring
    l2: float  # the chosen lam
    cv_log_loss: dict[float, float]  # lam -> cross-validated log loss at the conversations' last turns
    gain_log_loss: float  # the out-of-fold running logits' log loss over every training turn, with the gain
    offsets: dict | None = None  # part number -> [turns of the part] float32: each training turn's wide logit, gain
    # included, out of fold (in-sample where no usable fold held its conversation out); NaN outside the training split
    intercept: float = 0.0  # b of the full fit (in the shift of wide_map; the model's running mean has none)
    holdout: dict | None = None  # validation conversation id -> [its turns] float32: m_t out of fold less m_t under
    # the full weights (`salesrl_jax.models.predict.cross_fitted`); none for those the fit did not read


def part_rows(part: Part, chosen: np.ndarray, number: int) -> TurnRows:
    """The turns of conversations ``chosen`` (indices) of ``part``, part number ``number``."""
    offsets = np.asarray(part.offsets)
    where = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in chosen])
    part = part.select(chosen)
    starts = np.zeros(part.num_turns, bool)
    starts[np.asarray(part.offsets[:-1])] = True
    return TurnRows(np.asarray(part.gram_ids, np.int32), np.asarray(part.gram_counts, np.float32), starts,
                    np.repeat(np.asarray(part.outcome), part.lengths).astype(np.float32), ((number, where),),
                    np.asarray(part.features)[:, CUSTOMER_FEATURE].astype(np.float32))


def turn_rows(arrays: TurnArrays, split: str, valid_fraction: float, split_seed: int,
              max_conversations: int | None = None) -> TurnRows | None:
    """The turns of ``split``'s labelled conversations of sparse ``arrays`` (at most ``max_conversations``, by default
    `MAX_FIT_CONVERSATIONS`)."""
    max_conversations = MAX_FIT_CONVERSATIONS if max_conversations is None else max_conversations
    pieces, taken = [], 0
    for number, part in enumerate(arrays.iter_parts()):
        chosen = split_conversations(part, split, valid_fraction, split_seed)[:max_conversations - taken]
        if not len(chosen):
            continue
        pieces.append(part_rows(part, chosen, number))
        taken += len(chosen)
        if taken >= max_conversations:
            break
    if not pieces:
        return None
    width = max(p.ids.shape[1] for p in pieces)  # parts pad their turns' grams to their own widest turn

    def padded(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])))

    return TurnRows(np.concatenate([padded(p.ids) for p in pieces]), np.concatenate([padded(p.counts) for p in pieces]),
                    np.concatenate([p.starts for p in pieces]), np.concatenate([p.labels for p in pieces]),
                    tuple(piece for p in pieces for piece in p.source), np.concatenate([p.customer for p in pieces]))


def turn_numbers(starts: np.ndarray) -> np.ndarray:
    """``t [N]``, counting from 1 within each conversation of flat rows."""
    first = np.flatnonzero(starts)
    return np.arange(len(starts)) - first[np.cumsum(starts) - 1] + 1


def gained(m: np.ndarray, turn: np.ndarray, wide_map: tuple[float, float, float]) -> np.ndarray:
    """``max(alpha + beta log t, 0) (m + shift)``: the wide logit the heads add, from running logits ``m`` that
    include no intercept (`GramBag.wide_logit`)."""
    alpha, beta, shift = wide_map
    return np.maximum(alpha + beta * np.log(turn), 0.0) * (m + shift)


@jax.jit
def running_mean_logit(w: jnp.ndarray, b: jnp.ndarray, x: jnp.ndarray, ids: jnp.ndarray, starts: jnp.ndarray
                       ) -> jnp.ndarray:
    """``m_t = b + (1 / t) sum_{i<=t} x_i . w`` at each of flat rows (``x [N, K]`` the tf-idf weights of the slots
    ``ids [N, K]``, ``starts [N]`` the conversations' first turns): the running logit the model's wide term reads."""
    omega = jnp.sum(x * w[ids], axis=-1)
    _, sums = restarting_sums(jnp.stack([omega, jnp.ones_like(omega)], axis=-1), starts)  # as the encoder carries
    return b + sums[:, 0] / sums[:, 1]


@dataclasses.dataclass(frozen=True)
class ConversationRows:
    """Each conversation's mean tf-idf vector as sparse entries over the buckets the conversations use: ``z_c`` of
    the module docstring is ``b + sum over c's entries of value x w[vocab[column]]``."""

    conversation: np.ndarray  # [E] int32
    column: np.ndarray  # [E] int32: index into vocab
    value: np.ndarray  # [E] float32: sum over c's turns of x_ij / T_c for this bucket
    vocab: np.ndarray  # [V] int32 bucket ids used (with nonzero weight) by some conversation
    count: int  # C


def conversation_rows(rows: TurnRows, x: np.ndarray, ids: np.ndarray | None = None) -> ConversationRows:
    """`ConversationRows` from flat turn rows and their slots' tf-idf weights ``x [N, K]`` (the slots' buckets: ``ids``,
    by default the rows' own): the padding and the grams of idf 0 dropped, a bucket's entries summed within a
    conversation (so no row is read twice)."""
    ids = rows.ids if ids is None else ids
    row_conversation = np.cumsum(rows.starts) - 1
    count = int(row_conversation[-1]) + 1
    lengths = np.bincount(row_conversation, minlength=count)
    keep = (ids > 0) & (x != 0)
    conversation = np.broadcast_to(row_conversation[:, None], ids.shape)[keep]
    vocab, column = np.unique(ids[keep], return_inverse=True)
    keys, entry = np.unique(conversation.astype(np.int64) * len(vocab) + column, return_inverse=True)
    value = np.bincount(entry, weights=x[keep] / lengths[conversation], minlength=len(keys))
    return ConversationRows((keys // len(vocab)).astype(np.int32), (keys % len(vocab)).astype(np.int32),
                            value.astype(np.float32), vocab.astype(np.int32), count)


@functools.partial(jax.jit, static_argnames="count")
def conversation_logit(w: jnp.ndarray, b: jnp.ndarray, conversation: jnp.ndarray, column: jnp.ndarray,
                       value: jnp.ndarray, count: int) -> jnp.ndarray:
    """``z_c [count]`` of the module docstring from `ConversationRows` entries (``w`` over its vocab)."""
    return b + jax.ops.segment_sum(value * w[column], conversation, num_segments=count)


@functools.partial(jax.jit, static_argnames="count")
def _fit_weights(params: tuple, l2: jnp.ndarray, conversation: jnp.ndarray, column: jnp.ndarray, value: jnp.ndarray,
                 y: jnp.ndarray, fitting: jnp.ndarray, count: int) -> tuple:
    """``(w, b)`` minimising L of the module docstring at ``lam = l2`` over the conversations with ``fitting [C]``
    set, by L-BFGS from ``params``: until the gradient's norm is under `LBFGS_TOLERANCE`, at most `LBFGS_STEPS`
    steps."""
    def loss(p):
        z = conversation_logit(*p, conversation, column, value, count)
        data = jnp.sum(fitting * optax.sigmoid_binary_cross_entropy(z, y)) / jnp.maximum(jnp.sum(fitting), 1.0)
        return data + 0.5 * l2 * jnp.sum(p[0] * p[0])

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry):
        p, state = carry
        loss_value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=loss_value, grad=grad, value_fn=loss)
        return optax.apply_updates(p, updates), state

    def running(carry) -> jnp.ndarray:
        _, state = carry  # the state holds the step count and the gradient at the current parameters
        count, grad = optax.tree_utils.tree_get(state, "count"), optax.tree_utils.tree_get(state, "grad")
        steep = optax.global_norm(grad) >= LBFGS_TOLERANCE
        return (count == 0) | ((count < LBFGS_STEPS) & steep)

    params, _ = jax.lax.while_loop(running, step, (params, solver.init(params)))
    return params


def fit_gain(m: np.ndarray, turn: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[tuple, float]:
    """``((alpha, beta, shift), log loss)``: step 2 of the module docstring, by Newton's method on
    ``(m - mu, (m - mu) log t, 1)`` (``turn [N]`` counts from 1)."""
    mu = float(np.mean(m))
    centred = np.asarray(m, np.float64) - mu
    x = np.stack([centred, centred * np.log(np.asarray(turn, np.float64)), np.ones_like(centred)], axis=1)
    y = np.asarray(y, np.float64)
    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    theta = np.array([0.0, 0.0, np.log(base / (1 - base))])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -50.0, 50.0)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(y) + 1e-9 * np.eye(3)
        step = np.linalg.solve(hessian, x.T @ (p - y) / len(y))
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    z = x @ theta
    return (float(theta[0]), float(theta[1]), -mu), float(np.mean(np.logaddexp(0.0, z) - y * z))


def padded_size(size: int) -> int:
    """``size`` rounded up to a multiple of an eighth of the power of two below it (at most 12.5% more): sizes that
    differ by a few percent (a crossval's folds) mostly share one."""
    step = max(1, 2 ** (max(size, 1).bit_length() - 4))
    return -(-size // step) * step


def _padded(values: np.ndarray, fill: float = 0) -> np.ndarray:
    """``values [S, ...]`` followed by rows of ``fill`` up to `padded_size` (S) rows."""
    values = np.asarray(values)
    extra = np.full((padded_size(len(values)) - len(values),) + values.shape[1:], fill, values.dtype)
    return np.concatenate([values, extra])


def speaker_slots(rows: TurnRows, idf: np.ndarray, buckets: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(x [N, 2K], ids [N, 2K])``: each turn's slots twice, the second copy in buckets ``buckets..2 buckets - 1``
    weighted by ``c_i``, so that one weight vector over ``2 buckets`` is ``(w, u)`` of the module docstring."""
    n = len(rows.starts)
    customer = np.zeros(n, np.float32) if rows.customer is None else np.asarray(rows.customer, np.float32)
    # One compiled program on rows padded as the fit's arrays are: run op by op, each operation compiled afresh for
    # every fold's row count (about 1 s a fold, most of it compiling).
    x, ids = _speaker_slots(jnp.asarray(_padded(rows.ids)), jnp.asarray(_padded(rows.counts)),
                            jnp.asarray(_padded(customer)), jnp.asarray(idf, jnp.float32), buckets)
    return x[:n], ids[:n]


@functools.partial(jax.jit, static_argnames="buckets")
def _speaker_slots(ids: jnp.ndarray, counts: jnp.ndarray, customer: jnp.ndarray, idf: jnp.ndarray, buckets: int
                   ) -> tuple[jnp.ndarray, jnp.ndarray]:
    x = sublinear_tfidf(GramBags(ids, counts), idf)
    return (jnp.concatenate([x, x * customer[:, None]], axis=1),
            jnp.concatenate([ids, jnp.where(ids > 0, ids + buckets, 0)], axis=1))


def fit_wide(arrays: TurnArrays, idf: np.ndarray, valid_fraction: float, split_seed: int,
             grid: tuple[float, ...] = L2_GRID, folds: int = CV_FOLDS) -> WideFit | None:
    """The wide term's statistics (module docstring) from every labelled conversation of sparse ``arrays``, the
    validation split's included (cross-fitted: `WideFit.holdout` gives each validation turn the logit of the weights
    fitted without its conversation): conversations are assigned to ``folds`` folds by a generator seeded with
    ``split_seed``. None (no wide term, with a warning) with fewer than `MIN_FIT_CONVERSATIONS` training
    conversations or fewer than two folds holding out conversations of the rest's both outcomes."""
    train = turn_rows(arrays, "all", valid_fraction, split_seed)
    conversation_ids = [] if train is None else _conversation_ids(arrays, train)  # in row order
    validation = validation_mask(conversation_ids, valid_fraction, split_seed)  # as split_conversations has it
    conversations = int((~validation).sum())
    if conversations < MIN_FIT_CONVERSATIONS or len(np.unique(train.labels)) < 2:
        warnings.warn(f"{arrays.path}: {conversations} labelled training conversations (both outcomes needed, at least "
                      f"{MIN_FIT_CONVERSATIONS}): the run has no wide term", NoWideTerm, stacklevel=2)
        return None
    held = validation[np.cumsum(train.starts) - 1]  # the validation split's rows
    x, ids = speaker_slots(train, idf, arrays.dim)
    entries = conversation_rows(train, np.asarray(x), np.asarray(ids))
    n = entries.count
    y = train.labels[np.flatnonzero(train.starts)]
    fold = np.random.default_rng(split_seed).permutation(n) % folds
    # The fit's arrays padded to `padded_size`: the folds of a crossval (and runs on similar data) then share one
    # compiled L-BFGS program instead of compiling their own (about 10 s each). Padding is inert: entries of value 0,
    # conversations with no entries that no fit counts (``fitting`` 0), weights no entry reads (they stay 0).
    inputs = (jnp.asarray(_padded(entries.conversation)), jnp.asarray(_padded(entries.column)),
              jnp.asarray(_padded(entries.value)))
    count, y_padded = padded_size(n), jnp.asarray(_padded(y.astype(np.float32)))
    base = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    start = (jnp.zeros((padded_size(len(entries.vocab)),), jnp.float32),
             jnp.asarray(np.log(base / (1 - base)), jnp.float32))

    def path(fitting: np.ndarray, until: int) -> list[tuple]:
        """The fits along ``grid[:until]``, strong to weak, each warm-started from the last."""
        params, fits = start, []
        for l2 in grid[:until]:
            params = _fit_weights(params, jnp.asarray(l2, jnp.float32), *inputs, y_padded,
                                  jnp.asarray(_padded(fitting.astype(np.float32))), count=count)
            fits.append(params)
        return fits

    def logits(params: tuple) -> np.ndarray:
        """``z_c`` of the training conversations (the padding's dropped)."""
        return np.asarray(conversation_logit(*params, *inputs, count))[:n]

    def full(params: tuple) -> tuple:
        """Weights over the vocab -> over every bucket, both blocks (0 where no training conversation has one)."""
        return (jnp.zeros((2 * arrays.dim,), jnp.float32).at[jnp.asarray(entries.vocab)].set(
            params[0][:len(entries.vocab)]), params[1])

    usable = [k for k in range(folds) if (fold == k).any() and len(np.unique(y[fold != k])) == 2]
    if len(usable) < 2:
        warnings.warn(f"{arrays.path}: fewer than two folds of the training conversations hold out conversations "
                      "whose rest shows both outcomes: the run has no wide term", NoWideTerm, stacklevel=2)
        return None
    fold_fits = {k: path(fold != k, len(grid)) for k in usable}
    held_out = {}
    for i, l2 in enumerate(grid):
        total = 0.0
        for k in usable:
            z = logits(fold_fits[k][i])[fold == k]
            total += float(np.sum(np.logaddexp(0.0, z) - y[fold == k] * z))
        held_out[l2] = total / max(sum(int((fold == k).sum()) for k in usable), 1)
    chosen = min(held_out, key=held_out.get)
    weights = full(path(np.ones(n, bool), grid.index(chosen) + 1)[-1])
    # The gain, on the out-of-fold running logits of every training turn.
    row_conversation = np.cumsum(train.starts) - 1
    # Rows padded as the fit's arrays are (one program for similar sizes): a padding row is a conversation of its own
    # with no grams.
    x, ids, starts = jnp.asarray(_padded(x)), jnp.asarray(_padded(ids)), jnp.asarray(_padded(train.starts, fill=1))

    def running(full_weights: tuple) -> np.ndarray:
        """The running logit of every training turn under ``full_weights`` (over every bucket)."""
        return np.array(running_mean_logit(*full_weights, x, ids, starts))[:len(train.starts)]

    m = running(weights)  # in-sample only where no usable fold held it out
    for k in usable:
        rows = fold[row_conversation] == k
        m[rows] = running(full(fold_fits[k][grid.index(chosen)]))[rows]
    turn = turn_numbers(train.starts)
    wide_map, gain_log_loss = fit_gain(m, turn, train.labels)
    # m above includes the fitted intercept b; the model's running mean does not: fold b into the shift.
    wide_map = (wide_map[0], wide_map[1], wide_map[2] + float(weights[1]))
    offsets = training_offsets(arrays, train, np.where(held, np.nan, gained(m - float(weights[1]), turn, wide_map)),
                               weights, idf, wide_map, valid_fraction, split_seed)
    difference = m - running(weights)  # out of fold less in-sample, at the validation turns
    bounds = np.append(np.flatnonzero(train.starts), len(train.starts))  # conversation c: rows bounds[c]:bounds[c + 1]
    holdout = {conversation_ids[c]: difference[bounds[c]:bounds[c + 1]].astype(np.float32)
               for c in np.flatnonzero(validation)}
    w = np.asarray(weights[0], np.float32)
    return WideFit(w[:arrays.dim], w[arrays.dim:], wide_map, chosen, held_out, gain_log_loss, offsets,
                   float(weights[1]), holdout)


def _conversation_ids(arrays: TurnArrays, rows: TurnRows) -> list[str]:
    """The id of each conversation of ``rows``, in row order."""
    ids: list[str] = []
    at = 0
    for number, where in rows.source:
        part = arrays.part(number)
        conversation = np.searchsorted(np.asarray(part.offsets), where, side="right") - 1
        ids.extend(part.ids[c] for c in conversation[rows.starts[at:at + len(where)]])
        at += len(where)
    return ids


def training_offsets(arrays: TurnArrays, fitted: TurnRows, logit: np.ndarray, weights: tuple, idf: np.ndarray,
                     wide_map: tuple, valid_fraction: float, split_seed: int) -> dict[int, np.ndarray]:
    """Part number -> ``[turns of the part]`` float32: the wide logit the deep model trains beside at each training
    turn (NaN elsewhere). ``logit`` holds those of the ``fitted`` rows (out of fold); a training conversation beyond
    `MAX_FIT_CONVERSATIONS`, which no fit saw, is read with the full weights."""
    offsets: dict[int, np.ndarray] = {}
    for number, where in fitted.source:
        target = offsets.setdefault(number, np.full(arrays.part(number).num_turns, np.nan, np.float32))
        target[where], logit = logit[:len(where)], logit[len(where):]
    w = weights[0]
    for number, part in enumerate(arrays.iter_parts()):
        chosen = split_conversations(part, "train", valid_fraction, split_seed)
        target = offsets.setdefault(number, np.full(part.num_turns, np.nan, np.float32))
        rest = chosen[np.isnan(target[np.asarray(part.offsets)[chosen]])] if len(chosen) else chosen
        blocks = -(-len(rest) // MAX_FIT_CONVERSATIONS)  # bounded RAM on a large part
        for block in np.array_split(rest, blocks) if blocks else ():
            rows = part_rows(part, block, number)
            m = np.asarray(running_mean_logit(w, jnp.zeros(()), *speaker_slots(rows, idf, arrays.dim),
                                              jnp.asarray(rows.starts)))
            target[rows.source[0][1]] = gained(m, turn_numbers(rows.starts), wide_map)
    return offsets

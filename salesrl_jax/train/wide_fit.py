"""The wide term's weights (`salesrl_jax.models.bag`, `ModelConfig.wide_text`), fitted before the deep model trains:
an L2-regularised logistic regression on the running mean of the turns' raw tf-idf vectors (its validation log loss
reported for each strength tried, the best kept), then frozen while the deep model learns what it leaves.

For turn ``t`` of a conversation, with ``x_i`` the sublinear tf-idf vector of turn ``i`` (the bag's idf):

    z_t(w, b) = b + (1 / t) sum_{i<=t} x_i . w
    L(w, b)   = mean_t [ log(1 + exp(z_t)) - y z_t ] + (lam / 2) ||w||^2

over every turn of the training conversations (``y`` the conversation's outcome), minimised by L-BFGS for each
``lam`` of a grid from strong to weak (each warm-started from the last; the default grid is one value, see
`L2_GRID`); the ``lam`` with the lowest log loss on the validation split's turns is kept. ``b`` is not kept: the
deep heads have their own biases.

Why fitted first rather than trained with the deep model (measured with `salesrl crossval`, PersuasionForGood,
last-turn AUC; docs/benchmarks.md, session 17): trained jointly at the small-data step (1e-4, chosen so that the
embedding bag does not memorise rare grams) the wide weights stay below 0.01 and nothing moves (0.668 against
0.666 without); with their step multiplied by 30 or 100 they memorise like the bag did (0.644, 0.642). Fitted
first with its own L2 and frozen: 0.677, and on CaSiNo 0.638 against 0.617.

The deep model then trains on the training turns with this term in its logits; the term was fitted on those same
turns, so it is more confident there than on new ones. The strong L2 (`L2_GRID`) keeps that small; cross-fitting
the term (the deep model's training turns reading weights fitted without them) would remove it, at the cost of a
per-conversation choice of weights in training. Not built.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.bag import sublinear_tfidf
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.models.scan import restarting_sums

L2_GRID = (1e-1,)
"""The ``lam`` tried (a per-turn mean loss: scikit-learn's ``C`` is ``1 / (lam x turns)``). One value, stronger
than the wide term's own validation optimum, because the deep model then trains on the very turns the term was
fitted on and learns to trust it as much as it fits them. Measured with `salesrl crossval` (docs/benchmarks.md,
session 17): with ``lam`` chosen on the validation split from 0.03 / 0.01 / 0.003 (its optimum alone) the first
turns' log loss rose from 0.699 to 0.745 (PersuasionForGood) and from 0.695 to 0.747 (CaSiNo), the deep model
overconfident in a term that is at its noisiest there; at 0.1, 0.711 and 0.705, and the AUCs by turn are as good
or better. A wide grid (1 to 1e-5) also swung the choice 30x between folds: the validation splits of small sets
hold 130-200 conversations."""
MAX_FIT_CONVERSATIONS = 20_000
"""At most this many training conversations (the first of each part, in cache order) fit the wide term: it matters
on small sets, and a linear model on the mean tf-idf has long converged by then; RAM stays bounded on 1M."""
LBFGS_STEPS = 150  # at these lam the loss changes by < 1e-4 after about 60 (checked against scikit-learn's lbfgs)


@dataclasses.dataclass(frozen=True)
class TurnRows:
    """The turns of some conversations, flat, conversations consecutive: what the fit reads."""

    ids: np.ndarray  # [N, K] int32 bucket ids (0: padding)
    counts: np.ndarray  # [N, K] float32 counts
    starts: np.ndarray  # [N] bool: first turn of its conversation
    labels: np.ndarray  # [N] float32: the conversation's outcome


@dataclasses.dataclass(frozen=True)
class WideFit:
    """The fitted weights and how they were chosen."""

    weights: np.ndarray  # [buckets] float32
    l2: float  # the chosen lam
    valid_log_loss: dict[float, float]  # lam -> validation log loss, every lam tried


def turn_rows(arrays: TurnArrays, split: str, valid_fraction: float, split_seed: int,
              max_conversations: int = MAX_FIT_CONVERSATIONS) -> TurnRows | None:
    """The turns of ``split``'s labelled conversations of sparse ``arrays`` (at most ``max_conversations``)."""
    pieces, taken = [], 0
    for part in arrays.iter_parts():
        chosen = split_conversations(part, split, valid_fraction, split_seed)[:max_conversations - taken]
        if not len(chosen):
            continue
        part = part.select(chosen)
        starts = np.zeros(part.num_turns, bool)
        starts[np.asarray(part.offsets[:-1])] = True
        pieces.append(TurnRows(np.asarray(part.gram_ids, np.int32), np.asarray(part.gram_counts, np.float32), starts,
                               np.repeat(np.asarray(part.outcome), part.lengths).astype(np.float32)))
        taken += len(chosen)
        if taken >= max_conversations:
            break
    if not pieces:
        return None
    width = max(p.ids.shape[1] for p in pieces)  # parts pad their turns' grams to their own widest turn

    def padded(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])))

    return TurnRows(np.concatenate([padded(p.ids) for p in pieces]), np.concatenate([padded(p.counts) for p in pieces]),
                    np.concatenate([p.starts for p in pieces]), np.concatenate([p.labels for p in pieces]))


def running_mean_logit(w: jnp.ndarray, b: jnp.ndarray, x: jnp.ndarray, ids: jnp.ndarray, starts: jnp.ndarray
                       ) -> jnp.ndarray:
    """``z_t`` of the module docstring for flat rows: ``x [N, K]`` tf-idf weights of the slots ``ids [N, K]``."""
    omega = jnp.sum(x * w[ids], axis=-1)
    _, sums = restarting_sums(jnp.stack([omega, jnp.ones_like(omega)], axis=-1), starts)  # as the encoder carries
    return b + sums[:, 0] / sums[:, 1]


def _log_loss(z: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(z, y))


@jax.jit
def _fit_one(params: tuple, l2: jnp.ndarray, x: jnp.ndarray, ids: jnp.ndarray, starts: jnp.ndarray, y: jnp.ndarray
             ) -> tuple:
    """``(w, b)`` minimising L of the module docstring at ``lam = l2``, by L-BFGS from ``params``."""
    def loss(p):
        w, b = p
        return _log_loss(running_mean_logit(w, b, x, ids, starts), y) + 0.5 * l2 * jnp.sum(w * w)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=LBFGS_STEPS)
    return params


def tfidf_slots(rows: TurnRows, idf: np.ndarray) -> jnp.ndarray:
    """``x [N, K]``: the sublinear tf-idf weight of each slot, as the model's bag computes it."""
    return sublinear_tfidf(GramBags(jnp.asarray(rows.ids), jnp.asarray(rows.counts)), jnp.asarray(idf, jnp.float32))


def fit_wide(arrays: TurnArrays, idf: np.ndarray, valid_fraction: float, split_seed: int,
             grid: tuple[float, ...] = L2_GRID) -> WideFit | None:
    """The wide weights of the module docstring from the training split of sparse ``arrays``, ``lam`` chosen on the
    validation split's turns (the first, strongest, of ``grid`` without one). None without training turns of both
    outcomes."""
    train = turn_rows(arrays, "train", valid_fraction, split_seed)
    if train is None or len(np.unique(train.labels)) < 2:
        return None
    valid = turn_rows(arrays, "valid", valid_fraction, split_seed)
    if valid is not None:
        valid_inputs = (tfidf_slots(valid, idf), jnp.asarray(valid.ids), jnp.asarray(valid.starts))
    x, ids = tfidf_slots(train, idf), jnp.asarray(train.ids)
    starts, y = jnp.asarray(train.starts), jnp.asarray(train.labels)
    base = float(np.clip(train.labels.mean(), 1e-3, 1 - 1e-3))
    params = (jnp.zeros((arrays.dim,), jnp.float32), jnp.asarray(np.log(base / (1 - base)), jnp.float32))
    fits, losses = {}, {}
    for l2 in grid:
        params = _fit_one(params, jnp.asarray(l2, jnp.float32), x, ids, starts, y)
        fits[l2] = params
        if valid is not None:
            losses[l2] = float(_log_loss(running_mean_logit(*params, *valid_inputs), jnp.asarray(valid.labels)))
    chosen = min(losses, key=losses.get) if losses else grid[0]
    return WideFit(np.asarray(fits[chosen][0], np.float32), chosen, losses)

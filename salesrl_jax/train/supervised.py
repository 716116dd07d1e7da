"""Supervised pretraining: per-turn binary cross-entropy against the conversation's final outcome.

For turn ``t`` of a conversation with outcome ``y``, the policy mean logit ``z_t`` is trained with

    L_policy = sum_t v_t BCE(z_t, y) / sum_t v_t,     BCE(z, y) = softplus(z) - y z

(``v_t`` masks padding), whose minimiser is ``sigmoid(z_t) = P(y = 1 | turns 1..t)``: calibrated probabilities at
every turn. With an n-gram model's wide term, ``z_t`` is the deep heads' logit plus the wide term's out-of-fold
logit of that training turn (``SupervisedBatch.offset``, `salesrl_jax.train.wide_fit`). Each ensemble head ``k``
minimises the same loss under Bayesian bootstrap weights ``w_{k,c} ~ Exp(1)`` per conversation ``c`` (Rubin, 1981),
fixed for the run (`salesrl_jax.train.bootstrap`), so the heads disagree where the data are thin: that disagreement
is the uncertainty signal.

A chunk of minibatches is one `jax.lax.scan`; a minibatch without any valid row (the padding at
an epoch's end) leaves the state untouched.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from salesrl_jax.models.agent import previous_predictions
from salesrl_jax.models.bag import without_wide_term
from salesrl_jax.models.inputs import GramBags, TurnInputs
from salesrl_jax.parallel.placement import Placement
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.state import TrainState, average_decay, average_parameters


class SupervisedBatch(NamedTuple):
    """One packed minibatch (``[N]`` rows) on device."""

    inputs: TurnInputs
    labels: jnp.ndarray  # [N] float32
    bootstrap: jnp.ndarray  # [N, K] float32: the ensemble heads' weights of each row's conversation
    offset: jnp.ndarray | None = None  # [N] float32: the wide term's out-of-fold logit of each row (NaN: none)


class SupervisedMetrics(NamedTuple):
    loss: jnp.ndarray
    policy_bce: jnp.ndarray
    ensemble_bce: jnp.ndarray
    turns: jnp.ndarray  # valid rows in the minibatch
    grad_norm: jnp.ndarray


def masked_mean(values: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-8)


def drop_inputs(inputs: TurnInputs, rate: jnp.ndarray, key: jnp.ndarray) -> TurnInputs:
    """Inverted dropout on the turn embeddings: each entry kept with probability ``1 - rate`` and divided by it,
    so the expected input is unchanged. For sparse n-gram bags, each gram of a turn is dropped with probability
    ``rate`` (the bag renormalises what is left: word dropout)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, inputs.embeddings.shape)
    if isinstance(inputs.embeddings, GramBags):
        bags = inputs.embeddings
        return inputs.replace(embeddings=bags.replace(counts=jnp.where(keep, bags.counts, 0)))
    embeddings = jnp.where(keep, inputs.embeddings.astype(jnp.float32) / (1.0 - rate), 0.0)
    return inputs.replace(embeddings=embeddings)


def drop_text(inputs: TurnInputs, rate: jnp.ndarray, key: jnp.ndarray) -> TurnInputs:
    """Each conversation's whole text taken away with probability ``rate``, at every one of its turns: its
    embeddings set to zero (not rescaled: absent text, not noise), or its n-gram bags emptied. Features, starts and
    validity stay as they were. Rows are a packed minibatch: conversation ``c`` is the rows from its ``c``-th start
    on, so row ``i`` belongs to conversation ``cumsum(starts)[i] - 1``, and every row draws its conversation's
    coin."""
    n = inputs.valid.shape[0]
    coins = jax.random.bernoulli(key, 1.0 - rate, (n,))
    keep = coins[jnp.maximum(jnp.cumsum(inputs.starts) - 1, 0)]
    if isinstance(inputs.embeddings, GramBags):
        bags = inputs.embeddings
        return inputs.replace(embeddings=bags.replace(counts=jnp.where(keep[:, None], bags.counts, 0)))
    embeddings = jnp.where(keep[:, None], inputs.embeddings.astype(jnp.float32), 0.0)
    return inputs.replace(embeddings=embeddings)


def last_turns(starts: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """``[N]`` bool: the valid rows that end their conversation (the next row starts another, or is padding).
    Packed minibatches hold whole conversations, so a valid last row of the batch ends its conversation."""
    following_starts = jnp.concatenate([starts[1:], jnp.ones((1,), bool)])
    following_valid = jnp.concatenate([valid[1:], jnp.zeros((1,), bool)])
    return valid & (following_starts | ~following_valid)


def added_offset(offset: jnp.ndarray | None) -> jnp.ndarray | float:
    """What a training logit adds for an n-gram model's wide term: the row's out-of-fold wide logit
    (``SupervisedBatch.offset``), 0 where it has none (NaN) or the batch carries none."""
    return 0.0 if offset is None else jnp.where(jnp.isnan(offset), 0.0, offset)


def turn_weights(starts: jnp.ndarray, valid: jnp.ndarray, last_turn_share: jnp.ndarray) -> jnp.ndarray:
    """Row weights ``[N]`` whose masked mean is ``(1 - s) mean over valid rows + s mean over last rows``
    (``s = last_turn_share``): ``w = (1 - s) / n_valid + s [last] / n_last``, scaled by ``n_valid``."""
    valid_f = valid.astype(jnp.float32)
    last = last_turns(starts, valid).astype(jnp.float32)
    n_valid, n_last = jnp.maximum(valid_f.sum(), 1.0), jnp.maximum(last.sum(), 1.0)
    return ((1.0 - last_turn_share) * valid_f / n_valid + last_turn_share * last / n_last) * n_valid


def supervised_loss(params: nnx.State, graphdef: nnx.GraphDef, batch: SupervisedBatch, hp: Hyperparams,
                    key: jnp.ndarray, input_dropout: bool = False, text_dropout: bool = False
                    ) -> tuple[jnp.ndarray, SupervisedMetrics]:
    """Per-turn cross-entropy of the policy mean against the outcome (+ the ensemble heads' bootstrap-weighted
    cross-entropy). ``input_dropout`` (static) applies `drop_inputs` at rate ``hp.input_dropout``;
    ``text_dropout`` (static) applies `drop_text` at rate ``hp.text_dropout``, with its own key folded from
    ``key`` (so a run's input dropout draws the same masks with or without it)."""
    chex.assert_rank([batch.labels, batch.bootstrap], [1, 2])
    agent = without_wide_term(nnx.merge(graphdef, params))  # the deep heads; the offset stands in for the wide term
    if input_dropout:
        batch = batch._replace(inputs=drop_inputs(batch.inputs, hp.input_dropout, key))
    if text_dropout:
        batch = batch._replace(inputs=drop_text(batch.inputs, hp.text_dropout, jax.random.fold_in(key, 1)))
    valid = batch.inputs.valid.astype(jnp.float32)
    weight = turn_weights(batch.inputs.starts, batch.inputs.valid, hp.last_turn_share)
    offset = added_offset(batch.offset)
    prev = None
    if agent.config.feed_prediction:
        # Teacher forcing with the model's own previous predictions, from a first pass without gradient; the
        # offset is part of what a row feeds forward, as the deployed model's wide term is.
        first = agent(batch.inputs, jnp.full(batch.labels.shape, 0.5))
        prev = jax.lax.stop_gradient(previous_predictions(jax.nn.sigmoid(first.logit + offset), batch.inputs.starts))
    out = agent(batch.inputs, prev)
    out = out.replace(logit=out.logit + offset, ensemble_logits=out.ensemble_logits + offset)
    policy_bce = masked_mean(optax.sigmoid_binary_cross_entropy(out.logit, batch.labels), weight)
    ensemble_bce = jnp.zeros(())
    k = out.ensemble_logits.shape[0]
    if k:
        weights = batch.bootstrap.T * weight
        bce = optax.sigmoid_binary_cross_entropy(out.ensemble_logits, batch.labels[None])
        ensemble_bce = jnp.mean(jax.vmap(masked_mean)(bce, weights))
    loss = policy_bce + hp.ensemble_weight * ensemble_bce
    return loss, SupervisedMetrics(loss, policy_bce, ensemble_bce, jnp.sum(valid), jnp.zeros(()))


def make_train_chunk(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *, input_dropout: bool = False,
                     text_dropout: bool = False, average: bool = False, placement: Placement | None = None,
                     members: int = 1
                     ) -> Callable[[TrainState, SupervisedBatch, Hyperparams], tuple[TrainState, SupervisedMetrics]]:
    """``train_chunk(state, batches [M, N], hp) -> (state, metrics [M])``: one jitted scan over minibatches.
    ``input_dropout`` and ``text_dropout`` (static: they shape the program) turn on dropout of the turn embeddings'
    entries (`drop_inputs`) and of whole conversations' text (`drop_text`); ``average`` (static) updates the
    state's running average of the parameters at the end of the chunk, for all its steps (`average_decay` and
    `average_parameters` at ``hp.ema_decay``; the state must keep one: `init_state` with ``average``).
    ``placement``: the mesh the state and
    batches live on (`salesrl_jax.parallel`); the step is the same, its output state is pinned
    to the input's layout. ``members > 1``: states, batches and hyperparameters carry a leading axis of that many
    runs (seeds, hyperparameter settings), the chunk vmapped over it, one compiled program for all; the optimizer's
    numeric settings are read from each run's state (``optax.inject_hyperparams``), so ``optimizer`` is any one
    of theirs."""
    grad_fn = jax.value_and_grad(supervised_loss, has_aux=True)

    def step_on_rows(state: TrainState, batch: SupervisedBatch, hp: Hyperparams):
        key, step_key = jax.random.split(state.key)
        (_, metrics), grads = grad_fn(state.params, graphdef, batch, hp, step_key, input_dropout, text_dropout)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        stepped = state.replace(params=params, opt_state=opt_state, step=state.step + 1, key=key)
        return stepped, metrics._replace(grad_norm=optax.global_norm(grads))

    skipped = SupervisedMetrics(*(jnp.zeros((), jnp.float32) for _ in SupervisedMetrics._fields))

    def train_step(state: TrainState, batch: SupervisedBatch, hp: Hyperparams):
        # An all-padding minibatch must not move the optimizer (Adam would still step on momentum), nor the key:
        # seeds trained together pad the shorter epochs with empty minibatches, and must match their runs alone.
        # Nor is it computed: a part's last chunk is padded with empty minibatches (at the default sizes about a
        # tenth of an epoch's, a third for parts of 5,000 conversations), and `lax.cond` runs one branch. Vmapped
        # over members it computes both and selects, as a `jnp.where` would.
        new, metrics = jax.lax.cond(jnp.any(batch.inputs.valid), lambda: step_on_rows(state, batch, hp),
                                    lambda: (state, skipped))
        if placement is not None:
            new = placement.constrain(new)
        return new, metrics

    def train_chunk(state: TrainState, batches: SupervisedBatch, hp: Hyperparams):
        new, metrics = jax.lax.scan(lambda s, b: train_step(s, b, hp), state, batches)
        if average:
            # Once per chunk, its last parameters standing for each of its steps: averaging the whole table after
            # every step cost the n-gram path's small minibatches 30% of their speed; once per chunk of 8, little.
            kept = average_decay(state.step, hp.ema_decay, new.step - state.step, batches.labels.shape[0])
            new = new.replace(ema=average_parameters(state.ema, new.params, kept))
            if placement is not None:
                new = placement.constrain(new)
        return new, metrics

    return jax.jit(jax.vmap(train_chunk) if members > 1 else train_chunk)

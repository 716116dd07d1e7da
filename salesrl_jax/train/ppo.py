"""PPO fine-tuning in the paper's formulation, without its label leak.

An episode walks one conversation's turns. The observation at turn t is the encoder state of turns
1..t (and, if ``model.feed_prediction``, the previous prediction); the action is a probability
estimate ``a_t ~ Beta`` from the policy; the reward is a strictly proper scoring rule of ``a_t``
against the final outcome ``y`` (`scoring_reward`), so the return-maximising policy reports
``P(y = 1 | turns 1..t)``. The outcome is used only in the reward, never in the observation.

Episodes are packed end to end into minibatches of ``rows`` turn slots (whole conversations, no
per-turn padding: with conversations of 3-27 turns, padding to the longest would waste ~3x).
One update (`make_ppo_update`) is one jitted function: the rollout over every row at once (a scan
over rows only when predictions feed back), GAE as a reverse associative scan over the packed
rows, then ``epochs x minibatches`` of clipped-surrogate steps as nested scans (Schulman et al.,
2017; the structure follows PureJaxRL).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from salesrl_jax.models.agent import SalesAgent
from salesrl_jax.models.bag import without_wide_term
from salesrl_jax.models.heads import beta_policy
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.models.scan import affine_scan
from salesrl_jax.parallel.placement import Placement
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.state import TrainState
from salesrl_jax.train.supervised import added_offset, masked_mean

ACTION_EPS = 1e-4  # actions are clipped into [eps, 1 - eps] so log-probabilities stay finite
LOG_SCORE_EPS = 1e-3


def scoring_reward(action: jnp.ndarray, outcome: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Strictly proper scoring rules of an estimate ``a`` for a binary outcome ``y``.

    brier: ``1 - (a - y)^2`` (Brier, 1950); log: ``y log a + (1 - y) log(1 - a)`` with ``a`` clipped
    into ``[1e-3, 1 - 1e-3]`` (Good, 1952). ``E_y[S(a, y)]`` is maximised exactly at ``a = P(y = 1)``.
    """
    if kind == "brier":
        return 1.0 - (action - outcome) ** 2
    if kind == "log":
        a = jnp.clip(action, LOG_SCORE_EPS, 1.0 - LOG_SCORE_EPS)
        return outcome * jnp.log(a) + (1.0 - outcome) * jnp.log1p(-a)
    raise ValueError(f"unknown reward kind {kind!r}")


def gae(rewards: jnp.ndarray, values: jnp.ndarray, dones: jnp.ndarray, gamma: jnp.ndarray,
        lam: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generalised advantage estimation over one episode of ``T`` steps (Schulman et al., 2016).

        delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t
        A_t     = delta_t + gamma lambda (1 - d_t) A_{t+1}

    ``d_t = 1`` at the last step (nothing follows it; steps after it are padding and get masked by
    the caller). Returns ``(advantages [T], returns [T] = A + V)``.
    """
    chex.assert_rank([rewards, values, dones], 1)
    chex.assert_equal_shape([rewards, values, dones])
    next_values = jnp.concatenate([values[1:], jnp.zeros((1,), values.dtype)])

    def backward(next_advantage, step):
        reward, value, next_value, done = step
        not_done = 1.0 - done
        delta = reward + gamma * not_done * next_value - value
        advantage = delta + gamma * lam * not_done * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros((), rewards.dtype),
                                 (rewards, values, next_values, dones.astype(rewards.dtype)), reverse=True)
    return advantages, advantages + values


def clipped_surrogate(log_prob: jnp.ndarray, old_log_prob: jnp.ndarray, advantage: jnp.ndarray,
                      clip_eps: jnp.ndarray) -> jnp.ndarray:
    """Per-step PPO objective to *minimise*: ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)``, ``rho = exp(logp - logp_old)``."""
    ratio = jnp.exp(log_prob - old_log_prob)
    return -jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage)


def gae_flat(rewards: jnp.ndarray, values: jnp.ndarray, dones: jnp.ndarray, gamma: jnp.ndarray,
             lam: jnp.ndarray, segments: int = 1) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`gae` for many episodes laid end to end in ``[N]`` rows (``d_n = 1`` on each episode's last row).

    The same recurrence, ``A_n = delta_n + gamma lambda (1 - d_n) A_{n+1}``, is linear in ``A``, so it
    runs as a reverse `jax.lax.associative_scan` (log depth) instead of a sequential scan over rows;
    ``segments``: the rows are that many independent slices (`salesrl_jax.models.scan.affine_scan`).
    """
    chex.assert_rank([rewards, values, dones], 1)
    not_done = 1.0 - dones.astype(rewards.dtype)
    next_values = jnp.concatenate([values[1:], jnp.zeros((1,), values.dtype)])
    delta = rewards + gamma * not_done * next_values - values
    _, advantages = affine_scan(gamma * lam * not_done, delta, reverse=True, segments=segments)
    return advantages, advantages + values


class PPOBatch(NamedTuple):
    """``M`` packed minibatches of ``rows`` turn slots: whole conversations laid end to end (no per-turn padding)."""

    inputs: TurnInputs  # leaves [M, rows, ...]
    labels: jnp.ndarray  # [M, rows] outcome of each row's conversation
    bootstrap: jnp.ndarray  # [M, rows, K] the ensemble heads' weights of each row's conversation (as in pretraining)
    offset: jnp.ndarray | None = None  # [M, rows] the wide term's out-of-fold logit of each row (NaN: none), as there


class Rollout(NamedTuple):
    """What the rollout recorded, ``[M, rows]``."""

    action: jnp.ndarray
    log_prob: jnp.ndarray
    value: jnp.ndarray
    reward: jnp.ndarray
    prev_prediction: jnp.ndarray  # what the state read as the previous prediction (0.5 at turn 1)
    prediction: jnp.ndarray  # the policy mean (the reported estimate) before the update
    advantage: jnp.ndarray
    target: jnp.ndarray  # value target (GAE return)


class PPOMetrics(NamedTuple):
    loss: jnp.ndarray
    policy_loss: jnp.ndarray
    value_loss: jnp.ndarray
    entropy: jnp.ndarray
    approx_kl: jnp.ndarray
    clip_fraction: jnp.ndarray
    ensemble_bce: jnp.ndarray


class UpdateMetrics(NamedTuple):
    """Per update: rollout statistics and the mean of the minibatch metrics."""

    mean_reward: jnp.ndarray
    prediction_brier: jnp.ndarray  # Brier of the policy mean on the rollout batch
    env_steps: jnp.ndarray  # valid turns in the rollout
    train: PPOMetrics


def episode_ends(inputs: TurnInputs) -> jnp.ndarray:
    """``[N]`` float: 1 on each conversation's last row (the next row starts another, or is padding) and on padding."""
    next_starts = jnp.concatenate([inputs.starts[1:], jnp.ones((1,), bool)])
    next_valid = jnp.concatenate([inputs.valid[1:], jnp.zeros((1,), bool)])
    return (next_starts | ~next_valid | ~inputs.valid).astype(jnp.float32)


def _policy_pass(agent: SalesAgent, inputs: TurnInputs, offset: jnp.ndarray | None = None
                 ) -> tuple[jnp.ndarray, ...]:
    """States and the deep policy heads (logit without ``offset``) for flat rows; with prediction feedback, a scan
    over rows that restarts at each conversation: turn t + 1 reads turn t's policy mean, ``sigmoid(logit + offset)``
    (``offset [N]``: the wide term's out-of-fold logits, as the deployed model's heads would add the term)."""
    context = agent.encoder.context(inputs)
    if not agent.config.feed_prediction:
        state = agent.encoder.state(context)
        logit, concentration = agent.policy_head(state)
        return state, logit, concentration, jnp.full(logit.shape, 0.5)

    def emit(inner: SalesAgent, state: jnp.ndarray, prev: jnp.ndarray, row_offset: jnp.ndarray):
        logit, concentration = inner.policy_head(state)
        return jax.nn.sigmoid(logit + row_offset), (state, logit, concentration, prev)

    return agent.scan_with_feedback(context, inputs.starts, emit, inputs.segments, offset)


def _flatten(batch: PPOBatch) -> tuple[TurnInputs, jnp.ndarray]:
    """``[M, rows]`` minibatches as one flat sequence of ``M x segments`` independent slices."""
    m, rows = batch.labels.shape
    inputs = jax.tree.map(lambda x: x.reshape((m * rows,) + x.shape[2:]), batch.inputs)
    return inputs.replace(segments=m * batch.inputs.segments), batch.labels.reshape(-1)


def rollout(agent: SalesAgent, batch: PPOBatch, hp: Hyperparams, key: jnp.ndarray, reward_kind: str) -> Rollout:
    """Act on every turn of every conversation in the batch, score the actions, and compute GAE."""
    shape = batch.labels.shape
    inputs, labels = _flatten(batch)
    # The wide term's out-of-fold logit, as in pretraining; a fed-back previous prediction includes it.
    offset = added_offset(None if batch.offset is None else batch.offset.reshape(-1))
    state, logit, concentration, prev = _policy_pass(agent, inputs, None if batch.offset is None else offset)
    logit = logit + offset
    policy = beta_policy(logit, concentration)
    action = jnp.clip(policy.sample(seed=key), ACTION_EPS, 1.0 - ACTION_EPS)
    log_prob = policy.log_prob(action)
    valid = inputs.valid.astype(jnp.float32)
    value = agent.value_head(state) * valid
    reward = scoring_reward(action, labels, reward_kind) * valid
    advantage, target = gae_flat(reward, value, episode_ends(inputs), hp.gamma, hp.gae_lambda, inputs.segments)
    roll = Rollout(action, log_prob, value, reward, prev, jax.nn.sigmoid(logit), advantage, target)
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x).reshape(shape), roll)


def ppo_loss(params: nnx.State, graphdef: nnx.GraphDef, inputs: TurnInputs, labels: jnp.ndarray,
             bootstrap: jnp.ndarray, roll: Rollout, hp: Hyperparams, offset: jnp.ndarray | None = None
             ) -> tuple[jnp.ndarray, PPOMetrics]:
    """Clipped surrogate + value loss - entropy bonus (+ the ensemble heads' cross-entropy on a frozen state),
    for one packed minibatch of ``[rows]`` turns; ``offset [rows]``: the wide term's out-of-fold logits
    (`PPOBatch.offset`), added to the policy's and the heads' logits."""
    chex.assert_rank(labels, 1)
    agent = without_wide_term(nnx.merge(graphdef, params))  # the deep heads; the offset stands in for the wide term
    valid = inputs.valid.astype(jnp.float32)
    context = agent.encoder.context(inputs)
    state = agent.encoder.state(context, roll.prev_prediction if agent.config.feed_prediction else None)
    logit, concentration = agent.policy_head(state)
    logit = logit + added_offset(offset)
    policy = beta_policy(logit, concentration)
    log_prob = policy.log_prob(roll.action)
    mean_adv = masked_mean(roll.advantage, valid)
    std_adv = jnp.sqrt(masked_mean((roll.advantage - mean_adv) ** 2, valid))
    advantage = (roll.advantage - mean_adv) / (std_adv + 1e-8)
    policy_loss = masked_mean(clipped_surrogate(log_prob, roll.log_prob, advantage, hp.clip_eps), valid)
    value_loss = 0.5 * masked_mean((agent.value_head(state) - roll.target) ** 2, valid)
    entropy = masked_mean(policy.entropy(), valid)
    ensemble_bce = jnp.zeros(())
    if agent.config.ensemble_size:
        logits = agent.ensemble_head(jax.lax.stop_gradient(state)) + added_offset(offset)
        bce = optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(labels, logits.shape))
        ensemble_bce = jnp.mean(jax.vmap(masked_mean)(bce, bootstrap.T * valid))
    loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy + hp.ensemble_weight * ensemble_bce
    log_ratio = log_prob - roll.log_prob
    approx_kl = masked_mean(jnp.exp(log_ratio) - 1.0 - log_ratio, valid)
    clip_fraction = masked_mean((jnp.abs(jnp.exp(log_ratio) - 1.0) > hp.clip_eps).astype(jnp.float32), valid)
    return loss, PPOMetrics(loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction, ensemble_bce)


def make_ppo_update(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *, epochs: int,
                    reward_kind: str, placement: Placement | None = None, members: int = 1
                    ) -> Callable[[TrainState, PPOBatch, Hyperparams], tuple[TrainState, UpdateMetrics]]:
    """``update(state, batch [M, rows], hp) -> (state, metrics)``: rollout, GAE, then ``epochs`` passes over the
    ``M`` minibatches in a fresh random order each pass; one jitted function, nested scans. ``placement``: the mesh
    (`salesrl_jax.parallel`) and ``members`` (runs vmapped together), as in
    `salesrl_jax.train.supervised.make_train_chunk`."""
    grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)
    skipped = PPOMetrics(*(jnp.zeros((), jnp.float32) for _ in PPOMetrics._fields))

    def update(state: TrainState, batch: PPOBatch, hp: Hyperparams):
        key, rollout_key, shuffle_key = jax.random.split(state.key, 3)
        roll = rollout(without_wide_term(nnx.merge(graphdef, state.params)), batch, hp, rollout_key, reward_kind)
        minibatches = batch.labels.shape[0]

        def epoch(carry, epoch_key):
            def step_on_rows(carry, index):
                params, opt_state = carry
                take = lambda x: x[index]  # noqa: E731
                (_, metrics), grads = grad_fn(params, graphdef, jax.tree.map(take, batch.inputs),
                                              batch.labels[index], batch.bootstrap[index], jax.tree.map(take, roll),
                                              hp, None if batch.offset is None else batch.offset[index])
                updates, new_opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), new_opt_state), metrics

            def step(carry, index):
                # An all-padding minibatch (a part's last, short batch) must not move the optimizer, and is not
                # computed (`lax.cond` runs one branch; vmapped over members it computes both and selects).
                has_rows = jnp.any(batch.inputs.valid[index])
                carry, metrics = jax.lax.cond(has_rows, lambda: step_on_rows(carry, index),
                                              lambda: (carry, skipped))
                return carry, (metrics, has_rows)

            return jax.lax.scan(step, carry, jax.random.permutation(epoch_key, minibatches))

        (params, opt_state), (metrics, used) = jax.lax.scan(epoch, (state.params, state.opt_state),
                                                            jax.random.split(shuffle_key, epochs))
        valid = batch.inputs.valid.astype(jnp.float32)
        used = used.astype(jnp.float32)  # [epochs, minibatches]: minibatches that had rows
        stats = UpdateMetrics(
            mean_reward=masked_mean(roll.reward, valid),
            prediction_brier=masked_mean((roll.prediction - batch.labels) ** 2, valid),
            env_steps=jnp.sum(valid),
            train=jax.tree.map(lambda m: jnp.sum(m * used) / jnp.maximum(jnp.sum(used), 1.0), metrics),
        )
        new_state = state.replace(params=params, opt_state=opt_state, step=state.step + epochs * minibatches, key=key)
        return (placement.constrain(new_state) if placement is not None else new_state), stats

    return jax.jit(jax.vmap(update) if members > 1 else update)

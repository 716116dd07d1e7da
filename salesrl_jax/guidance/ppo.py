"""PPO for the rep's next act, in PureJaxRL's shape: the whole training run is one pure function of a PRNG key,
``lax.scan`` over updates, each a ``lax.scan`` over ``num_steps`` exchanges of ``num_envs`` conversations
(``vmap``, finished conversations replaced by new customers at once), GAE, then epochs of clipped updates over
shuffled minibatches. ``jax.jit(jax.vmap(train))(keys)`` trains several seeds in one program.

Per transition, with ``rho = pi(a|s) / pi_old(a|s)`` and advantages ``A`` by GAE(gamma, lambda) with episode ends
cutting the bootstrap:

    L = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) + c_v mean(max((V - R)^2, (V_clip - R)^2)) / 2
        + c_v mean((Q(s, a) - R)^2) / 2 - c_H mean(H[pi])

where ``R`` is the lambda-return: the critic's action values ``Q`` learn the return of the act taken, so that
guidance can show an estimate for every candidate act (`salesrl_jax.guidance.network`).

What the policy observes is a view (`salesrl_jax.guidance.views`): the dialogue acts, or the conversion model's
encoder state; the view's state is carried beside the environment's and replaced with it.

The network crosses the jit boundary functionally (``nnx.split`` outside, ``nnx.merge`` inside). Seed ``s`` starts
from ``init_params(config, obs_dim, fold_in(key_s, 0))`` and trains with ``fold_in(key_s, 1)`` (`seed_inputs`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from salesrl_jax.env.environment import NUM_ACTIONS, EnvParams, EnvState, replace_finished, reset, step
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.network import ActorCritic, PolicyOutput
from salesrl_jax.guidance.views import ActsView


class Transition(NamedTuple):
    obs: jnp.ndarray  # [N, obs_dim]
    action: jnp.ndarray  # [N]
    reward: jnp.ndarray  # [N]
    done: jnp.ndarray  # [N]
    value: jnp.ndarray  # [N]
    log_prob: jnp.ndarray  # [N]
    episode_return: jnp.ndarray  # [N] the finished conversation's return where done, else 0
    episode_sale_prob: jnp.ndarray  # [N] its final sale probability where done
    episode_exchanges: jnp.ndarray  # [N] its exchanges where done


class RunnerState(NamedTuple):
    params: nnx.State
    opt_state: optax.OptState
    env_state: EnvState  # [N] conversations in flight
    view_state: object  # [N] the view's state of each (`salesrl_jax.guidance.views`)
    obs: jnp.ndarray  # [N, obs_dim]
    running_return: jnp.ndarray  # [N] return so far of each conversation in flight
    key: jnp.ndarray


class UpdateMetrics(NamedTuple):
    episodes: jnp.ndarray  # conversations finished in this update's rollout
    mean_return: jnp.ndarray  # their mean return (sale or its probability, minus the time cost)
    conversion: jnp.ndarray  # their mean final sale probability
    exchanges: jnp.ndarray  # their mean length in exchanges
    policy_loss: jnp.ndarray
    value_loss: jnp.ndarray
    q_loss: jnp.ndarray
    entropy: jnp.ndarray
    approx_kl: jnp.ndarray


def _actor_critic(config: GuidanceConfig, obs_dim: int, rngs: nnx.Rngs) -> ActorCritic:
    return ActorCritic(obs_dim, NUM_ACTIONS, config.hidden, rngs=rngs, normalize=config.observation == "model")


def network(config: GuidanceConfig, obs_dim: int) -> nnx.GraphDef:
    return nnx.graphdef(nnx.eval_shape(lambda: _actor_critic(config, obs_dim, nnx.Rngs(0))))


def init_params(config: GuidanceConfig, obs_dim: int, key: jnp.ndarray) -> nnx.State:
    return nnx.split(_actor_critic(config, obs_dim, nnx.Rngs(key)))[1]


def seed_inputs(config: GuidanceConfig, seeds, obs_dim: int) -> tuple[jnp.ndarray, nnx.State]:
    """``(keys [S], initial parameters [S, ...])`` of ``seeds``, to vmap `make_train`'s ``train`` over."""
    keys = [jax.random.PRNGKey(s) for s in seeds]
    initial = [jax.jit(lambda k: init_params(config, obs_dim, k))(jax.random.fold_in(k, 0)) for k in keys]
    return (jnp.stack([jax.random.fold_in(k, 1) for k in keys]),
            jax.tree.map(lambda *xs: jnp.stack(xs), *initial))


def make_apply(graphdef: nnx.GraphDef) -> Callable[[nnx.State, jnp.ndarray], PolicyOutput]:
    return lambda params, obs: nnx.merge(graphdef, params)(obs)


def gae(traj: Transition, last_value: jnp.ndarray, gamma: float, lam: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(advantages, returns)`` ``[T, N]``: ``delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t``,
    ``A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}``, ``R_t = A_t + V_t``."""
    def back(carry, t):
        advantage, next_value = carry
        keep = 1.0 - t.done.astype(jnp.float32)
        delta = t.reward + gamma * next_value * keep - t.value
        advantage = delta + gamma * lam * keep * advantage
        return (advantage, t.value), advantage

    _, advantages = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
    return advantages, advantages + traj.value


def make_train(config: GuidanceConfig, params: EnvParams, view=None
               ) -> Callable[[jnp.ndarray, nnx.State], tuple[RunnerState, UpdateMetrics]]:
    """``train(key, initial) -> (final runner state, metrics [num_updates])`` from the network parameters
    ``initial`` (`init_params` with ``view.dim``): pure, jittable, vmappable over keys and initial parameters.
    ``view``: what the policy observes (default `ActsView`). The initialisation
    stays outside the vmapped program: with it inside (orthogonal initialisers, QR decompositions), the vmapped
    program deadlocked on XLA:CPU (jax 0.10.2: it never returned, at 0% CPU); each initialiser vmapped alone does
    not, and nothing else needed moving."""
    view = ActsView(params) if view is None else view
    graphdef = network(config, view.dim)
    apply = make_apply(graphdef)
    n, steps, updates = config.num_envs, config.num_steps, config.num_updates
    batch = n * steps
    minibatch = batch // config.num_minibatches
    lr = (optax.linear_schedule(config.learning_rate, 0.0, updates * config.update_epochs * config.num_minibatches)
          if config.anneal_lr else config.learning_rate)
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))
    step_all = jax.vmap(step, in_axes=(0, 0, 0, None))
    reset_all = jax.vmap(reset, in_axes=(0, None))
    view_reset = jax.vmap(view.reset)
    view_step = jax.vmap(view.step)

    def env_step(rs: RunnerState, _) -> tuple[RunnerState, Transition]:
        key, k_act, k_step, k_reset, k_view, k_view_reset = jax.random.split(rs.key, 6)
        logits, value, _ = apply(rs.params, rs.obs)
        dist = distrax.Categorical(logits=logits)
        action = dist.sample(seed=k_act)
        _, state, reward, done, info = step_all(jax.random.split(k_step, n), rs.env_state, action, params)
        obs, view_state = view_step(jax.random.split(k_view, n), rs.view_state, rs.env_state, state, action, info)
        if config.reward == "expected":  # the sale's probability instead of the draw: same mean, less variance
            reward = info["sale_prob"] - params.time_cost * info["played"]
        total = rs.running_return + reward
        _, fresh = reset_all(jax.random.split(k_reset, n), params)
        fresh_obs, fresh_view = view_reset(jax.random.split(k_view_reset, n), fresh)
        transition = Transition(rs.obs, action, reward, done, value, dist.log_prob(action),
                                jnp.where(done, total, 0.0), jnp.where(done, state.sale_prob, 0.0),
                                jnp.where(done, state.exchange, 0).astype(jnp.float32))
        rs = RunnerState(rs.params, rs.opt_state, replace_finished(done, fresh, state),
                         replace_finished(done, fresh_view, view_state), jnp.where(done[:, None], fresh_obs, obs),
                         jnp.where(done, 0.0, total), key)
        return rs, transition

    def loss_fn(p, mb: Transition, advantages, targets):
        logits, value, q = apply(p, mb.obs)
        dist = distrax.Categorical(logits=logits)
        log_prob = dist.log_prob(mb.action)
        ratio = jnp.exp(log_prob - mb.log_prob)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv))
        clipped = mb.value + jnp.clip(value - mb.value, -config.clip_eps, config.clip_eps)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - targets) ** 2, (clipped - targets) ** 2))
        q_taken = jnp.take_along_axis(q, mb.action[:, None], axis=-1)[:, 0]
        q_loss = 0.5 * jnp.mean((q_taken - targets) ** 2)
        entropy = jnp.mean(dist.entropy())
        loss = policy_loss + config.value_coef * (value_loss + q_loss) - config.entropy_coef * entropy
        return loss, (policy_loss, value_loss, q_loss, entropy, jnp.mean(mb.log_prob - log_prob))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(rs: RunnerState, _) -> tuple[RunnerState, UpdateMetrics]:
        rs, traj = jax.lax.scan(env_step, rs, None, steps)
        last_value = apply(rs.params, rs.obs).value
        advantages, targets = gae(traj, last_value, config.gamma, config.gae_lambda)
        flat = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), (traj, advantages, targets))

        def epoch(carry, _):
            p, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            order = jax.random.permutation(k_perm, batch)
            shuffled = jax.tree.map(lambda x: x[order].reshape((config.num_minibatches, minibatch) + x.shape[1:]),
                                    flat)

            def minibatch_step(carry, mb):
                p, opt_state = carry
                (_, aux), grads = grad_fn(p, *mb)
                updates_, opt_state = optimizer.update(grads, opt_state, p)
                return (optax.apply_updates(p, updates_), opt_state), aux

            (p, opt_state), aux = jax.lax.scan(minibatch_step, (p, opt_state), shuffled)
            return (p, opt_state, key), aux

        key, k_epochs = jax.random.split(rs.key)
        (p, opt_state, _), aux = jax.lax.scan(epoch, (rs.params, rs.opt_state, k_epochs), None, config.update_epochs)
        episodes = jnp.sum(traj.done)
        per_episode = lambda x: jnp.sum(x) / jnp.maximum(episodes, 1)  # noqa: E731
        metrics = UpdateMetrics(episodes, per_episode(traj.episode_return), per_episode(traj.episode_sale_prob),
                                per_episode(traj.episode_exchanges), *(jnp.mean(a) for a in aux))
        return rs._replace(params=p, opt_state=opt_state, key=key), metrics

    def train(key: jnp.ndarray, initial: nnx.State) -> tuple[RunnerState, UpdateMetrics]:
        k_env, k_run = jax.random.split(key)
        _, state = reset_all(jax.random.split(k_env, n), params)
        obs, view_state = view_reset(jax.random.split(jax.random.fold_in(k_env, 1), n), state)
        rs = RunnerState(initial, optimizer.init(initial), state, view_state, obs, jnp.zeros(n), k_run)
        return jax.lax.scan(update, rs, None, updates)

    return train

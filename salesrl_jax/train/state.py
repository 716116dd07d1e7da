"""The training state as one named pytree, and the optimizers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from salesrl_jax.models.bag import Statistic
from salesrl_jax.models.config import ModelConfig


@struct.dataclass
class TrainState:
    """Everything a jitted update reads and writes (the graph definition stays outside, static)."""

    params: nnx.State  # the agent's parameters
    opt_state: optax.OptState
    step: jnp.ndarray  # [] int32 optimizer steps taken in this phase
    key: jnp.ndarray  # [2] uint32 PRNG key (raw, so checkpoints hold a plain array)
    ema: nnx.State | None = None  # the parameters' running average (`average_parameters`), where the phase keeps one


def pretrain_schedule(learning_rate: float, total_steps: int, kind: str = "cosine",
                      steps_per_epoch: int | None = None) -> optax.Schedule:
    """``cosine``: a 5% linear warm-up and cosine decay to 5% of the peak over ``total_steps``; ``constant``: a
    linear warm-up over 5% of one epoch (``steps_per_epoch``), then the peak for good, so the rate at any step
    does not depend on how many epochs were planned (early stopping at epoch 3 of 20 is then the same as
    training for 3 epochs)."""
    if kind == "constant":
        warmup = max((steps_per_epoch or total_steps) // 20, 1)
        return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup),
                                     optax.constant_schedule(learning_rate)], [warmup])
    if kind != "cosine":
        raise ValueError(f"unknown pretrain.schedule {kind!r}")
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(total_steps // 20, 1), max(total_steps, 2),
                                              learning_rate * 0.05)


# The optimizers' numeric settings (peak learning rate, weight decay, clip norm) live in the optimizer state
# (`optax.inject_hyperparams`), not in the compiled update: runs that differ only in them share one program, and a
# sweep stacks their states and vmaps the update over them (`salesrl_jax.train.loop.train_together`). The
# schedule's shape (warm-up, decay, length) is structural and stays in the closure.

def adamw_schedule(learning_rate: float, total_steps: int, weight_decay: float, max_grad_norm: float,
                   kind: str = "cosine", steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """Clipped AdamW at ``learning_rate * shape(step)``, ``shape`` = `pretrain_schedule` with a peak of 1."""
    shape = pretrain_schedule(1.0, total_steps, kind, steps_per_epoch)

    def adamw(learning_rate, weight_decay, max_grad_norm):
        return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                           optax.adamw(lambda count: learning_rate * shape(count), weight_decay=weight_decay))

    return optax.inject_hyperparams(adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=learning_rate, weight_decay=weight_decay, max_grad_norm=max_grad_norm)


def adam_linear(learning_rate: float, total_steps: int, max_grad_norm: float) -> optax.GradientTransformation:
    """Clipped Adam with a linear decay to zero (the PPO default of the PPO paper and CleanRL)."""
    shape = optax.linear_schedule(1.0, 0.0, max(total_steps, 1))

    def adam(learning_rate, max_grad_norm):
        return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                           optax.adam(lambda count: learning_rate * shape(count), eps=1e-5))

    return optax.inject_hyperparams(adam, hyperparam_dtype=jnp.float32)(
        learning_rate=learning_rate, max_grad_norm=max_grad_norm)


def freeze_statistics(optimizer: optax.GradientTransformation, params: nnx.State,
                      fixed: tuple[tuple[str, ...], ...] = ()) -> optax.GradientTransformation:
    """``optimizer`` on the parameters, and no update at all (no step, no weight decay, no moments) on fitted
    statistics (`salesrl_jax.models.bag.Statistic`, such as the n-gram idf) and on the parameters at the paths
    ``fixed`` (such as ``("encoder", "project", "kernel")``, `fixed_parameters`); ``optimizer`` itself when there is
    none of either."""
    def labels(tree):
        def label(path, leaf):
            frozen = isinstance(leaf, Statistic) or tuple(_key_name(k) for k in path) in fixed
            return "frozen" if frozen else "train"
        return jax.tree_util.tree_map_with_path(label, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))

    if "frozen" not in jax.tree.leaves(labels(params)):
        return optimizer
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


BAG_KERNEL = ("encoder", "project", "kernel")


def fixed_parameters(model: ModelConfig, params: nnx.State) -> tuple[tuple[str, ...], ...]:
    """The parameter paths no optimizer moves besides the statistics: the n-gram bag's kernel where
    ``model.bag_trainable`` is off (a dense projection, which has a kernel at the same path, always trains)."""
    project = params["encoder"]["project"]
    return (BAG_KERNEL,) if not model.bag_trainable and "idf" in project else ()


def _key_name(key) -> str:
    return str(getattr(key, "key", getattr(key, "name", key)))


def init_state(params: nnx.State, optimizer: optax.GradientTransformation, seed: int,
               average: bool = False) -> TrainState:
    """A phase's first state; ``average``: it keeps a running average of the parameters, starting at them."""
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), jax.random.PRNGKey(seed),
                      jax.tree.map(jnp.array, params) if average else None)


def average_decay(first_step: jnp.ndarray, decay: jnp.ndarray, steps: jnp.ndarray, length: int) -> jnp.ndarray:
    """``prod_{i < steps} d_{t_i}``, ``d_t = min(decay, (1 + t) / (10 + t))``, ``t_i = first_step + i``: the weight
    the running average keeps over ``steps`` optimizer steps (at most ``length``, static) when it is updated once for
    all of them. The cap (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) makes the average span
    about the last tenth of the steps early on, so the first steps' parameters are forgotten however short the run,
    and ``1 / (1 - decay)`` steps later."""
    i = jnp.arange(length)
    t = (first_step + i).astype(jnp.float32)
    return jnp.prod(jnp.where(i < steps, jnp.minimum(decay, (1.0 + t) / (10.0 + t)), 1.0))


def average_parameters(ema: nnx.State, params: nnx.State, kept: jnp.ndarray) -> nnx.State:
    """The parameters' exponential moving average (Polyak averaging) moved toward ``params``:
    ``ema <- kept ema + (1 - kept) params`` (``kept`` from `average_decay`; 0 gives the parameters exactly). Only
    floating-point leaves are averaged; others take the parameters' value."""
    kept = jnp.asarray(kept, jnp.float32)

    def one(e, p):
        if not jnp.issubdtype(e.dtype, jnp.inexact):
            return p
        return kept.astype(e.dtype) * e + (1.0 - kept).astype(e.dtype) * p

    return jax.tree.map(one, ema, params)


def averaged(state: TrainState) -> TrainState:
    """``state`` with its running average as its parameters and no average kept: what validation, the best
    checkpoint and the next phase read (``state`` itself where it keeps none)."""
    return state if state.ema is None else state.replace(params=state.ema, ema=None)

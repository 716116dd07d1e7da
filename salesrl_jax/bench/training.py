"""Training throughput: supervised turns/s and PPO environment steps/s, compile time apart, and
achieved FLOP/s against the machine's measured matmul peak (at 3072-d the work is matmul-bound)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.bench.inference import TURNS_PER_CONVERSATION, random_inputs
from salesrl_jax.bench.timing import compile_and_time, program_flops
from salesrl_jax.models.agent import create_agent
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.run.config import PPOConfig, PretrainConfig, TrainConfig
from salesrl_jax.train.bootstrap import bootstrap_weights
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.ppo import PPOBatch, make_ppo_update, ppo_loss, rollout
from salesrl_jax.train.state import adam_linear, adamw_schedule, init_state
from salesrl_jax.train.supervised import SupervisedBatch, make_train_chunk, supervised_loss

# The incumbent's network size (3088-float observation, 512-256-64 extractor, 128-64 heads), in our
# architecture: a 512-wide projection, a 256-wide hidden layer, a 64-wide state, 128-wide head layers.
INCUMBENT_SIZED = ModelConfig(turn_dim=512, hidden_dim=256, state_dim=64, head_hidden=128)
MODELS = {"default": ModelConfig(), "incumbent-sized": INCUMBENT_SIZED}


def _supervised_batches(dim: int, rows: int, minibatches: int, heads: int) -> SupervisedBatch:
    inputs = [random_inputs(rows, dim, seed=m) for m in range(minibatches)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *inputs)  # [minibatches, rows, ...]
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 2, (minibatches, rows)), jnp.float32)
    first_rows = np.broadcast_to(np.arange(rows) // TURNS_PER_CONVERSATION * TURNS_PER_CONVERSATION,
                                 (minibatches, rows)) + np.arange(minibatches)[:, None] * rows
    return SupervisedBatch(stacked, labels, jnp.asarray(bootstrap_weights(0, 0, first_rows, heads)))


def _ppo_batch(dim: int, rows: int, minibatches: int, heads: int) -> PPOBatch:
    batches = _supervised_batches(dim, rows, minibatches, heads)
    return PPOBatch(batches.inputs, batches.labels, batches.bootstrap)


def training_throughput(dims=(512, 3072), models=("default", "incumbent-sized"), peak_flops: float | None = None,
                        min_seconds: float = 2.0) -> list[dict]:
    pre, ppo = PretrainConfig(), PPOConfig()
    rows = []
    for dim in dims:
        for name in models:
            model = MODELS[name]
            config = TrainConfig(model=model)
            graphdef, params = create_agent(model, dim, 0)
            row = {"dim": dim, "model": name,
                   "parameters": int(sum(np.asarray(x).size for x in jax.tree.leaves(params)))}

            optimizer = adamw_schedule(pre.learning_rate, 1000, pre.weight_decay, pre.max_grad_norm)
            train_chunk = make_train_chunk(graphdef, optimizer)
            state = init_state(params, optimizer, 0)
            batches = _supervised_batches(dim, pre.rows_per_minibatch, 4, model.ensemble_size)
            hp = Hyperparams.pretrain(config)
            compile_s, times = compile_and_time(train_chunk, state, batches, hp, min_seconds=min_seconds)
            seconds = float(np.median(times))
            row["pretrain_turns_per_s"] = 4 * pre.rows_per_minibatch / seconds
            row["pretrain_compile_s"] = compile_s
            # XLA's cost analysis counts a scan body once, not once per iteration: count one minibatch's
            # gradient step and multiply by the minibatches of the chunk.
            grad = jax.jit(jax.value_and_grad(supervised_loss, has_aux=True), static_argnums=1)
            step_flops = program_flops(grad, params, graphdef, jax.tree.map(lambda x: x[0], batches), hp,
                                       jax.random.PRNGKey(0))
            flops = step_flops * 4 if step_flops else None
            if flops:
                row["pretrain_gflops_per_s"] = flops / seconds / 1e9
                if peak_flops:
                    row["pretrain_fraction_of_peak"] = flops / seconds / peak_flops

            optimizer = adam_linear(ppo.learning_rate, 1000, ppo.max_grad_norm)
            update = make_ppo_update(graphdef, optimizer, epochs=ppo.epochs, reward_kind=ppo.reward)
            state = init_state(params, optimizer, 0)
            batch = _ppo_batch(dim, ppo.rows_per_minibatch, ppo.minibatches, model.ensemble_size)
            hp = Hyperparams.ppo(config)
            compile_s, times = compile_and_time(update, state, batch, hp, min_seconds=min_seconds)
            seconds = float(np.median(times))
            steps = float(batch.inputs.valid.sum())
            row["ppo_env_steps_per_s"] = steps / seconds
            row["ppo_compile_s"] = compile_s
            roll_fn = jax.jit(lambda p, b, k: rollout(nnx.merge(graphdef, p), b, hp, k, ppo.reward))
            roll_flops = program_flops(roll_fn, params, batch, jax.random.PRNGKey(0))
            roll = roll_fn(params, batch, jax.random.PRNGKey(0))
            one = lambda x: x[0]  # noqa: E731
            grad = jax.jit(jax.value_and_grad(ppo_loss, has_aux=True), static_argnums=1)
            step_flops = program_flops(grad, params, graphdef, jax.tree.map(one, batch.inputs), batch.labels[0],
                                       batch.bootstrap[0], jax.tree.map(one, roll), hp)
            flops = roll_flops + ppo.epochs * ppo.minibatches * step_flops if roll_flops and step_flops else None
            if flops:
                row["ppo_gflops_per_s"] = flops / seconds / 1e9
                if peak_flops:
                    row["ppo_fraction_of_peak"] = flops / seconds / peak_flops
            rows.append(row)
    return rows

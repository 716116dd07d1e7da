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


def random_supervised_batches(dim: int, rows: int, minibatches: int, heads: int) -> SupervisedBatch:
    """``minibatches`` x ``rows`` random turns for supervised pretraining (conversations of
    `TURNS_PER_CONVERSATION`), random outcomes and ``heads`` bootstrap weights per row: what the throughput
    benchmarks time (values do not matter)."""
    inputs = [random_inputs(rows, dim, seed=m) for m in range(minibatches)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *inputs)  # [minibatches, rows, ...]
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 2, (minibatches, rows)), jnp.float32)
    first_rows = np.broadcast_to(np.arange(rows) // TURNS_PER_CONVERSATION * TURNS_PER_CONVERSATION,
                                 (minibatches, rows)) + np.arange(minibatches)[:, None] * rows
    return SupervisedBatch(stacked, labels, jnp.asarray(bootstrap_weights(0, 0, first_rows, heads)))


def random_ppo_batch(dim: int, rows: int, minibatches: int, heads: int) -> PPOBatch:
    """A PPO batch of ``minibatches`` x ``rows`` random turns (conversations of `TURNS_PER_CONVERSATION`), random
    outcomes and ``heads`` bootstrap weights per row: what the throughput benchmarks time (values do not matter)."""
    batches = random_supervised_batches(dim, rows, minibatches, heads)
    return PPOBatch(batches.inputs, batches.labels, batches.bootstrap)


def _pretrain_switches(pre: PretrainConfig) -> dict[str, bool]:
    """The pretraining program's static switches a run with ``pre`` trains with (dropouts, the parameters' running
    average), so it is timed as the run would be."""
    return {"input_dropout": pre.input_dropout > 0, "text_dropout": pre.text_dropout > 0, "average": pre.ema_decay > 0}


def training_throughput(dims=(512, 3072), models=("default", "incumbent-sized"), peak_flops: float | None = None,
                        min_seconds: float = 2.0, rows: int | None = None) -> list[dict]:
    """Supervised and PPO throughput of each model size at each embedding width; ``rows`` turn slots per packed
    minibatch (None: the config defaults, 2,048 for both phases)."""
    pre, ppo = PretrainConfig(), PPOConfig()
    if rows:
        pre, ppo = PretrainConfig(rows_per_minibatch=rows), PPOConfig(rows_per_minibatch=rows)
    rows = []
    for dim in dims:
        for name in models:
            model = MODELS[name]
            config = TrainConfig(model=model)
            graphdef, params = create_agent(model, dim, 0)
            row = {"dim": dim, "model": name, "rows": pre.rows_per_minibatch,
                   "parameters": int(sum(np.asarray(x).size for x in jax.tree.leaves(params)))}

            optimizer = adamw_schedule(pre.learning_rate, 1000, pre.weight_decay, pre.max_grad_norm)
            switches = _pretrain_switches(pre)
            train_chunk = make_train_chunk(graphdef, optimizer, **switches)
            state = init_state(params, optimizer, 0, average=switches["average"])
            batches = random_supervised_batches(dim, pre.rows_per_minibatch, 4, model.ensemble_size)
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
            batch = random_ppo_batch(dim, ppo.rows_per_minibatch, ppo.minibatches, model.ensemble_size)
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


def mesh_throughput(dim: int = 3072, model: str = "default", device_counts=(1, 2, 4, 8), rows: int | None = None,
                    min_seconds: float = 2.0) -> list[dict]:
    """Data-parallel training throughput (`salesrl_jax.parallel`) on meshes of each of ``device_counts`` devices
    that JAX sees (one packed slice per device, parameters replicated; then FSDP at the largest count): the same
    jitted chunk and PPO update as `training_throughput`, the batch sharded on the data axis. On CPU, set
    XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts to get 8 virtual devices: they share the
    machine's cores, so the figures then measure the partitioning's overhead, not a speed-up."""
    from salesrl_jax.parallel import make_placement

    pre, ppo = PretrainConfig(), PPOConfig()
    rows_pre, rows_ppo = rows or pre.rows_per_minibatch, rows or ppo.rows_per_minibatch
    config = TrainConfig(model=MODELS[model])
    graphdef, params = create_agent(config.model, dim, 0)
    counts = [d for d in device_counts if d <= jax.device_count()]
    layouts = [(d, "replicated") for d in counts] + ([(counts[-1], "fsdp")] if counts[-1] > 1 else [])
    host_pre = jax.tree.map(np.asarray, random_supervised_batches(dim, rows_pre, 4, config.model.ensemble_size))
    host_ppo = jax.tree.map(np.asarray, random_ppo_batch(dim, rows_ppo, ppo.minibatches, config.model.ensemble_size))
    out = []
    for devices, layout in layouts:
        placement = make_placement(devices, devices, layout)
        row = {"devices": devices, "params": layout, "platform": jax.devices()[0].platform, "dim": dim,
               "model": model, "rows": rows_pre}

        def sliced(batch):  # the random conversations (10 turns) are cut at slice edges: timing only
            return batch._replace(inputs=batch.inputs.replace(segments=devices))

        optimizer = adamw_schedule(pre.learning_rate, 1000, pre.weight_decay, pre.max_grad_norm)
        switches = _pretrain_switches(pre)
        chunk = make_train_chunk(graphdef, optimizer, placement=placement, **switches)
        state = placement.put_state(init_state(params, optimizer, 0, average=switches["average"]))
        batches = placement.put_batch(sliced(host_pre))
        compile_s, times = compile_and_time(chunk, state, batches, Hyperparams.pretrain(config),
                                            min_seconds=min_seconds)
        row["pretrain_turns_per_s"] = 4 * rows_pre / float(np.median(times))
        row["pretrain_compile_s"] = compile_s

        optimizer = adam_linear(ppo.learning_rate, 1000, ppo.max_grad_norm)
        update = make_ppo_update(graphdef, optimizer, epochs=ppo.epochs, reward_kind=ppo.reward, placement=placement)
        state = placement.put_state(init_state(params, optimizer, 0))
        batch = placement.put_batch(sliced(host_ppo))
        compile_s, times = compile_and_time(update, state, batch, Hyperparams.ppo(config), min_seconds=min_seconds)
        row["ppo_env_steps_per_s"] = float(host_ppo.inputs.valid.sum()) / float(np.median(times))
        row["ppo_compile_s"] = compile_s
        out.append(row)
    base = out[0]
    for row in out:
        row["pretrain_over_one_device"] = row["pretrain_turns_per_s"] / base["pretrain_turns_per_s"]
        row["ppo_over_one_device"] = row["ppo_env_steps_per_s"] / base["ppo_env_steps_per_s"]
    return out

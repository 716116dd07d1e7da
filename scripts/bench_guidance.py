"""Throughput of the guidance environment and of PPO in it, on this machine (docs/benchmarks.md, "Guidance").

* environment alone: ``num_envs`` conversations stepped for 128 steps by uniformly random actions or by the scripted
  rep, finished ones replaced by new customers (reset every step and selected, as gymnax's auto-reset does), one
  jitted program;
* PPO end to end (`salesrl_jax.guidance.ppo`): the default config, 1M exchanges, one seed and three seeds vmapped,
  timed on a second call (the first compiles; its time is printed apart).

    python scripts/bench_guidance.py
"""
import dataclasses
import json
import time

import jax
import jax.numpy as jnp

from salesrl_jax.env.environment import NUM_ACTIONS, make_params, reset, step
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.policies import scripted
from salesrl_jax.guidance.ppo import make_train, seed_inputs

STEPS = 128


def env_rate(params, num_envs: int, policy: str) -> float:
    step_all = jax.vmap(step, in_axes=(0, 0, 0, None))
    reset_all = jax.vmap(reset, in_axes=(0, None))

    def run(key):
        _, state = reset_all(jax.random.split(key, num_envs), params)

        def one(carry, _):
            state, key = carry
            key, k_act, k_step, k_reset = jax.random.split(key, 4)
            if policy == "scripted":
                act = jax.vmap(scripted().act, in_axes=(0, 0, None, None, None))
                action = act(jax.random.split(k_act, num_envs), state, None, None, params)
            else:
                action = jax.random.randint(k_act, (num_envs,), 0, NUM_ACTIONS)
            _, state, reward, done, _ = step_all(jax.random.split(k_step, num_envs), state, action, params)
            _, fresh = reset_all(jax.random.split(k_reset, num_envs), params)
            state = jax.tree.map(lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b),
                                 fresh, state)
            return (state, key), reward.sum()

        return jax.lax.scan(one, (state, key), None, STEPS)[1].sum()

    run = jax.jit(run)
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(1)))
    return num_envs * STEPS / (time.perf_counter() - start)


def ppo_rate(params, seeds: tuple[int, ...]) -> tuple[float, float]:
    config = dataclasses.replace(GuidanceConfig(seeds=seeds), total_steps=1_000_000)
    train = jax.jit(jax.vmap(make_train(config, params)))
    inputs = seed_inputs(config, seeds)
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    steps = len(seeds) * config.num_updates * config.num_envs * config.num_steps
    return steps / (time.perf_counter() - start), first


def main() -> None:
    params = make_params()
    rows = {f"env_steps_per_s_{policy}_{n}_envs": env_rate(params, n, policy)
            for policy in ("random", "scripted") for n in (512, 4096)}
    for seeds in ((0,), (0, 1, 2)):
        rate, first = ppo_rate(params, seeds)
        rows[f"ppo_env_steps_per_s_{len(seeds)}_seeds"] = rate
        rows[f"ppo_first_call_s_{len(seeds)}_seeds"] = first
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

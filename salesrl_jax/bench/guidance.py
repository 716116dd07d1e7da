"""Throughput of the guidance environment and of PPO in it (`salesrl bench --parts guidance`).

* environment alone: ``num_envs`` conversations stepped for 128 steps by uniformly random actions or by the scripted
  rep, finished ones replaced by new customers (reset every step and selected, as gymnax's auto-reset does), one
  jitted program, timed on its second call;
* PPO end to end (`salesrl_jax.guidance.ppo`): the default config for ``ppo_steps`` exchanges per seed, one seed and
  three seeds vmapped, timed on a second call (the first compiles; its time is reported apart).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax

from salesrl_jax.env.environment import NUM_ACTIONS, EnvParams, make_params, replace_finished, reset, step
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.policies import scripted
from salesrl_jax.guidance.ppo import make_train, seed_inputs

STEPS = 128


def env_steps_per_s(params: EnvParams, num_envs: int, policy: str) -> float:
    step_all = jax.vmap(step, in_axes=(0, 0, 0, None))
    reset_all = jax.vmap(reset, in_axes=(0, None))
    act = jax.vmap(scripted().act, in_axes=(0, 0, None, None, None))

    def run(key):
        _, state = reset_all(jax.random.split(key, num_envs), params)

        def one(carry, _):
            state, key = carry
            key, k_act, k_step, k_reset = jax.random.split(key, 4)
            if policy == "scripted":
                action = act(jax.random.split(k_act, num_envs), state, None, None, params)
            else:
                action = jax.random.randint(k_act, (num_envs,), 0, NUM_ACTIONS)
            _, state, reward, done, _ = step_all(jax.random.split(k_step, num_envs), state, action, params)
            _, fresh = reset_all(jax.random.split(k_reset, num_envs), params)
            state = replace_finished(done, fresh, state)
            return (state, key), reward.sum()

        return jax.lax.scan(one, (state, key), None, STEPS)[1].sum()

    run = jax.jit(run)
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(1)))
    return num_envs * STEPS / (time.perf_counter() - start)


def ppo_steps_per_s(params: EnvParams, config: GuidanceConfig) -> tuple[float, float]:
    """``(env steps/s on the second call, first call's seconds)``."""
    train = jax.jit(jax.vmap(make_train(config, params)))
    inputs = seed_inputs(config, config.seeds)
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    steps = len(config.seeds) * config.num_updates * config.num_envs * config.num_steps
    return steps / (time.perf_counter() - start), first


def guidance_throughput(num_envs: Sequence[int] = (512, 4096), ppo_steps: int = 1_000_000,
                        seed_groups: Sequence[tuple[int, ...]] = ((0,), (0, 1, 2))) -> list[dict]:
    params = make_params()
    rows = [{"what": f"environment, {policy} actions", "num_envs": n, "env_steps_per_s": env_steps_per_s(params, n, policy)}
            for policy in ("random", "scripted") for n in num_envs]
    for seeds in seed_groups:
        config = dataclasses.replace(GuidanceConfig(seeds=seeds), total_steps=ppo_steps)
        rate, first = ppo_steps_per_s(params, config)
        rows.append({"what": f"PPO end to end, {len(seeds)} seed(s) vmapped", "num_envs": config.num_envs,
                     "env_steps_per_s": rate, "first_call_s": first})
    return rows

"""Throughput of the guidance environment and of PPO in it (`salesrl bench --parts guidance`).

* environment alone: ``num_envs`` conversations stepped for 128 steps by uniformly random actions or by the scripted
  rep, finished ones replaced by new customers (reset every step and selected, as gymnax's auto-reset does), one
  jitted program, timed on its second call;
* PPO end to end (`salesrl_jax.guidance.ppo`): the default config for ``ppo_steps`` exchanges per seed, one seed and
  three seeds vmapped, timed on a second call (the first compiles; its time is reported apart); then one seed on
  the observation view "model" (the default conversion model's 128-d encoder state, 512-d offline embeddings,
  randomly initialised: the speed does not depend on the weights);
* the streaming `Scorer` on the same model, embedding cached, without and with a guidance policy, same run
  (`scorer_guidance_latency`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax

from salesrl_jax.env.environment import NUM_ACTIONS, OBS_DIM, EnvParams, make_params, replace_finished, reset, step
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


def ppo_steps_per_s(params: EnvParams, config: GuidanceConfig, view=None) -> tuple[float, float]:
    """``(env steps/s on the second call, first call's seconds)``; ``view``: the observation (default acts)."""
    train = jax.jit(jax.vmap(make_train(config, params, view)))
    inputs = seed_inputs(config, config.seeds, OBS_DIM if view is None else view.dim)
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(train(*inputs))
    steps = len(config.seeds) * config.num_updates * config.num_envs * config.num_steps
    return steps / (time.perf_counter() - start), first


def _model_and_policy(params: EnvParams, config: GuidanceConfig):
    """The default model (random, 512-d), its view "model", and a random policy on its state."""
    from salesrl_jax.bench.inference import bench_model
    from salesrl_jax.embed.hashing import HashingEmbedder
    from salesrl_jax.guidance.bank import build_bank
    from salesrl_jax.guidance.ppo import init_params, network
    from salesrl_jax.guidance.train import TrainedPolicy
    from salesrl_jax.guidance.views import model_view
    from salesrl_jax.sim.config import SimulatorConfig

    model = bench_model(512)
    view = model_view(model, build_bank(SimulatorConfig(), HashingEmbedder(512)), params)
    policy = TrainedPolicy(None, config, network(config, view.dim),
                           init_params(config, view.dim, jax.random.PRNGKey(0)), view.dim, model.params_digest)
    return model, view, policy


def scorer_guidance_latency(model, policy, turns: int = 3000) -> dict:
    """p50 per turn of the streaming `Scorer` (embedding cached) without and with ``policy``, alternating."""
    import numpy as np

    from salesrl_jax.bench.inference import TURNS_PER_CONVERSATION, random_inputs
    from salesrl_jax.embed.hashing import HashingEmbedder
    from salesrl_jax.infer.scorer import Scorer

    inputs = random_inputs(turns, 512)
    embeddings, features = np.asarray(inputs.embeddings), np.asarray(inputs.features)
    scorers = {"without": Scorer(model, HashingEmbedder(512), confidence=False),
               "with": Scorer(model, HashingEmbedder(512), confidence=False, guidance=policy)}
    sessions = {k: s.session() for k, s in scorers.items()}
    seconds = {k: np.empty(turns) for k in scorers}
    for k, s in scorers.items():
        s.score_embedded(sessions[k], embeddings[0], features[0])  # compile
    for i in range(turns):
        for k, s in scorers.items():
            if i % TURNS_PER_CONVERSATION == 0:
                sessions[k] = s.session()
            start = time.perf_counter()
            s.score_embedded(sessions[k], embeddings[i], features[i])
            seconds[k][i] = time.perf_counter() - start
    p50 = {k: float(np.percentile(v, 50) * 1e3) for k, v in seconds.items()}
    return {"p50_ms_without": p50["without"], "p50_ms_with": p50["with"], "with_over_without": p50["with"]
            / p50["without"]}


def guidance_throughput(num_envs: Sequence[int] = (512, 4096), ppo_steps: int = 1_000_000,
                        seed_groups: Sequence[tuple[int, ...]] = ((0,), (0, 1, 2)), view_model: bool = True,
                        stream_turns: int = 3000) -> list[dict]:
    params = make_params()
    rows = [{"what": f"environment, {policy} actions", "num_envs": n, "env_steps_per_s": env_steps_per_s(params, n, policy)}
            for policy in ("random", "scripted") for n in num_envs]
    for seeds in seed_groups:
        config = dataclasses.replace(GuidanceConfig(seeds=seeds), total_steps=ppo_steps)
        rate, first = ppo_steps_per_s(params, config)
        rows.append({"what": f"PPO end to end, {len(seeds)} seed(s) vmapped", "num_envs": config.num_envs,
                     "env_steps_per_s": rate, "first_call_s": first})
    if view_model:
        config = GuidanceConfig(observation="model", model="(the default model, random)", total_steps=ppo_steps)
        model, view, policy = _model_and_policy(params, config)
        rate, first = ppo_steps_per_s(params, config, view)
        rows.append({"what": "PPO end to end, 1 seed, view model (128-d encoder state)", "num_envs": config.num_envs,
                     "env_steps_per_s": rate, "first_call_s": first})
        latency = scorer_guidance_latency(model, policy, stream_turns)
        rows.append({"what": "streaming Scorer, 512-d cached, p50 ms without / with guidance",
                     "num_envs": 1, "env_steps_per_s": 0.0, **latency})
    return rows

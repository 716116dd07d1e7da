"""What `model.pool_features` costs where the speed figures against the incumbent are measured: the default model at
3072-d with the pools averaging the turn features too (on) and the text vector alone (off), in one run.

- streaming p50 per turn, embedding cached (`Scorer.score_embedded`, as `salesrl bench --parts stream`), the two
  models alternated ``repeats`` times;
- batch 1,024 turns/s, float32 and int8 (embeddings quantized upstream, as `salesrl score --quantized`), the four
  programs timed in interleaved rounds;
- PPO env steps/s of the incumbent-sized model (as `salesrl bench --parts train`), alternated ``repeats`` times.

    python scripts/pool_features_cost.py --repeats 3
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from salesrl_jax import help_text
from salesrl_jax.bench import inference, training
from salesrl_jax.bench.timing import compile_and_time, interleaved_times
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.embed.hashing import HashingEmbedder
from salesrl_jax.infer.quantize import quantize_rows_np
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.models.agent import create_agent
from salesrl_jax.models.predict import make_predict
from salesrl_jax.run.config import PPOConfig, TrainConfig
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.ppo import make_ppo_update
from salesrl_jax.train.state import adam_linear, init_state

SIDES = (True, False)  # pool_features on, off


@dataclasses.dataclass(frozen=True)
class Config:
    repeats: int = 3
    """Alternations of the two models in the streaming and PPO timings."""
    turns: int = 2000
    """Turns streamed per model and repeat."""
    min_seconds: float = 1.0
    """Steady-state timing per measurement."""
    dim: int = 3072
    """Embedding width (3072: text-embedding-3-large, where the figures against the incumbent are measured)."""
    ppo_rows: int = 0
    """Turn slots per PPO minibatch (0: the PPO config's default, what `salesrl bench --parts train` times)."""


def model_config(pooled: bool, base=None):
    base = base or TrainConfig().model
    return dataclasses.replace(base, pool_features=pooled)


def streaming_p50(config: Config) -> dict[bool, list[float]]:
    scorers = {}
    for pooled in SIDES:
        train = TrainConfig(embedder=EmbedderConfig(kind="hashing", dim=config.dim), model=model_config(pooled))
        scorers[pooled] = Scorer(inference.bench_model(config.dim, train), HashingEmbedder(config.dim))
    inputs = inference.random_inputs(config.turns, config.dim)
    p50: dict[bool, list[float]] = {pooled: [] for pooled in SIDES}
    for _ in range(config.repeats):
        for pooled, scorer in scorers.items():
            p50[pooled].append(float(np.percentile(inference.time_embedded(scorer, inputs), 50) * 1e3))
    return p50


def batch_turns_per_s(config: Config, batch: int = 1024) -> dict[str, float]:
    inputs = inference.random_inputs(batch, config.dim)
    q, scale = quantize_rows_np(np.asarray(inputs.embeddings))
    int8_inputs = inputs.replace(embeddings=jnp.asarray(q), embedding_scale=jnp.asarray(scale))
    variants = {}
    for pooled in SIDES:
        train = TrainConfig(embedder=EmbedderConfig(kind="hashing", dim=config.dim), model=model_config(pooled))
        model = inference.bench_model(config.dim, train)
        variants[f"float32 {'on' if pooled else 'off'}"] = (make_predict(model.graphdef), (model.params, inputs))
        graphdef, params = inference.bench_int8(model, config.dim)
        variants[f"int8 {'on' if pooled else 'off'}"] = (make_predict(graphdef), (params, int8_inputs))
    _, times = interleaved_times(variants, min_seconds=config.min_seconds)
    return {name: batch / float(np.median(t)) for name, t in times.items()}


def ppo_env_steps_per_s(config: Config) -> dict[bool, list[float]]:
    ppo = PPOConfig(rows_per_minibatch=config.ppo_rows) if config.ppo_rows else PPOConfig()
    updates = {}
    for pooled in SIDES:
        model = model_config(pooled, training.INCUMBENT_SIZED)
        graphdef, params = create_agent(model, config.dim, 0)
        optimizer = adam_linear(ppo.learning_rate, 1000, ppo.max_grad_norm)
        update = make_ppo_update(graphdef, optimizer, epochs=ppo.epochs, reward_kind=ppo.reward)
        batch = training.random_ppo_batch(config.dim, ppo.rows_per_minibatch, ppo.minibatches, model.ensemble_size)
        updates[pooled] = (update, init_state(params, optimizer, 0), batch, Hyperparams.ppo(TrainConfig(model=model)))
    rates: dict[bool, list[float]] = {pooled: [] for pooled in SIDES}
    for _ in range(config.repeats):
        for pooled, (update, state, batch, hp) in updates.items():
            _, times = compile_and_time(update, state, batch, hp, min_seconds=config.min_seconds)
            rates[pooled].append(float(batch.inputs.valid.sum()) / float(np.median(times)))
    return rates


def main(config: Config) -> None:
    p50 = streaming_p50(config)
    print(f"streaming p50 ms, {config.dim}-d embedding cached: on {np.round(p50[True], 4).tolist()}, off "
          f"{np.round(p50[False], 4).tolist()}; ratio of medians on/off {np.median(p50[True]) / np.median(p50[False]):.3f}")
    rates = batch_turns_per_s(config)
    print("batch 1,024 turns/s: " + ", ".join(f"{name} {value:,.0f}" for name, value in rates.items())
          + f"; on/off float32 {rates['float32 on'] / rates['float32 off']:.3f}, "
          f"int8 {rates['int8 on'] / rates['int8 off']:.3f}")
    steps = ppo_env_steps_per_s(config)
    print(f"PPO env steps/s, incumbent-sized, {config.dim}-d: on {np.round(steps[True]).tolist()}, off "
          f"{np.round(steps[False]).tolist()}; ratio of medians on/off "
          f"{np.median(steps[True]) / np.median(steps[False]):.3f}")


if __name__ == "__main__":
    main(help_text.cli(Config))

"""The incumbent's stack beside ours, in one process: the brief's "numbers to beat" measured side by side.

The incumbent (the open-source SalesRLAgent code) is Stable-Baselines3 PPO with torch on the CPU. Its observation
is 3,088 floats: a recency-weighted history of the turns' 3,072-d embeddings and 16 turn features. Its network is
a 512-256-64 feature extractor with 128-64 policy and value heads. This module rebuilds that stack from the
description, not from its code, and times it against two of ours (`OURS`): our default model, and ours at the
incumbent's widths (`salesrl_jax.bench.training.INCUMBENT_SIZED`: a 512-wide turn projection, 256 hidden, a
64-wide state, 128-wide heads), which does more per turn than the incumbent's MLP (history pools of the 512-wide
turns; `batch_comparison` reports each network's multiply-adds per turn: the incumbent's counted from its widths,
ours as half the FLOPs XLA's cost analysis counts, elementwise work included):

- **PPO**: env steps/s of ``PPO.learn`` at SB3's defaults (2,048-step rollouts from one environment, 10 epochs of
  64-step minibatches), its Python environment loop included. Ours is timed twice: at our defaults (4 epochs x 4
  minibatches of 2,048 packed turns, about 2.5x less gradient work per env step) and at SB3's work (10 epochs of
  64-turn minibatches), so the ratio is not flattered by doing less.
- **Streaming**: one turn per call with the history carried between calls. The incumbent's way is
  ``model.predict(obs, deterministic=True)``; its bare torch forward (``inference_mode``) is timed too, as the
  lower bound of any torch scorer of this network. Ours is `Scorer.score_embedded`, without and with confidence.
- **Batch**: 1,024 turns per call; the incumbent's ``model.predict`` on a batch of observations, ours float32 and
  int8 (`make_predict`).

Each comparison runs in alternated rounds (incumbent, ours, incumbent, ...) so a machine slowing down mid-run
moves both. The environment's observation never holds the outcome (the incumbent's does: label leakage; the
speed does not depend on it). Needs the ``incumbent`` extra: ``pip install 'salesrl-jax[incumbent]'``.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import numpy as np

from salesrl_jax.bench.inference import TURNS_PER_CONVERSATION, bench_int8, bench_model, random_inputs, time_embedded
from salesrl_jax.bench.training import MODELS, random_ppo_batch
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.embed.hashing import HashingEmbedder
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.models.agent import create_agent
from salesrl_jax.models.predict import make_predict
from salesrl_jax.run.config import PPOConfig, TrainConfig
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.ppo import make_ppo_update
from salesrl_jax.train.state import adam_linear, init_state


@dataclasses.dataclass(frozen=True)
class IncumbentShape:
    """The incumbent's observation and network widths."""

    embedding_dim: int = 3072
    """Width of the turn embeddings (text-embedding-3-large)."""
    feature_dim: int = 16
    """Turn features after the history embedding (3,072 + 16 = the incumbent's 3,088 floats)."""
    extractor: tuple[int, ...] = (512, 256, 64)
    """Feature extractor widths (ReLU)."""
    heads: tuple[int, ...] = (128, 64)
    """Policy and value head widths (SB3's net_arch, tanh)."""
    history_decay: float = 0.8
    """Recency weight of the history embedding: h_t = decay h_{t-1} + e_t, observed as h_t / |h_t|."""

    @property
    def obs_dim(self) -> int:
        return self.embedding_dim + self.feature_dim


@dataclasses.dataclass(frozen=True)
class SB3PPOWork:
    """PPO work per update: SB3's defaults, which the incumbent's stack runs with."""

    n_steps: int = 2048
    """Rollout length (one environment)."""
    batch_size: int = 64
    """Turns per gradient step."""
    n_epochs: int = 10
    """Passes over each rollout."""


def observe(history: np.ndarray, embedding: np.ndarray, features: np.ndarray, first: bool, decay: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """One turn of the incumbent's observation: ``(h_t, [h_t / |h_t|, features_t])`` with the recency-weighted
    history h_t = decay h_{t-1} + e_t (h_t = e_t at a conversation's ``first`` turn)."""
    history = embedding if first else decay * history + embedding
    return history, np.concatenate([history / max(float(np.linalg.norm(history)), 1e-12), features])


class _Cached:
    """Random cached turns for the incumbent, in its observation layout (values do not change the speed)."""

    def __init__(self, shape: IncumbentShape, rows: int, seed: int = 0):
        inputs = random_inputs(rows, shape.embedding_dim, seed)
        rng = np.random.default_rng(seed + 1)
        self.decay = shape.history_decay
        self.embeddings = np.asarray(inputs.embeddings)
        self.features = rng.uniform(-1, 1, (rows, shape.feature_dim)).astype(np.float32)
        self.labels = rng.integers(0, 2, rows // TURNS_PER_CONVERSATION + 1).astype(np.float32)

    @functools.cached_property
    def observations(self) -> np.ndarray:
        """``[rows, obs_dim]``: every row's observation (`observe` turn by turn, a new conversation every
        `TURNS_PER_CONVERSATION` rows); only the batch comparison reads them all at once."""
        out, history = [], None
        for i, (e, f) in enumerate(zip(self.embeddings, self.features)):
            history, obs = observe(history, e, f, i % TURNS_PER_CONVERSATION == 0, self.decay)
            out.append(obs)
        return np.stack(out)


def make_env(shape: IncumbentShape, cached: _Cached):
    """A gymnasium environment of cached conversations (`TURNS_PER_CONVERSATION` turns each): the observation at
    turn t is [h_t / |h_t|, features_t], the action the conversion estimate a in [0, 1], the reward the Brier score
    1 - (a - y)^2 (ours). The outcome y is in the reward only, never in the observation."""
    import gymnasium as gym

    conversations = len(cached.embeddings) // TURNS_PER_CONVERSATION

    class TurnEnv(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (shape.obs_dim,), np.float32)
        action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

        def __init__(self):
            self._row, self._turn, self._conversation, self._history = 0, 0, 0, None

        def _observe(self) -> np.ndarray:
            self._history, obs = observe(self._history, cached.embeddings[self._row], cached.features[self._row],
                                         self._turn == 0, shape.history_decay)
            return obs

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self._conversation = int(self.np_random.integers(conversations))
            self._turn, self._row = 0, self._conversation * TURNS_PER_CONVERSATION
            return self._observe(), {}

        def step(self, action):
            y = cached.labels[self._conversation]
            reward = 1.0 - (float(np.clip(action[0], 0.0, 1.0)) - y) ** 2
            self._turn += 1
            if self._turn == TURNS_PER_CONVERSATION:
                return np.zeros(shape.obs_dim, np.float32), reward, True, False, {}
            self._row += 1
            return self._observe(), reward, False, False, {}

    return TurnEnv()


def make_incumbent(shape: IncumbentShape, cached: _Cached, work: SB3PPOWork, seed: int = 0):
    """SB3's PPO with the incumbent's network on `make_env`, on the CPU."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class Extractor(BaseFeaturesExtractor):
        def __init__(self, observation_space, widths: tuple[int, ...]):
            super().__init__(observation_space, features_dim=widths[-1])
            layers, width = [], observation_space.shape[0]
            for w in widths:
                layers += [torch.nn.Linear(width, w), torch.nn.ReLU()]
                width = w
            self.net = torch.nn.Sequential(*layers)

        def forward(self, observations):
            return self.net(observations)

    policy_kwargs = {"features_extractor_class": Extractor,
                     "features_extractor_kwargs": {"widths": shape.extractor},
                     "net_arch": {"pi": list(shape.heads), "vf": list(shape.heads)}}
    model = PPO("MlpPolicy", make_env(shape, cached), n_steps=work.n_steps, batch_size=work.batch_size,
                n_epochs=work.n_epochs, policy_kwargs=policy_kwargs, device="cpu", seed=seed, verbose=0)
    # A logger that writes nowhere: SB3's default makes a new SB3-<timestamp> folder in the temp directory at every
    # learn() and leaves it there (one per benchmark run and per test).
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


OURS = ("default", "incumbent-sized")  # our default model, and ours at the incumbent's widths (`INCUMBENT_SIZED`)


def _ours(shape: IncumbentShape, model: str, confidence: bool = False):
    config = TrainConfig(model=MODELS[model], embedder=EmbedderConfig(kind="hashing", dim=shape.embedding_dim))
    return bench_model(shape.embedding_dim, config, confidence=confidence)


def _rounds(variants: dict, rounds: int) -> dict[str, list]:
    """Call each ``name: fn() -> list of samples`` once per round, alternating; the samples of all rounds."""
    out = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            out[name].extend(fn())
    return out


def _macs_per_turn(shape: IncumbentShape) -> int:
    """Multiply-adds of the incumbent's network per turn (extractor and both heads)."""
    widths, macs = (shape.obs_dim, *shape.extractor), 0
    macs += sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    head = (shape.extractor[-1], *shape.heads)
    return macs + 2 * sum(a * b for a, b in zip(head[:-1], head[1:])) + shape.heads[-1] * 2


def ppo_comparison(shape: IncumbentShape = IncumbentShape(), work: SB3PPOWork = SB3PPOWork(), models=OURS,
                   updates: int = 2, rounds: int = 3, min_seconds: float = 1.0) -> dict:
    """Env steps/s of the incumbent's ``PPO.learn`` (``updates`` rollouts + updates per round, after one untimed
    update) against our jitted PPO update for each of ``models``, at our defaults and at SB3's work (``work``),
    alternated in rounds. Ours: `random_ppo_batch`, the update the benchmarks' train part times."""
    from salesrl_jax.bench.timing import compile_and_time

    cached = _Cached(shape, max(work.n_steps, 4096))
    incumbent = make_incumbent(shape, cached, work)
    incumbent.learn(total_timesteps=work.n_steps)  # builds the buffers; first torch calls

    def run_incumbent():
        start = time.perf_counter()
        incumbent.learn(total_timesteps=updates * work.n_steps, reset_num_timesteps=False)
        return [updates * work.n_steps / (time.perf_counter() - start)]

    ppo = PPOConfig()
    ours, compile_s = {}, {}
    for model in models:
        config = TrainConfig(model=MODELS[model])
        graphdef, params = create_agent(config.model, shape.embedding_dim, 0)
        for work_name, rows, minibatches, epochs in (
                ("our_work", ppo.rows_per_minibatch, ppo.minibatches, ppo.epochs),
                ("sb3_work", work.batch_size, work.n_steps // work.batch_size, work.n_epochs)):
            optimizer = adam_linear(ppo.learning_rate, 1000, ppo.max_grad_norm)
            update = make_ppo_update(graphdef, optimizer, epochs=epochs, reward_kind=ppo.reward)
            batch = random_ppo_batch(shape.embedding_dim, rows, minibatches, config.model.ensemble_size)
            args = (init_state(params, optimizer, 0), batch, Hyperparams.ppo(config))
            name = f"{model}_{work_name}"
            compile_s[name], _ = compile_and_time(update, *args, min_seconds=0.0)
            ours[name] = (update, args, float(batch.inputs.valid.sum()))

    def run_ours(name):
        update, args, steps = ours[name]
        _, times = compile_and_time(update, *args, min_seconds=min_seconds)
        return [steps / t for t in times]

    samples = _rounds({"incumbent": run_incumbent, **{name: (lambda n=name: run_ours(n)) for name in ours}}, rounds)
    result = {"sb3_work": dataclasses.asdict(work), "our_work": {
        "rows_per_minibatch": ppo.rows_per_minibatch, "minibatches": ppo.minibatches, "epochs": ppo.epochs},
        "env_steps_per_s": {name: float(np.median(values)) for name, values in samples.items()},
        "compile_s": compile_s}
    result["over_incumbent"] = {name: result["env_steps_per_s"][name] / result["env_steps_per_s"]["incumbent"]
                                for name in ours}
    return result


def streaming_comparison(shape: IncumbentShape = IncumbentShape(), models=OURS, turns: int = 1000,
                         rounds: int = 3) -> dict:
    """Per-turn latency, one turn per call with the history carried: the incumbent's ``model.predict`` (history
    update in numpy included) and its bare torch forward, against our `Scorer` for each of ``models``, without
    and with confidence."""
    import torch

    cached = _Cached(shape, turns)
    incumbent = make_incumbent(shape, cached, SB3PPOWork())
    policy = incumbent.policy.eval()

    def incumbent_turns(bare: bool):
        seconds, history = np.empty(turns), None
        for i in range(turns):
            start = time.perf_counter()
            history, obs = observe(history, cached.embeddings[i], cached.features[i],
                                   i % TURNS_PER_CONVERSATION == 0, shape.history_decay)
            if bare:
                with torch.inference_mode():
                    policy.get_distribution(torch.as_tensor(obs)[None]).mode()
            else:
                incumbent.predict(obs, deterministic=True)
            seconds[i] = time.perf_counter() - start
        return list(seconds)

    scorers = {f"{model}{'_with_confidence' if confidence else ''}":
               Scorer(_ours(shape, model, confidence), HashingEmbedder(shape.embedding_dim))
               for model in models for confidence in (False, True)}
    inputs = random_inputs(turns, shape.embedding_dim)
    incumbent_turns(False)  # first torch calls
    samples = _rounds({"incumbent_predict": lambda: incumbent_turns(False),
                       "incumbent_torch_forward": lambda: incumbent_turns(True),
                       **{name: (lambda s=s: list(time_embedded(s, inputs))) for name, s in scorers.items()}}, rounds)
    result = {"p50_ms": {}, "p99_ms": {}, "turns_per_s": {}}
    for name, values in samples.items():
        values = np.asarray(values)
        result["p50_ms"][name] = float(np.percentile(values, 50) * 1e3)
        result["p99_ms"][name] = float(np.percentile(values, 99) * 1e3)
        result["turns_per_s"][name] = float(len(values) / values.sum())
    result["p50_speedup"] = {name: result["p50_ms"]["incumbent_predict"] / result["p50_ms"][name]
                             for name in scorers}
    return result


def batch_comparison(shape: IncumbentShape = IncumbentShape(), models=OURS, batch: int = 1024, rounds: int = 5,
                     min_seconds: float = 0.5) -> dict:
    """Turns/s at ``batch`` turns per call: the incumbent's ``model.predict`` on a batch of observations against
    our jitted prediction for each of ``models``, float32 and int8, alternated in rounds."""
    from salesrl_jax.bench.timing import compile_and_time, interleaved_times, program_flops

    cached = _Cached(shape, batch)
    incumbent = make_incumbent(shape, cached, SB3PPOWork())
    incumbent.policy.eval()
    observations = cached.observations

    def run_incumbent():
        _, times = compile_and_time(lambda: incumbent.predict(observations, deterministic=True),
                                    min_seconds=min_seconds)
        return list(batch / times)

    inputs = random_inputs(batch, shape.embedding_dim)
    programs, macs = {}, {"incumbent": _macs_per_turn(shape)}
    for model_name in models:
        model = _ours(shape, model_name)
        q_graphdef, q_params = bench_int8(model, shape.embedding_dim)
        programs[f"{model_name}_float32"] = (make_predict(model.graphdef), (model.params, inputs))
        programs[f"{model_name}_int8"] = (make_predict(q_graphdef), (q_params, inputs))
        flops = program_flops(jax.jit(programs[f"{model_name}_float32"][0]), model.params, inputs)
        macs[model_name] = int(flops / 2 / batch) if flops else None

    samples = {"incumbent": [], **{name: [] for name in programs}}
    for _ in range(rounds):
        samples["incumbent"].extend(run_incumbent())
        _, times = interleaved_times(programs, min_seconds=min_seconds)
        for name, values in times.items():
            samples[name].extend(batch / values)
    result = {"batch": batch, "macs_per_turn": macs,
              "turns_per_s": {name: float(np.median(values)) for name, values in samples.items()}}
    result["over_incumbent"] = {name: result["turns_per_s"][name] / result["turns_per_s"]["incumbent"]
                                for name in programs}
    return result


def require_incumbent_extra() -> None:
    """A clear error (not an import traceback) where the incumbent's packages are missing."""
    import importlib.util

    missing = [name for name in ("torch", "stable_baselines3", "gymnasium") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"the incumbent benchmark needs {', '.join(missing)}: pip install 'salesrl-jax[incumbent]' "
                         "(on a CPU machine, the CPU build of torch first: pip install torch==2.13.0 --index-url "
                         "https://download.pytorch.org/whl/cpu)")


def incumbent_comparison(shape: IncumbentShape = IncumbentShape(), min_seconds: float = 1.0) -> dict:
    """All three comparisons, with the torch and JAX versions and thread counts they ran with."""
    require_incumbent_extra()
    import stable_baselines3
    import torch

    return {"shape": dataclasses.asdict(shape), "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(), "stable_baselines3_version": stable_baselines3.__version__,
            "ppo": ppo_comparison(shape, min_seconds=min_seconds), "stream": streaming_comparison(shape),
            "batch": batch_comparison(shape, min_seconds=min_seconds / 2)}

"""Shared fixtures: a tiny synthetic archive embedded into cached arrays, and tiny configs."""

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import pytest

from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.run.config import DataConfig, PPOConfig, PretrainConfig, TrainConfig

TINY_DIM = 32
FIXTURES = Path(__file__).parent / "fixtures"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """Import ``scripts/NAME.py`` as a module (scripts are not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module

# Tests build many small training runs whose programs are identical: a persistent compilation
# cache (shared with the subprocesses the tests start) compiles each program once per session.
_COMPILE_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                                       os.path.join(tempfile.gettempdir(), f"salesrl-jax-test-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    from salesrl_jax.sim.config import SimulatorConfig
    from salesrl_jax.sim.generate import generate

    out = tmp_path_factory.mktemp("tiny") / "synthetic"
    generate(SimulatorConfig(num_conversations=600, seed=11), out, fmt="parquet", workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_arrays(tiny_archive, tmp_path_factory) -> Path:
    from salesrl_jax.arrays.build import embed_archive

    out = tmp_path_factory.mktemp("tiny-arrays") / "arrays"
    embed_archive(tiny_archive, out, EmbedderConfig(dim=TINY_DIM), chunk_conversations=300, workers=1)
    return out


def scored_turns(result) -> list[dict]:
    """The per-turn rows a `score_archive` run wrote (JSON lines)."""
    return [json.loads(line) for line in result.outputs["turns"].read_text().splitlines()]


def tiny_model(**overrides) -> ModelConfig:
    base = dict(turn_dim=16, state_dim=16, hidden_dim=32, head_hidden=8, ensemble_size=3)
    return ModelConfig(**{**base, **overrides})


def tiny_config(arrays: Path, **overrides) -> TrainConfig:
    config = TrainConfig(
        name="tiny", seed=0, embedder=EmbedderConfig(kind="hashing", dim=TINY_DIM),
        data=DataConfig(train=arrays, valid_fraction=0.2),
        model=tiny_model(),
        pretrain=PretrainConfig(epochs=6, rows_per_minibatch=128, chunk_minibatches=8, learning_rate=3e-3),
        ppo=PPOConfig(updates=4, rows_per_minibatch=256, epochs=2, minibatches=2, learning_rate=1e-4),
        checkpoint_every=100, eval_rows_per_minibatch=512, regime="large",
        checkpoint_seconds=0.0,  # the latest at every validation: the resume tests kill runs between them
        recalibration_level=1.0,  # the tiny runs recalibrate whatever their split shows: the tests read that path
    )
    return dataclasses.replace(config, **overrides)


@pytest.fixture(scope="session")
def tiny_trained(tiny_arrays, tmp_path_factory) -> Path:
    """A tiny model trained on the tiny arrays (supervised, then a few PPO updates)."""
    from salesrl_jax.train.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("tiny-model") / "run"
    train_and_evaluate(tiny_config(tiny_arrays), workdir, progress=False)
    return workdir


NGRAM_BUCKETS, NGRAM_MAX_GRAMS = 4096, 128
NGRAMS = EmbedderConfig(kind="ngrams", dim=NGRAM_BUCKETS, max_grams=NGRAM_MAX_GRAMS)


@pytest.fixture(scope="session")
def ngram_arrays(tiny_archive, tmp_path_factory) -> Path:
    """The tiny archive as sparse n-gram arrays (`salesrl_jax.embed.ngrams`)."""
    from salesrl_jax.arrays.build import embed_archive

    out = tmp_path_factory.mktemp("ngram-arrays") / "arrays"
    embed_archive(tiny_archive, out, NGRAMS, chunk_conversations=300, workers=1)
    return out


@pytest.fixture(scope="session")
def ngram_trained(ngram_arrays, tmp_path_factory) -> Path:
    """An n-gram model with the wide term, pretrained then two PPO updates (neither may move the idf)."""
    from salesrl_jax.train.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("ngram-model") / "run"
    config = tiny_config(ngram_arrays, embedder=NGRAMS,
                         ppo=PPOConfig(updates=2, rows_per_minibatch=256, epochs=1, minibatches=2))
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=2, input_dropout=0.3))
    train_and_evaluate(config, workdir, progress=False)
    return workdir


def predict_in_blocks(agent, inputs, block: int):
    """`SalesAgent.predict_block` over consecutive blocks of ``block`` rows, the carry passed along; the outputs
    concatenated (the ensemble's on its last axis)."""
    import jax
    import jax.numpy as jnp

    step = jax.jit(agent.predict_block)
    carry, outs = agent.encoder.init_carry(), []
    for start in range(0, inputs.starts.shape[0], block):
        out, carry = step(jax.tree.map(lambda x: x[start:start + block], inputs), carry)
        outs.append(out)
    return jax.tree.map(lambda *x: jnp.concatenate(x, axis=-1), *outs)

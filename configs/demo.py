"""The quickstart's small, fast run (what `salesrl demo` trains): the default model, fewer epochs and PPO
updates, smaller minibatches; about a minute on 2 cores. Its regime is pinned to large so that the demo
shows both phases (supervised, then PPO) on its 2,000 conversations."""

from salesrl_jax.configs.default import get_config as default_config

from salesrl_jax.run.config import with_overrides


def get_config():
    return with_overrides(default_config(), {
        "name": "demo", "regime": "large",
        "pretrain.epochs": 3, "pretrain.rows_per_minibatch": 1024, "pretrain.chunk_minibatches": 8,
        "ppo.updates": 8, "ppo.rows_per_minibatch": 1024,
    })

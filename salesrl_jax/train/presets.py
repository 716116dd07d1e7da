"""Named starting points used by the command line (configs/ holds the file versions)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from salesrl_jax.train.config import DataConfig, TrainConfig


def demo(train: Path = Path("runs/demo/arrays")) -> TrainConfig:
    """The quickstart's run: the default model, fewer epochs and PPO updates (a minute on 2 cores)."""
    base = TrainConfig()
    return dataclasses.replace(
        base, name="demo", data=DataConfig(train=train),
        pretrain=dataclasses.replace(base.pretrain, epochs=3, rows_per_minibatch=1024, chunk_minibatches=8),
        ppo=dataclasses.replace(base.ppo, updates=8, rows_per_minibatch=1024),
    )

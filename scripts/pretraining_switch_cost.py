"""What a static switch of the pretraining program costs in training: the default model's pretraining chunk (4
minibatches of the default 2,048 rows, random inputs, as `salesrl bench --parts train` times it) compiled with
and without the switch (the default config's other switches as they are), the two alternated ``repeats`` times in
one process, at each embedding width; prints turns/s and the ratio.

    python scripts/pretraining_switch_cost.py --switch text-dropout --repeats 3   # pretrain.text_dropout
    python scripts/pretraining_switch_cost.py --switch average --repeats 3        # pretrain.ema_decay (the average)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from salesrl_jax import help_text
from salesrl_jax.bench.timing import compile_and_time
from salesrl_jax.bench.training import random_supervised_batches
from salesrl_jax.models.agent import create_agent
from salesrl_jax.run.config import TrainConfig
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.state import adamw_schedule, init_state
from salesrl_jax.train.supervised import make_train_chunk

SWITCHES = {"text-dropout": "text_dropout", "average": "average"}  # the flag -> make_train_chunk's argument


@dataclasses.dataclass(frozen=True)
class Config:
    switch: Literal["text-dropout", "average"] = "text-dropout"
    """text-dropout: whole conversations read without their text; average: the parameters' running average."""
    repeats: int = 3
    """Alternations of the two programs per width."""
    dims: tuple[int, ...] = (512, 3072)
    """Embedding widths (512: the offline embedder; 3072: text-embedding-3-large)."""
    min_seconds: float = 2.0
    """Steady-state timing per measurement."""


def main(config: Config) -> None:
    train = TrainConfig()
    pre = train.pretrain
    minibatches = 4
    default = {"text_dropout": pre.text_dropout > 0, "average": pre.ema_decay > 0}
    for dim in config.dims:
        graphdef, params = create_agent(train.model, dim, 0)
        optimizer = adamw_schedule(pre.learning_rate, 1000, pre.weight_decay, pre.max_grad_norm)
        batches = random_supervised_batches(dim, pre.rows_per_minibatch, minibatches, train.model.ensemble_size)
        hp = Hyperparams.pretrain(train)
        switches = {on: {**default, SWITCHES[config.switch]: on} for on in (False, True)}
        chunks = {on: make_train_chunk(graphdef, optimizer, **switches[on]) for on in (False, True)}
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(config.repeats):
            for on, chunk in chunks.items():
                state = init_state(params, optimizer, 0, average=switches[on]["average"])
                _, times = compile_and_time(chunk, state, batches, hp, min_seconds=config.min_seconds)
                rates[on].append(minibatches * pre.rows_per_minibatch / float(np.median(times)))
        print(f"{dim}-d pretraining turns/s, {config.switch}: without {[round(r) for r in rates[False]]}, "
              f"with {[round(r) for r in rates[True]]}; ratio {np.median(rates[True]) / np.median(rates[False]):.3f}")


if __name__ == "__main__":
    main(help_text.cli(Config))

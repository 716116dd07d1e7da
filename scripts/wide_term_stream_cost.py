"""Streaming cost of the n-gram path's wide term: p50 per turn with `model.wide_text` on and off, alternated in one
run (hashing, features and the embedding bag included in each call, as `salesrl bench --parts stream` times them).

    python scripts/wide_term_stream_cost.py --repeats 3
"""

from __future__ import annotations

import dataclasses

import numpy as np

from salesrl_jax import help_text
from salesrl_jax.bench import inference
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.embed.ngrams import NGRAM_BUCKETS, NgramHasher
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.run.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config:
    repeats: int = 3
    """Alternations of the two models (each times every turn once)."""
    turns: int = 3000
    """Simulator turns timed per model and repeat."""


def main(config: Config) -> None:
    base = dataclasses.replace(TrainConfig(), embedder=EmbedderConfig(kind="ngrams", dim=NGRAM_BUCKETS))
    scorers = {wide: Scorer(inference.bench_model(NGRAM_BUCKETS, dataclasses.replace(
        base, model=dataclasses.replace(base.model, wide_text=wide))), NgramHasher(NGRAM_BUCKETS))
        for wide in (True, False)}
    turns = inference._sample_turns(config.turns)
    p50: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(config.repeats):
        for wide, scorer in scorers.items():
            p50[wide].append(inference._time_sessions(scorer, turns)["p50_ms"])
    print(f"p50 ms with the wide term {np.round(p50[True], 3).tolist()}, without {np.round(p50[False], 3).tolist()}; "
          f"ratio of medians {np.median(p50[True]) / np.median(p50[False]):.3f}")


if __name__ == "__main__":
    main(help_text.cli(Config))

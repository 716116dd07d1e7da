"""Offline embedder and turn-feature throughput on simulated turns (one process, one core).

Usage: python scripts/bench_embed.py [--conversations 5000]
"""

import argparse
import random
import time

import numpy as np

from salesrl_jax.embed import HashingEmbedder
from salesrl_jax.features import conversation_features
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import calibrate_outcome_bias, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=5000)
    args = parser.parse_args()
    config = SimulatorConfig()
    convs = list(simulate(config, calibrate_outcome_bias(config), np.random.default_rng(0), random.Random(0), 0,
                          args.conversations))
    texts = [t.text for c in convs for t in c.turns]
    print(f"{len(texts):,} turns from {len(convs):,} simulated conversations")
    for dim in (512, 3072):
        embedder = HashingEmbedder(dim)
        embedder.embed(texts[:256])
        start = time.perf_counter()
        for i in range(0, len(texts), 4096):
            embedder.embed(texts[i:i + 4096])
        seconds = time.perf_counter() - start
        print(f"hashing embedder dim {dim:>5}: {len(texts) / seconds:>9,.0f} turns/s")
    start = time.perf_counter()
    for conv in convs:
        conversation_features(conv.turns)
    seconds = time.perf_counter() - start
    print(f"turn features            : {len(texts) / seconds:>9,.0f} turns/s")


if __name__ == "__main__":
    main()

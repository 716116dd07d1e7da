"""Offline embedder, turn-feature and embedding-cache throughput, and cached-array bytes per 1M turns.

Throughputs are one process (one core). The on-disk sizes come from real `salesrl embed` builds of
the same conversations at each dimension and dtype, scaled to one million turns.

Usage: python scripts/bench_embed.py [--conversations 5000]
"""

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from salesrl_jax.arrays.build import embed_archive
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed import CachedEmbedder, EmbeddingCache, HashingEmbedder
from salesrl_jax.embed.config import EmbedderConfig
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

    with tempfile.TemporaryDirectory() as tmp:
        for dim in (512, 3072):
            cached = CachedEmbedder(HashingEmbedder(dim), EmbeddingCache(Path(tmp) / f"cache{dim}.sqlite"))
            start = time.perf_counter()
            for i in range(0, len(texts), 4096):
                cached.embed(texts[i:i + 4096])
            cold = time.perf_counter() - start
            cached.stats.hits = cached.stats.misses = 0
            start = time.perf_counter()
            for i in range(0, len(texts), 4096):
                cached.embed(texts[i:i + 4096])
            warm = time.perf_counter() - start
            print(f"cache dim {dim:>5}: cold (embed + store) {len(texts) / cold:>9,.0f} turns/s, "
                  f"hit path {len(texts) / warm:>9,.0f} turns/s ({cached.stats})")

        archive = Path(tmp) / "archive.jsonl"
        write_conversations(archive, convs)
        print("cached arrays on disk, per 1M turns:")
        for dim in (256, 512, 1536, 3072):
            for dtype in ("float16", "float32"):
                out = Path(tmp) / f"arrays-{dim}-{dtype}"
                result = embed_archive(archive, out, EmbedderConfig(dim=dim), dtype=dtype, workers=1)
                size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix in (".npy", ".json"))
                print(f"  dim {dim:>5} {dtype}: {size / result.arrays.num_turns * 1e6 / 2**30:6.2f} GiB")


if __name__ == "__main__":
    main()

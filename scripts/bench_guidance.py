"""Throughput of the guidance environment and of PPO in it (docs/benchmarks.md, "Guidance"): the same as
``salesrl bench --parts guidance``, printed as JSON.

    python scripts/bench_guidance.py
"""
import json

from salesrl_jax.bench.guidance import guidance_throughput

if __name__ == "__main__":
    print(json.dumps(guidance_throughput(), indent=1))

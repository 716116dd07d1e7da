"""Throughput of the guidance environment and of PPO in it (docs/benchmarks.md, "Guidance"): the same as
``salesrl bench --parts guidance``, printed as JSON.

    python scripts/bench_guidance.py [--num-envs 512 4096] [--ppo-steps 1000000]
"""
import dataclasses
import json

from salesrl_jax import help_text
from salesrl_jax.bench.guidance import guidance_throughput


@dataclasses.dataclass(frozen=True)
class Config:
    num_envs: tuple[int, ...] = (512, 4096)
    """Batch sizes at which the environment's steps per second are measured."""
    ppo_steps: int = 1_000_000
    """Environment steps of each timed PPO run."""
    view_model: bool = True
    """Also time PPO reading the conversion model's encoder state, and the model's streaming view."""


if __name__ == "__main__":
    config = help_text.cli(Config)
    print(json.dumps(guidance_throughput(num_envs=config.num_envs, ppo_steps=config.ppo_steps,
                                         view_model=config.view_model), indent=1))

"""The default guidance run: PPO on the dialogue-act view, three seeds vmapped, 2M exchanges each, no time cost.

    salesrl guidance train --config configs/guidance/default.py --workdir runs/guidance
"""

from salesrl_jax.guidance.config import GuidanceConfig


def get_config() -> GuidanceConfig:
    return GuidanceConfig(name="default", seeds=(0, 1, 2))

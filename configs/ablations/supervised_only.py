"""Ablation: supervised pretraining only, no PPO."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="supervised_only",
        ppo=dataclasses.replace(config.ppo, enabled=False),
    )

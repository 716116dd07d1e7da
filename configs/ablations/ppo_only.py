"""Ablation: PPO from scratch, no supervised pretraining (the encoder learns from the reward alone)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="ppo_only",
        pretrain=dataclasses.replace(config.pretrain, enabled=False),
        ppo=dataclasses.replace(config.ppo, updates=400),
    )

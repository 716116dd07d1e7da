"""Ablation: PPO with the log-score reward instead of the Brier-based one."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="log_reward",
        ppo=dataclasses.replace(config.ppo, reward="log"),
    )

"""Ablation: no customer-engagement features."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_engagement",
        model=dataclasses.replace(config.model, use_engagement=False),
    )

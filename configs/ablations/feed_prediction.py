"""Ablation: the previous prediction feeds into the state."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="feed_prediction",
        model=dataclasses.replace(config.model, feed_prediction=True),
    )

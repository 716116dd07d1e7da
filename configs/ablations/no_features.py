"""Ablation: no turn features (speaking time, questions, sentiment, cues)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_features",
        model=dataclasses.replace(config.model, use_features=False),
    )

"""Ablation: text embeddings only: no turn, engagement, position or speaker features."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="text_only",
        model=dataclasses.replace(config.model, use_features=False, use_engagement=False, use_position=False),
    )

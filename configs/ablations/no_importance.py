"""Ablation: recency-weighted history without the learned importance scores."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_importance",
        model=dataclasses.replace(config.model, learned_importance=False),
    )

"""Ablation: the state sees only the current turn (no history pools)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_history",
        model=dataclasses.replace(config.model, history="none"),
    )

"""Ablation: history as a plain running mean (no recency weighting, no learned importance)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="mean_history",
        model=dataclasses.replace(config.model, history="mean"),
    )

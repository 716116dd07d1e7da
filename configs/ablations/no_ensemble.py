"""Ablation: no ensemble heads (no uncertainty signal)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_ensemble",
        model=dataclasses.replace(config.model, ensemble_size=0),
    )

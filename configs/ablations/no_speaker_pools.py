"""Ablation: one history pool over all turns (no separate customer pool)."""

import dataclasses

from configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(
        config, name="no_speaker_pools",
        model=dataclasses.replace(config.model, speaker_pools=False),
    )

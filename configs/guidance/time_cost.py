"""Shorter calls asked for: the default run with a cost of 0.01 sales per exchange (a call of ten exchanges must
win 0.1 more conversion than ending at once to be worth it).

    salesrl guidance train --config configs/guidance/time_cost.py --workdir runs/guidance-time-cost
"""

import dataclasses

from salesrl_jax.configs.guidance.default import get_config as default_config


def get_config():
    return dataclasses.replace(default_config(), name="time_cost", time_cost=0.01)

"""Ablations of the default run: each file here names the dotted fields it changes, nothing else.

    salesrl train --config configs/ablations/no_history.py --data.train ARRAYS --workdir runs/no-history

A new ablation is a file of three lines (see any of them); its name is the file's name.
"""

from __future__ import annotations

from typing import Any, Callable

from salesrl_jax.configs.default import get_config as default_config

from salesrl_jax.run.config import TrainConfig, with_overrides


def ablation(module: str, overrides: dict[str, Any]) -> Callable[[], TrainConfig]:
    """``get_config`` of an ablation: the default config named after ``module``, with ``overrides``."""
    name = module.rsplit(".", 1)[-1].removeprefix("_salesrl_config_")  # also when loaded by path
    return lambda: with_overrides(default_config(), {"name": name, **overrides})

"""Guidance on the conversion model's encoder state (observation view "model"): the policy reads exactly what a
`Scorer` session holds, so it can guide live conversations (`salesrl score --guidance`, `Scorer.load(...,
guidance=...)`). Three seeds vmapped, 4M exchanges each (the state is harder to learn from than the acts: the
curve still rises at 2M), no time cost, and more entropy: at 0.01 one seed in three collapsed to short calls
(0.44 against 0.50 conversion after 2M steps; 0.03 kept every seed tried at 0.50).

    salesrl demo                                   # or any `salesrl train` run on synthetic conversations
    salesrl guidance train --config configs/guidance/model_view.py --model runs/demo/model --workdir runs/guidance-model
"""

import dataclasses

from salesrl_jax.configs.guidance.default import get_config as default_config

from salesrl_jax.guidance.config import GuidanceConfig


def get_config() -> GuidanceConfig:
    return dataclasses.replace(default_config(), name="model_view", observation="model", model="runs/demo/model",
                               total_steps=4_000_000, entropy_coef=0.03)

"""The default run: supervised pretraining then PPO, on the offline 512-d embeddings.

Every field is documented in ``salesrl train --help``; this file only names the starting point.
Variants import it and override a few fields (see ablations/).
"""

from salesrl_jax.run.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(name="default")

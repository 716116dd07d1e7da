"""The n-gram bag started from the training text's LSA basis and kept there (model.bag_basis lsa, model.bag_trainable
false; salesrl_jax.train.bag_basis): no gradient or optimizer state for its 2^18 x 16 entries, so pretraining runs
3.3x faster. Measured on the real development sets over three fold assignments (docs/benchmarks.md, session 36):
CaSiNo level at every turn, PersuasionForGood 0.010-0.012 AUC lower at turns 2-3 and within 0.003 from turn 4 on.
For faster runs (long calls, many folds); the default keeps the trained bag.

    salesrl crossval --data ARCHIVE --out DIR --config configs/lsa_bag.py
"""

import dataclasses

from salesrl_jax.configs.default import get_config as default_config


def get_config():
    config = default_config()
    return dataclasses.replace(config, name="lsa_bag",
                               model=dataclasses.replace(config.model, bag_basis="lsa", bag_trainable=False))

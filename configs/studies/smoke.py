"""A smoke study: a structural, a numeric and an int8 variant beside the full model, and a learning-rate sweep (its
setting chosen by validation loss); two seeds, tiny synthetic data; about a minute. The full model, the
learning-rate variant and the sweep's new setting (six runs) train in one compiled program; the sweep's 1e-2
setting is the lr_1e-2 variant's config, so it shares those runs."""

from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.run.study import Data, Study, Sweep, Synthetic, Variant

TINY = {"model.turn_dim": 16, "model.state_dim": 16, "model.hidden_dim": 32, "model.head_hidden": 8,
        "model.ensemble_size": 2, "regime": "large", "ppo.enabled": False, "pretrain.epochs": 2,
        "pretrain.rows_per_minibatch": 256, "pretrain.chunk_minibatches": 4, "data.valid_fraction": 0.2,
        "eval_rows_per_minibatch": 512}


def get_study() -> Study:
    return Study(
        name="smoke",
        variants=(Variant("full"),
                  Variant("no_history", config="configs/ablations/no_history.py"),
                  Variant("lr_1e-2", overrides={"pretrain.learning_rate": 1e-2}),
                  Variant("int8", quantized=True)),  # the full model's runs, evaluated in int8
        sweeps=(Sweep("lr_sweep", grid={"pretrain.learning_rate": (3e-4, 1e-2)}),),
        train=Data(synthetic=Synthetic(400, seed=21)),
        tests={"synthetic": Data(synthetic=Synthetic(200, seed=22))},
        seeds=(0, 1),
        overrides=TINY,
        baselines=("majority",),
        embedder=EmbedderConfig(dim=32),
        tensorboard=True,
    )

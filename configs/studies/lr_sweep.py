"""A sweep of the pretraining learning rate and the ensemble heads' loss weight around the default model, three
seeds, on the table3 study's data (20k synthetic training and 5k test conversations).

The 3 x 2 settings x 3 seeds (18 runs) share one structure, so they train in two compiled programs (16 + 2 runs,
`Study.max_together`), vmapped over settings and seeds. The row `lr_sweep` is the setting with the lowest mean
validation log loss over seeds (the inner validation split; the test set never chooses); table.md lists every
setting's validation loss beside it, and the default model's row is the comparison.

    salesrl study configs/studies/lr_sweep.py --workdir runs/lr_sweep
"""

from salesrl_jax.run.study import Data, Study, Sweep, Synthetic, Variant


def get_study() -> Study:
    return Study(
        name="lr_sweep",
        variants=(Variant("default"),),
        sweeps=(Sweep("lr_sweep", grid={"pretrain.learning_rate": (1e-3, 2e-3, 4e-3),
                                        "pretrain.ensemble_weight": (0.5, 1.0)}),),
        train=Data(synthetic=Synthetic(20_000, seed=0)),
        tests={"synthetic": Data(synthetic=Synthetic(5_000, seed=1))},
        seeds=(0, 1, 2),
    )

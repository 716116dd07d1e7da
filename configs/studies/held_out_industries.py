"""Which parts of the model carry over to industries it never saw? Trained on 12 industries whose buyers each answer
the rep in their own way (`industry_dynamics` 1.0: docs/benchmarks.md, session 25), tested on 5,000 conversations of
the same 12 industries and 5,000 of three held-out ones; the full model, the features-only model and the text-only
model, three seeds, with the baseline rows. The gap between the two test sets, per row, is what a new industry costs.

    salesrl study configs/studies/held_out_industries.py --workdir runs/held_out_industries
"""

from salesrl_jax.run.study import Data, Study, Synthetic, Variant

HELD_OUT = ("travel", "solar_energy", "medical_devices")
DYNAMICS = 1.0


def get_study() -> Study:
    ablation = "configs/ablations/{}.py".format
    return Study(
        name="held_out_industries",
        variants=(
            Variant("full"),
            Variant("features_only", config=ablation("no_text")),
            Variant("text_only", config=ablation("text_only")),
        ),
        train=Data(synthetic=Synthetic(20_000, seed=0, exclude_industries=HELD_OUT, industry_dynamics=DYNAMICS)),
        tests={"same_industries": Data(synthetic=Synthetic(5_000, seed=1, exclude_industries=HELD_OUT,
                                                           industry_dynamics=DYNAMICS)),
               "held_out_industries": Data(synthetic=Synthetic(5_000, seed=2, industries=HELD_OUT,
                                                               industry_dynamics=DYNAMICS))},
        seeds=(0, 1, 2),
    )

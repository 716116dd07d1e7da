"""The structure of the paper's Table III on our data: the full model and each component removed, three seeds.

Paper rows (accuracies as reported): full .967 (AUC .98); minus embeddings .89; minus sequential modeling .86;
minus meta-learning .94; minus orchestration .92; minus caching .95; basic ML .68. Orchestration and caching
change speed, not predictions, so they have no row here; "minus embeddings" is the features-only model
(`model.use_text = False`). Basic ML is the baseline rows (majority class, TF-IDF logistic regressions,
gradient-boosted trees on the turn features).

    salesrl study configs/studies/table3.py --workdir runs/table3
"""

from salesrl_jax.run.study import Data, Study, Synthetic, Variant


def get_study() -> Study:
    ablation = "configs/ablations/{}.py".format
    return Study(
        name="table3",
        variants=(
            Variant("full"),
            Variant("minus_embeddings", config=ablation("no_text")),
            Variant("minus_sequential", config=ablation("no_history")),
            Variant("minus_meta_learning", config=ablation("no_ensemble")),
            Variant("supervised_only", config=ablation("supervised_only")),
            Variant("ppo_only", config=ablation("ppo_only")),
            Variant("int8_inference", quantized=True),
            # Our own rows.
            Variant("mean_pooling", config=ablation("mean_history")),
            Variant("no_learned_importance", config=ablation("no_importance")),
            Variant("text_only", config=ablation("text_only")),
        ),
        train=Data(synthetic=Synthetic(20_000, seed=0)),
        tests={"synthetic": Data(synthetic=Synthetic(5_000, seed=1))},
        seeds=(0, 1, 2),
    )

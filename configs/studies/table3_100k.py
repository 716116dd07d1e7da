"""Table III at the issue's benchmark scale: `table3`'s variants and seeds on 100,000 training and 20,000 test
synthetic conversations (the 100k/20k benchmark of docs/benchmarks.md).

    salesrl study configs/studies/table3_100k.py --workdir runs/table3-100k
"""

import dataclasses

from salesrl_jax.configs.studies.table3 import get_study as table3

from salesrl_jax.run.study import Data, Study, Synthetic


def get_study() -> Study:
    return dataclasses.replace(table3(), name="table3_100k", train=Data(synthetic=Synthetic(100_000, seed=0)),
                               tests={"synthetic": Data(synthetic=Synthetic(20_000, seed=1))})

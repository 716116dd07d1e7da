"""Seeds trained together against one after another: wall time of `train_seeds_and_evaluate` (3 seeds in one
program) and of `train_and_evaluate` three times, on the arrays of 3,000 synthetic conversations (docs/benchmarks.md,
"Seeds trained together"). Usage: python scripts/bench_seed_group.py [ARRAYS] [OUT]."""
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from salesrl_jax.run.config import DataConfig, PPOConfig, PretrainConfig, TrainConfig
from salesrl_jax.train.loop import train_and_evaluate, train_seeds_and_evaluate


def main() -> None:
    arrays = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/rb/arr")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/tmp/sg/runs")
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=DataConfig(train=arrays), pretrain=PretrainConfig(epochs=2),
                         ppo=PPOConfig(updates=8), regime="large", checkpoint_every=1000)
    seeds = [0, 1, 2]
    t = time.perf_counter()
    together = train_seeds_and_evaluate(config, seeds, [out / f"g{s}" for s in seeds], progress=False)
    t_together = time.perf_counter() - t
    t = time.perf_counter()
    alone = [train_and_evaluate(dataclasses.replace(config, seed=s), out / f"a{s}", progress=False) for s in seeds]
    t_alone = time.perf_counter() - t
    print(json.dumps({"together_s": t_together, "alone_s": t_alone, "ratio": t_alone / t_together,
                      "together_tp": together[0].throughput, "alone_tp": alone[0].throughput,
                      "log_loss": [[g.valid["log_loss"], a.valid["log_loss"]] for g, a in zip(together, alone)]}, indent=1))


if __name__ == "__main__":
    main()

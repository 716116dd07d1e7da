"""Runs trained together against one after another (docs/benchmarks.md, "Seeds trained together").

On the arrays of 3,000 synthetic conversations (default model, 512-d; 2 pretraining epochs and 8 PPO updates), in
one process: 8 seeds trained one at a time with `train_and_evaluate` (N sequential runs cost the sum of the first
N), then N = 1, 3, 8 seeds in one program with `train_seeds_and_evaluate`; and a learning-rate sweep of 3
settings (one seed) in one program with `train_together` against the same 3 configs one at a time.

    python scripts/bench_seed_group.py --arrays ARRAYS --out OUT
"""
import dataclasses
import json
import shutil
import time
from pathlib import Path

from salesrl_jax import help_text
from salesrl_jax.run.config import DataConfig, PPOConfig, PretrainConfig, TrainConfig, with_overrides
from salesrl_jax.train.loop import train_and_evaluate, train_seeds_and_evaluate, train_together

SEEDS = (1, 3, 8)
LEARNING_RATES = (1e-3, 2e-3, 4e-3)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class Config:
    arrays: Path = Path("/tmp/rb/arr")
    """Cached arrays to train on (`salesrl embed` of 3,000 synthetic conversations in docs/benchmarks.md)."""
    out: Path = Path("/tmp/sg/runs")
    """Where the runs go; removed first."""


def main(config: Config) -> None:
    arrays, out = config.arrays, config.out
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=DataConfig(train=arrays), pretrain=PretrainConfig(epochs=2),
                         ppo=PPOConfig(updates=8), regime="large", checkpoint_every=1000)
    alone = [timed(lambda s=s: train_and_evaluate(dataclasses.replace(config, seed=s), out / f"alone-{s}",
                                                  progress=False)) for s in range(max(SEEDS))]
    rows = []
    for n in SEEDS:
        together, seconds = timed(lambda n=n: train_seeds_and_evaluate(
            config, list(range(n)), [out / f"together{n}-{s}" for s in range(n)], progress=False))
        sequential = sum(t for _, t in alone[:n])
        rows.append({"runs": n, "kind": "seeds", "together_s": seconds, "sequential_s": sequential,
                     "per_run_together_s": seconds / n, "per_run_sequential_s": sequential / n,
                     "speedup": sequential / seconds,
                     "valid_log_loss_together": [r.valid["log_loss"] for r in together],
                     "valid_log_loss_alone": [r.valid["log_loss"] for r, _ in alone[:n]]})
    sweep = [with_overrides(config, {"pretrain.learning_rate": lr, "name": f"lr{lr:g}"}) for lr in LEARNING_RATES]
    swept, seconds = timed(lambda: train_together(sweep, [out / f"sweep-{c.name}" for c in sweep], progress=False))
    one_by_one = [timed(lambda c=c: train_and_evaluate(c, out / f"sweep-alone-{c.name}", progress=False))
                  for c in sweep]
    sequential = sum(t for _, t in one_by_one)
    rows.append({"runs": len(sweep), "kind": "learning-rate sweep", "together_s": seconds,
                 "sequential_s": sequential, "per_run_together_s": seconds / len(sweep),
                 "per_run_sequential_s": sequential / len(sweep), "speedup": sequential / seconds,
                 "valid_log_loss_together": [r.valid["log_loss"] for r in swept],
                 "valid_log_loss_alone": [r.valid["log_loss"] for r, _ in one_by_one]})
    print(json.dumps(rows, indent=1))
    print("| runs | kind | together s | one after another s | per run together / alone s | speedup |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runs']} | {r['kind']} | {r['together_s']:.1f} | {r['sequential_s']:.1f} | "
              f"{r['per_run_together_s']:.1f} / {r['per_run_sequential_s']:.1f} | {r['speedup']:.2f}x |")


if __name__ == "__main__":
    main(help_text.cli(Config))

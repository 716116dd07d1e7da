"""The realised statistics of a simulator run, and how good its oracle is."""

from __future__ import annotations

import numpy as np

from salesrl_jax import metrics
from salesrl_jax.metrics.positions import FRACTIONS
from salesrl_jax.sim.generate import GenerationResult


def oracle_table(result: GenerationResult) -> list[dict[str, float | str]]:
    """Accuracy / AUC / Brier / ECE of the oracle before the first turn, at 25/50/75% and at the last turn.

    By-fraction rows pick turn ``ceil(f T)``, which depends on the realised
    length ``T``: the oracle is calibrated given the state, not given the length,
    so expect some ECE there; the last-turn and prior rows are exact.
    """
    stats = result.stats
    rows: list[dict[str, float | str]] = [{"point": "prior (no turns)", **metrics.summary(stats.oracle_prior, stats.outcomes)}]
    for col, f in enumerate(FRACTIONS):
        label = "last turn" if f == 1.0 else f"{int(f * 100)}% of turns"
        rows.append({"point": label, **metrics.summary(stats.oracle_at_fraction[:, col], stats.outcomes)})
    return rows


def format_summary(result: GenerationResult) -> str:
    stats = result.stats
    lengths = np.repeat(np.arange(len(stats.length_counts)), stats.length_counts)
    lines = [
        f"conversations     {stats.conversations:,} in {len(result.files)} shard(s), "
        f"{stats.turns:,} turns, {result.seconds:.1f} s ({stats.conversations / result.seconds:,.0f} conversations/s)",
        f"turns per conv.   min {lengths.min()}  median {np.median(lengths):g}  mean {lengths.mean():.2f}  max {lengths.max()}",
        f"converted         {stats.converted / stats.conversations:.3f} (target {result.config.target_conversion_rate}, "
        f"outcome bias {result.outcome_bias:+.3f})",
        "ended by          " + ", ".join(f"{k} {v / stats.conversations:.2f}" for k, v in stats.end_kind_counts.items()),
        "",
        f"{'industry':<22}{'conversations':>14}{'converted':>11}",
    ]
    for name, (count, converted) in stats.industry_counts.items():
        lines.append(f"{name:<22}{count:>14,}{converted / count:>11.3f}")
    lines += ["", "oracle (the simulator's own P(sale | latent state): the ceiling for any model)",
              f"{'point':<18}{'accuracy':>9}{'auc':>8}{'brier':>8}{'ece':>8}"]
    for row in oracle_table(result):
        lines.append(f"{row['point']:<18}{row['accuracy']:>9.3f}{row['auc']:>8.3f}{row['brier']:>8.3f}{row['ece']:>8.3f}")
    return "\n".join(lines)

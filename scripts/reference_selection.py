"""How much of the strongest TF-IDF variant's AUC is selection: the winner's curse of crossval's reference.

    python scripts/reference_selection.py runs/cv-p4g/oof_predictions.parquet --rounds 2000

`salesrl crossval` compares the model at each turn index with the strongest of four TF-IDF variants there, chosen
on the same held-out predictions it is scored on. The maximum of several noisy AUCs overstates the best variant's
true AUC. Per point this prints, from a bootstrap over conversations (the rows of that point):

* the maximum over variants and its selection bias ``mean_b (max_v AUC_v^b - AUC_best^b)``, ``best`` the variant
  strongest on the sample: how much choosing the maximum anew gains from resampling noise, the bootstrap estimate
  of the choice's optimism (0 for copies of one variant, whatever the AUC's own resampling bias), and the maximum
  less it;
* the model's AUC, its difference to the maximum, and to the bias-corrected maximum;
* ``P(model > max)``: the share of resamples in which the model beats every variant.

An analysis beside crossval's report, not a change of its reference: the issue's bar is stated against the maximum.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tyro

from salesrl_jax import help_text
from salesrl_jax.baselines.fit import TFIDF_METHODS
from salesrl_jax.metrics.binary import roc_auc
from salesrl_jax.metrics.bootstrap import resampled_auc
from salesrl_jax.pipelines.crossval import read_oof

TFIDF = TFIDF_METHODS  # the four variants, named as crossval names them


@dataclasses.dataclass(frozen=True)
class Config:
    oof: tyro.conf.Positional[str]
    """A crossval run's oof_predictions.parquet, with its baselines."""
    model: str = "model"
    """The column compared with the variants."""
    turns: tuple[int, ...] = (2, 3, 4, 6, 8, 12)
    """Turn indices (conversations still running there), besides the last turn."""
    rounds: int = 2000
    """Bootstrap resamples of each point's conversations."""
    seed: int = 0
    repeat: int = 0
    """The fold assignment to read, of a run with --repeats (0: the first, fold seed --fold-seed)."""


def selection(model: np.ndarray, variants: dict[str, np.ndarray], labels: np.ndarray, rounds: int, seed: int
              ) -> dict:
    """The row of one point (see the module docstring); ``model`` and each variant ``[n]``, ``labels [n]``."""
    resamples = np.random.default_rng(seed).integers(0, len(labels), size=(rounds, len(labels)))
    aucs = {name: roc_auc(p, labels) for name, p in variants.items()}
    best = max(aucs, key=aucs.get)
    boot = {name: resampled_auc(p, labels, resamples) for name, p in variants.items()}
    boot_max = np.nanmax(np.stack(list(boot.values())), axis=0)
    boot_model = resampled_auc(model, labels, resamples)
    bias = float(np.nanmean(boot_max - boot[best]))
    auc = roc_auc(model, labels)
    return {"strongest": best, "max": aucs[best], "bias": bias, "corrected": aucs[best] - bias, "model": auc,
            "model_minus_max": auc - aucs[best], "model_minus_corrected": auc - aucs[best] + bias,
            "p_model_above_max": float(np.nanmean(boot_model > boot_max))}


def main(config: Config) -> dict[str, dict]:
    try:
        rows = read_oof(config.oof, config.repeat)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    variants = [c for c in TFIDF if c in rows]
    if not variants or config.model not in rows:
        raise SystemExit(f"{config.oof}: needs {config.model!r} and the TF-IDF variants (crossval with baselines); "
                         f"it has {sorted(rows)}")
    index, length, labels = rows["turn_index"], rows["length"], rows["outcome"].astype(np.float64)
    points = {**{str(k): index == k - 1 for k in config.turns}, "last": index == length - 1}
    out = {point: selection(rows[config.model][m].astype(np.float64),
                            {v: rows[v][m].astype(np.float64) for v in variants}, labels[m], config.rounds,
                            config.seed) for point, m in points.items() if m.any()}
    print("| point | strongest variant | its AUC | selection bias | corrected | model | model - max "
          "| model - corrected | P(model > max) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for point, r in out.items():
        print(f"| {point} | {r['strongest']} | {r['max']:.3f} | {r['bias']:+.3f} | {r['corrected']:.3f} | "
              f"{r['model']:.3f} | {r['model_minus_max']:+.3f} | {r['model_minus_corrected']:+.3f} | "
              f"{r['p_model_above_max']:.2f} |")
    return out


if __name__ == "__main__":
    main(help_text.cli(Config))

"""Simulated A/B tests of rep policies: every arm meets the same customers with the same chance (common random
numbers, `salesrl_jax.guidance.rollout`), so each conversation is a matched pair and the differences are measured
on pairs.

Per arm: the conversion rate ``p = mean(sale)`` with the 95% normal interval ``p +- 1.96 sqrt(p (1 - p) / n)``,
the mean final sale probability (the sale's expectation given how the call ended: the same mean, less noise),
and the mean call length in exchanges (``+- 1.96 s / sqrt(n)``). Against the first arm (the control): the
uplift ``mean(sale_B - sale_A)`` over the paired conversations, ``+- 1.96 s_d / sqrt(n)``; the relative uplift
``p_B / p_A - 1`` with a paired bootstrap interval over conversations; the length difference; per industry.
With a ``ceiling`` arm, each arm's share of the control-to-ceiling gap it closes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from salesrl_jax.guidance.rollout import Episodes
from salesrl_jax.io.atomic import write_json_atomic, write_text_atomic

Z = 1.959963984540054


def mean_ci(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    mean, half = float(x.mean()), Z * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.nan
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(len(x))}


def rate_ci(sale: np.ndarray) -> dict[str, float]:
    p, n = float(np.mean(sale)), len(sale)
    half = Z * math.sqrt(p * (1 - p) / n)
    return {"mean": p, "lo": p - half, "hi": p + half, "n": n}


def relative_uplift(treated: np.ndarray, control: np.ndarray, seed: int = 0, resamples: int = 500
                    ) -> dict[str, float]:
    """``p_B / p_A - 1`` and its 95% paired bootstrap interval (conversations resampled with both arms)."""
    t, c = np.asarray(treated, np.float64), np.asarray(control, np.float64)
    rng = np.random.default_rng(seed)
    n = len(t)
    ratios = []
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        ratios.append(t[rows].mean() / max(c[rows].mean(), 1e-12) - 1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return {"mean": float(t.mean() / max(c.mean(), 1e-12) - 1), "lo": float(lo), "hi": float(hi)}


@dataclasses.dataclass
class ABResult:
    arms: dict[str, dict]
    industries: list[str]
    conversations: int
    time_cost: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare(arms: dict[str, Episodes], industries: tuple[str, ...], time_cost: float = 0.0) -> ABResult:
    """The statistics of the module docstring; the first arm is the control."""
    names = list(arms)
    control = arms[names[0]]
    n = len(control.sale)
    if any(len(e.sale) != n or not np.array_equal(e.industry, control.industry) for e in arms.values()):
        raise ValueError("A/B arms must be run on the same conversations (same key and count)")
    ceiling = arms.get("ceiling")
    out = {}
    for name, e in arms.items():
        sale = e.sale.astype(np.float64)
        row = {"conversion": rate_ci(sale), "sale_prob": mean_ci(e.sale_prob), "exchanges": mean_ci(e.exchanges),
               "return": mean_ci(e.ret), "end_kinds": np.bincount(e.end_kind, minlength=4).tolist()}
        if name != names[0]:
            row["uplift"] = mean_ci(sale - control.sale)
            row["uplift_expected"] = mean_ci(e.sale_prob - control.sale_prob)
            row["relative_uplift"] = relative_uplift(sale, control.sale.astype(np.float64))
            row["exchanges_difference"] = mean_ci(e.exchanges.astype(np.float64) - control.exchanges)
            if ceiling is not None and name != "ceiling":
                gap = float(ceiling.sale_prob.mean() - control.sale_prob.mean())
                row["share_of_ceiling_gap"] = float((e.sale_prob.mean() - control.sale_prob.mean()) / gap) if gap else math.nan
        row["by_industry"] = {}
        for k, industry in enumerate(industries):
            rows = e.industry == k
            if not rows.any():
                continue
            entry = {"conversion": rate_ci(sale[rows]), "exchanges": mean_ci(e.exchanges[rows])}
            if name != names[0]:
                entry["uplift"] = mean_ci(sale[rows] - control.sale[rows])
            row["by_industry"][industry] = entry
        out[name] = row
    return ABResult(out, list(industries), n, time_cost)


def _ci(entry: dict, digits: int = 3, sign: bool = False) -> str:
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{fmt.format(entry['mean'])} [{fmt.format(entry['lo'])}, {fmt.format(entry['hi'])}]"


def markdown(result: ABResult) -> str:
    names = list(result.arms)
    lines = [f"# Simulated A/B test: {', '.join(names)}", "",
             f"{result.conversations:,} simulated conversations per arm, the same customers and chance in every arm "
             f"(common random numbers); control: `{names[0]}`; time cost per exchange {result.time_cost:g}. "
             "95% intervals; differences paired by conversation.", "",
             "Learned in simulation: these numbers measure the policies against the simulator's own dynamics, not "
             "against real customers (docs/guidance.md).", "",
             "| arm | conversion | E[sale] | exchanges | uplift (abs.) | uplift (rel.) | exchanges vs control | "
             "share of gap to ceiling |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in result.arms.items():
        extra = ["-", "-", "-", "-"]
        if "uplift" in row:
            extra = [_ci(row["uplift"], sign=True), _ci(row["relative_uplift"], sign=True),
                     _ci(row["exchanges_difference"], 2, sign=True),
                     f"{row['share_of_ceiling_gap']:.2f}" if "share_of_ceiling_gap" in row else "-"]
        lines.append(f"| {name} | {_ci(row['conversion'])} | {row['sale_prob']['mean']:.3f} | "
                     f"{_ci(row['exchanges'], 2)} | " + " | ".join(extra) + " |")
    lines += ["", "## By industry (conversion; uplift against the control)", "",
              "| industry | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for industry in result.industries:
        cells = []
        for name in names:
            entry = result.arms[name]["by_industry"].get(industry)
            if entry is None:
                cells.append("-")
                continue
            cell = f"{entry['conversion']['mean']:.3f}"
            if "uplift" in entry:
                cell += f" ({_ci(entry['uplift'], sign=True)})"
            cells.append(cell)
        lines.append(f"| {industry} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: ABResult, path: Path) -> None:
    """Conversion per arm with its interval, and the uplift per industry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.arms)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.35 * len(result.industries) + 2.5))
    conv = [result.arms[n]["conversion"] for n in names]
    left.barh(names, [c["mean"] for c in conv], xerr=[[c["mean"] - c["lo"] for c in conv],
                                                       [c["hi"] - c["mean"] for c in conv]], capsize=3)
    left.set(xlabel="conversion rate", title="arms (95% CI)")
    y = np.arange(len(result.industries))
    for k, name in enumerate(names[1:]):
        ups = [result.arms[name]["by_industry"][i]["uplift"] for i in result.industries]
        mean = np.array([u["mean"] for u in ups])
        right.errorbar(mean, y + 0.15 * k, xerr=[mean - [u["lo"] for u in ups], [u["hi"] for u in ups] - mean],
                       fmt="o", capsize=2, label=name)
    right.axvline(0, color="grey", lw=1, ls="--")
    right.set(yticks=y, yticklabels=result.industries, xlabel=f"conversion uplift vs {names[0]}", title="by industry")
    if len(names) > 1:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: ABResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "ab.json", result.to_dict())
    write_text_atomic(out / "report.md", markdown(result))
    plot(result, out / "ab.png")

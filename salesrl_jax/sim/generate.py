"""Seeded, sharded, streaming generation of simulated conversations with ground truth.

Shard ``i`` is drawn from ``SeedSequence([seed, i])`` alone, so the bytes of a
run depend on the seed and shard size, never on how many worker processes made
it. Each worker holds one batch of conversations at a time (bounded memory).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from salesrl_jax.data.readers import ArchiveReader
from salesrl_jax.data.records import Conversation, Turn
from salesrl_jax.data.writers import ArchiveWriter
from salesrl_jax.io.atomic import remove_stale_temporaries, write_json_atomic
from salesrl_jax.io.resumable_map import check_run_record, chunked, default_workers, resumable_map
from salesrl_jax.metrics.positions import FRACTIONS, turn_at_fraction
from salesrl_jax.sim import dynamics
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.industries import BY_NAME, Industry
from salesrl_jax.sim.params import DynamicsParams
from salesrl_jax.sim.text import conversation_slots, render_turn

SIMULATOR_VERSION = 1
BATCH = 4096  # conversations simulated together: bounds memory (~100 MB per worker)
_CALIBRATION_STREAM = 2**31 - 1  # seed-sequence key of the calibration pilot, apart from any shard
_WRAP = {"agree": "wrap_won", "decline": "wrap_lost", "disengage": "wrap_lost", "cap": "wrap_follow_up"}


def _industry_arrays(industries: Sequence[Industry], index: np.ndarray) -> tuple[np.ndarray, ...]:
    table = np.array([(ind.competition, ind.price_sensitivity, ind.authority) for ind in industries])
    rows = table[index]
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _of_conversations(industries: Sequence[Industry], index: np.ndarray, scale: float
                      ) -> dynamics.IndustryDynamics | None:
    """Each conversation's industry dynamics (by ``index`` into ``industries``), or None where they share them."""
    stacked = dynamics.stacked_industry_dynamics([ind.name for ind in industries], scale)
    return None if stacked is None else stacked.rows(index)


def _draw_batch(rng: np.random.Generator, config: SimulatorConfig, n: int, bias: float, params: DynamicsParams):
    industries = [BY_NAME[name] for name in config.included_industries]
    industry_index = rng.integers(len(industries), size=n)
    profile = dynamics.draw_profiles(rng, *_industry_arrays(industries, industry_index), priors=params.profile)
    tensors = dynamics.build_tensors(profile, config.max_exchanges, bias, config.pace, params,
                                     _of_conversations(industries, industry_index, config.industry_dynamics))
    return industries, industry_index, profile, tensors


def calibrate_outcome_bias(config: SimulatorConfig, pilot: int = 4096,
                           params: DynamicsParams = DynamicsParams()) -> float:
    """The outcome-logit bias at which the expected conversion rate equals the target.

    The expected rate of a profile is the oracle's prior ``V_0``, so the pilot
    needs no sampling noise from outcomes; the bias is found by the secant
    method on ``logit(rate)``. The profiles are drawn once; only the outcome
    table changes between iterations.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, _CALIBRATION_STREAM]))
    _, _, _, tensors = _draw_batch(rng, config, pilot, 0.0, params)
    base_logit = np.log(tensors.end) - np.log1p(-tensors.end)
    logit = lambda q: math.log(q / (1 - q))  # noqa: E731

    def rate_at(bias: float) -> float:
        end = (1.0 / (1.0 + np.exp(-(base_logit + bias)))).astype(np.float32)
        return float(dynamics.solve_oracle(dataclasses.replace(tensors, end=end)).prior.mean())

    # Secant steps on the logit of the rate, which is close to linear in the bias.
    target = logit(config.target_conversion_rate)
    b0, r0 = 0.0, logit(rate_at(0.0))
    b1 = target - r0
    for _ in range(12):
        r1 = logit(rate_at(b1))
        if abs(r1 - target) < 1e-3 or r1 == r0:
            break
        b0, r0, b1 = b1, r1, b1 + (target - r1) * (b1 - b0) / (r1 - r0)
    return float(b1)


@dataclasses.dataclass
class ShardStats:
    """What a shard reports back; merged across shards for the run summary."""

    conversations: int
    turns: int
    converted: int
    length_counts: np.ndarray  # [max_turns + 1]
    industry_counts: dict[str, list[int]]  # name -> [conversations, converted]
    end_kind_counts: dict[str, int]
    oracle_at_fraction: np.ndarray  # [n, len(FRACTIONS)] oracle after ceil(f * T) turns
    oracle_prior: np.ndarray  # [n] before the first turn
    outcomes: np.ndarray  # [n]

    @staticmethod
    def merge(parts: Sequence["ShardStats"]) -> "ShardStats":
        industry: dict[str, list[int]] = {}
        ends: dict[str, int] = {}
        for part in parts:
            for name, (count, conv) in part.industry_counts.items():
                industry.setdefault(name, [0, 0])
                industry[name][0] += count
                industry[name][1] += conv
            for name, count in part.end_kind_counts.items():
                ends[name] = ends.get(name, 0) + count
        return ShardStats(
            conversations=sum(p.conversations for p in parts),
            turns=sum(p.turns for p in parts),
            converted=sum(p.converted for p in parts),
            length_counts=np.sum([p.length_counts for p in parts], axis=0),
            industry_counts=dict(sorted(industry.items())),
            end_kind_counts=dict(sorted(ends.items())),
            oracle_at_fraction=np.concatenate([p.oracle_at_fraction for p in parts]),
            oracle_prior=np.concatenate([p.oracle_prior for p in parts]),
            outcomes=np.concatenate([p.outcomes for p in parts]),
        )


def simulate(config: SimulatorConfig, bias: float, rng: np.random.Generator, text_rng: random.Random,
             first_index: int, n: int, params: DynamicsParams = DynamicsParams()) -> Iterator[Conversation]:
    """Simulate ``n`` conversations (ids from ``first_index``), batch by batch."""
    done = 0
    while done < n:
        size = min(BATCH, n - done)
        industries, industry_index, profile, tensors = _draw_batch(rng, config, size, bias, params)
        oracle = dynamics.solve_oracle(tensors)
        roll = dynamics.rollout(rng, tensors, oracle)
        profiles = profile.as_rows()
        for i in range(size):
            yield _render(config, text_rng, first_index + done + i, industries[industry_index[i]],
                          roll, i, profiles[i], float(oracle.prior[i]))
        done += size


def _render(config: SimulatorConfig, rng: random.Random, index: int, industry: Industry,
            roll: dynamics.Rollout, i: int, profile: dict[str, float], prior: float) -> Conversation:
    slots = conversation_slots(rng, industry)
    turns: list[Turn] = []
    clock = 0.0
    rep_rate = rng.uniform(2.2, 3.0)  # words per second
    cust_rate = rng.uniform(1.9, 2.8)

    def add(act: str, customer: bool, interest: int, oracle: float) -> None:
        nonlocal clock
        text = render_turn(rng, act, industry, slots, customer=customer, interest=interest,
                           noise=config.noise, ambiguity=config.ambiguity)
        if turns:
            # Engaged customers answer quickly; bored ones make the rep wait.
            mean_gap = 0.9 + 0.45 * (3 - interest) if customer else 0.7
            clock += rng.lognormvariate(math.log(max(mean_gap, 0.2)), 0.45)
        words = len(text.split())
        duration = words / (cust_rate if customer else rep_rate) * rng.lognormvariate(0.0, 0.15)
        turns.append(Turn(speaker="customer" if customer else "rep", text=text, start_time=round(clock, 2),
                          duration=round(duration, 2), act=act, oracle_prob=round(oracle, 6)))
        clock += duration

    exchanges = int(roll.exchanges[i])
    for e in range(exchanges):
        level = int(roll.interest_before[i, e])
        add(dynamics.REP_ACTS[roll.rep_acts[i, e]], False, level, float(roll.oracle_after_rep[i, e]))
        add(dynamics.CUSTOMER_ACTS[roll.customer_acts[i, e]], True, level, float(roll.oracle_after_customer[i, e]))
    end_kind = dynamics.END_KINDS[roll.end_kind[i]]
    if exchanges == 1 or rng.random() < config.wrap_up_prob:
        add(_WRAP[end_kind], False, int(roll.interest_after[i, exchanges - 1]), float(roll.end_prob[i]))
    return Conversation(
        id=f"sim{config.seed}-{index:08d}",
        turns=tuple(turns),
        outcome=int(roll.outcome[i]),
        industry=industry.name,
        product=slots["product"],
        metadata={"simulator_version": SIMULATOR_VERSION, "end": end_kind, "prior": round(prior, 6),
                  "latent": profile},
    )


def _shard_stats(config: SimulatorConfig, conversations: Sequence[Conversation]) -> ShardStats:
    n = len(conversations)
    lengths = np.array([c.num_turns for c in conversations])
    outcomes = np.array([c.outcome for c in conversations], dtype=np.int8)
    at_fraction = np.empty((n, len(FRACTIONS)), dtype=np.float32)
    industry: dict[str, list[int]] = {}
    ends: dict[str, int] = {}
    for row, conv in enumerate(conversations):
        for col, f in enumerate(FRACTIONS):
            at_fraction[row, col] = conv.turns[int(turn_at_fraction(f, conv.num_turns))].oracle_prob
        industry.setdefault(conv.industry, [0, 0])
        industry[conv.industry][0] += 1
        industry[conv.industry][1] += conv.outcome
        ends[conv.metadata["end"]] = ends.get(conv.metadata["end"], 0) + 1
    return ShardStats(
        conversations=n, turns=int(lengths.sum()), converted=int(outcomes.sum()),
        length_counts=np.bincount(lengths, minlength=config.max_turns + 1),
        industry_counts=industry, end_kind_counts=ends, oracle_at_fraction=at_fraction,
        oracle_prior=np.array([c.metadata["prior"] for c in conversations], dtype=np.float32),
        outcomes=outcomes,
    )


def shard_path(out_dir: Path, shard: int, shards: int, fmt: str) -> Path:
    return out_dir / f"conversations-{shard:05d}-of-{shards:05d}.{fmt}"


def _generate_shard(context: None, shard: int, job: tuple[SimulatorConfig, DynamicsParams, float, str, str]
                    ) -> tuple[int, ShardStats]:
    """Write shard ``shard`` (its randomness is ``SeedSequence([seed, shard])`` alone) and return its stats."""
    config, params, bias, out_dir, fmt = job
    shards = math.ceil(config.num_conversations / config.shard_size)
    first = shard * config.shard_size
    n = min(config.shard_size, config.num_conversations - first)
    seq = np.random.SeedSequence([config.seed, shard])
    rng = np.random.default_rng(seq)
    text_rng = random.Random(int(seq.generate_state(1, dtype=np.uint64)[0]))

    def written(writer: ArchiveWriter) -> Iterator[Conversation]:
        for conv in simulate(config, bias, rng, text_rng, first, n, params):
            writer.write(conv)
            yield conv

    with ArchiveWriter(shard_path(Path(out_dir), shard, shards, fmt)) as writer:  # published whole, atomically
        stats = _batched_stats(config, written(writer))
    return shard, stats


def _batched_stats(config: SimulatorConfig, conversations: Iterable[Conversation]) -> ShardStats:
    """Stats of a stream of conversations, computed per batch so only one batch of records is alive at a time."""
    return ShardStats.merge([_shard_stats(config, batch) for batch in chunked(conversations, BATCH)])


@dataclasses.dataclass
class GenerationResult:
    config: SimulatorConfig
    outcome_bias: float
    stats: ShardStats
    files: list[Path]
    seconds: float


MANIFEST = "manifest.json"
PARTIAL_MANIFEST = "manifest.partial.json"  # an unfinished run's arguments ("manifest" in the name: not a shard)


def simulated_config(out_dir: str | os.PathLike[str]) -> SimulatorConfig | None:
    """The config a finished `generate` run in ``out_dir`` was made with (fields its manifest predates take their
    defaults, which reproduce the older simulator), or None where there is none."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())["config"]
    known = {f.name for f in dataclasses.fields(SimulatorConfig)}
    return SimulatorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known})


def generate(config: SimulatorConfig, out_dir: str | os.PathLike[str], *, fmt: str = "jsonl",
             workers: int | None = None, progress: Callable[[int], None] | None = None,
             params: DynamicsParams = DynamicsParams()) -> GenerationResult:
    """Generate ``config.num_conversations`` conversations into shard files under ``out_dir``.

    Resumable: each shard file appears whole (atomically) when done, so a rerun after a kill with the
    same arguments keeps the finished shards (their statistics are read back) and makes the rest; the
    bytes equal an uninterrupted run's. A directory holding another run's archive is replaced.

    Args:
      fmt: ``jsonl``, ``jsonl.gz``, ``csv`` or ``parquet``.
      workers: processes (default: all cores); 1 runs in this process.
      progress: called with the number of conversations each finished shard adds.
      params: the simulator's coefficients (`salesrl_jax.sim.params`); recorded in the manifest when changed.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = math.ceil(config.num_conversations / config.shard_size)
    files = [shard_path(out, s, shards, fmt) for s in range(shards)]
    run = {"simulator_version": SIMULATOR_VERSION, "config": dataclasses.asdict(config), "format": fmt}
    if params != DynamicsParams():  # the defaults are the simulator of SIMULATOR_VERSION, named by it alone
        run["dynamics"] = dataclasses.asdict(params)
    _forget_other_run(out, run)
    check_run_record(out / PARTIAL_MANIFEST, run, "a simulated archive")
    remove_stale_temporaries(out)
    bias = calibrate_outcome_bias(config, params=params)
    results: list[ShardStats | None] = [None] * shards

    def done(result: tuple[int, ShardStats]) -> None:
        shard, stats = result
        results[shard] = stats
        if progress is not None:
            progress(stats.conversations)

    def read_back(shard: int, job) -> None:
        done((shard, _batched_stats(config, ArchiveReader(files[shard], strict=True))))

    jobs = [(config, params, bias, str(out), fmt)] * shards  # chunk i is shard i
    resumable_map(jobs, _generate_shard, done, is_done=lambda shard, job: files[shard].exists(), skip=read_back,
                  workers=min(default_workers(workers), shards))
    stats = ShardStats.merge([r for r in results if r is not None])
    manifest = {
        "simulator_version": SIMULATOR_VERSION,
        "config": dataclasses.asdict(config),
        "outcome_bias": bias,
        "format": fmt,
        "files": [f.name for f in files],
        "conversations": stats.conversations,
        "turns": stats.turns,
        "converted": stats.converted,
        **({"dynamics": run["dynamics"]} if "dynamics" in run else {}),
    }
    write_json_atomic(out / MANIFEST, manifest, indent=2, newline=True)  # last: its presence means complete
    (out / PARTIAL_MANIFEST).unlink()
    return GenerationResult(config=config, outcome_bias=bias, stats=stats, files=files,
                            seconds=time.perf_counter() - start)


def _forget_other_run(out: Path, run: dict) -> None:
    """A finished archive from other arguments in ``out`` is replaced: remove its shards and manifest first, so
    none of its files is mistaken for a finished shard of this run."""
    path = out / MANIFEST
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    if {key: previous[key] for key in ("simulator_version", "config", "format", "dynamics") if key in previous} \
            == json.loads(json.dumps(run)):
        return
    for name in previous.get("files", []):
        (out / name).unlink(missing_ok=True)
    path.unlink()

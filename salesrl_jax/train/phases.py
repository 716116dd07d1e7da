"""One runner for both training phases: plan, jitted step, metrics, validation and checkpoints.

A phase is a sequence of periods (pretraining: epochs; PPO: one), each a list of units (a chunk of
packed minibatches; a PPO update). For every unit the runner gathers the host batch, runs the jitted
step, refuses a non-finite loss, logs a line and advances the `RunPosition`; it validates (keeping the
best checkpoint) at the end of each period and every ``validate_every`` units, and saves the latest
checkpoint every ``checkpoint_every`` units and at each validation, at most once per ``checkpoint_seconds``.
The two phases differ only in the small methods `Pretraining` and `PPOFinetuning` define.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from salesrl_jax.arrays import batches as batch_lib
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.parallel.distributed import agreed
from salesrl_jax.parallel.placement import Placement
from salesrl_jax.run.checkpoints import Checkpoints
from salesrl_jax.train.bootstrap import bootstrap_weights, conversation_first_rows
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.metrics_log import Meter, MetricsLog
from salesrl_jax.train.position import RunPosition
from salesrl_jax.train.ppo import PPOBatch
from salesrl_jax.train.state import TrainState, averaged
from salesrl_jax.train.supervised import SupervisedBatch
from salesrl_jax.train.validation import Validator


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is left untouched."""


def supervised_batch(host: batch_lib.PackedBatch, part: int = 0, seed: int = 0, heads: int = 0,
                     placement: Placement | None = None, offsets: np.ndarray | None = None) -> SupervisedBatch:
    """The device batch of packed minibatches from ``part``, with the ``heads`` ensemble heads' bootstrap weights
    of the run ``seed`` (`salesrl_jax.train.bootstrap`); on ``placement``'s mesh when given (``host`` then holds
    this process's slices of each minibatch)."""
    inputs = TurnInputs.from_packed(host, segments=placement.segments if placement else 1)
    weights = bootstrap_weights(seed, part, conversation_first_rows(host.index, host.starts), heads)
    offset = None
    if offsets is not None:
        offset = np.where(host.index >= 0, offsets[np.maximum(host.index, 0)], np.nan).astype(np.float32)
    batch = SupervisedBatch(inputs, host.labels, weights, offset)
    return placement.put_batch(batch) if placement else jax.tree.map(jnp.asarray, batch)


def ppo_batch(host: batch_lib.PackedBatch, part: int = 0, seed: int = 0, heads: int = 0,
              placement: Placement | None = None, offsets: np.ndarray | None = None) -> PPOBatch:
    supervised = supervised_batch(host, part, seed, heads, placement, offsets)
    return PPOBatch(supervised.inputs, supervised.labels, supervised.bootstrap, supervised.offset)


def require_finite(values: dict[str, np.ndarray], where: str) -> None:
    for name, value in values.items():
        if not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))[0]
            raise TrainingDiverged(f"{name} became {np.atleast_1d(value)[bad]} at {where} (minibatch {bad}); "
                                   "stopped without saving: the last good checkpoint is kept. Lower the learning "
                                   "rate or check the data.")


@dataclasses.dataclass
class RunContext:
    """What every phase shares: where checkpoints and metrics go, how to validate, and the work budget."""

    checkpoints: Checkpoints
    log: MetricsLog
    validate: Validator | None  # None: no validation split (data.valid_fraction 0)
    meta: dict  # the run's fixed checkpoint meta (config, embedder, features); the position is added per save
    checkpoint_every: int
    progress: bool = True
    budget: int | None = None  # units of work left before stopping early (tests simulate a kill with it)
    stalled: int = 0  # validations in a row, in the current phase, that found no new best (saved with the latest)
    best_log_loss: float = math.inf  # the best validation log loss so far, what a new best must beat (saved too)
    checkpoint_seconds: float = 0.0  # save the latest at most this often within a phase (TrainConfig)

    def save_latest(self, state: TrainState, position: RunPosition) -> None:
        # The latest may be older than the kept best (saves are spaced by `checkpoint_seconds`): a resumed run
        # replays the validations in between against the best as of its position, which it records.
        best = None if math.isinf(self.best_log_loss) else self.best_log_loss
        self.checkpoints.save_latest(state, {**self.meta, "position": position.to_dict(), "stalled": self.stalled,
                                             "best_log_loss": best})

    def validate_and_keep_best(self, state: TrainState, position: RunPosition, tag: str) -> dict[str, float]:
        state = averaged(state)  # the model a phase that averages its parameters stands for is the average
        if self.validate is None:  # no validation split (data.valid_fraction 0): the newest model is the best
            self.checkpoints.save_best(state, {**self.meta, "position": position.to_dict(), "valid": {}}, None)
            self.log.write({"seq": position.seq, "event": "kept_unvalidated", "at": tag})
            return {}
        valid = self.validate(state.params)
        improved = self.checkpoints.save_best(state, {**self.meta, "position": position.to_dict(), "valid": valid},
                                              valid["log_loss"], than=self.best_log_loss)
        self.stalled = 0 if improved else self.stalled + 1
        self.best_log_loss = valid["log_loss"] if improved else self.best_log_loss
        self.log.write({"seq": position.seq, "event": "validation", "at": tag, **valid, "best": improved})
        return valid

    def spend(self) -> bool:
        """Count one unit of work; True when the budget is used up."""
        if self.budget is None:
            return False
        self.budget -= 1
        return self.budget <= 0


@dataclasses.dataclass
class Members:
    """The runs a phase trains together: one, or several (seeds, numeric hyperparameters) in one compiled program:
    their states and `Hyperparams` stacked on a leading axis, the step vmapped over it
    (`salesrl_jax.train.loop.train_together`). Each member keeps its own data order, bootstrap weights,
    hyperparameters, validation, checkpoints and log."""

    contexts: list[RunContext]
    seeds: list[int]  # each member's run seed
    labels: list[str] | None = None  # how errors name each member (default: by seed)

    def __len__(self) -> int:
        return len(self.contexts)

    @property
    def stacked(self) -> bool:
        return len(self.contexts) > 1

    def pick(self, tree: Any, m: int) -> Any:
        """Member ``m``'s part of a stacked pytree (the pytree itself for a single run)."""
        return jax.tree.map(lambda x: x[m], tree) if self.stacked else tree

    def stack(self, trees: list) -> Any:
        return jax.tree.map(lambda *xs: jnp.stack(xs), *trees) if self.stacked else trees[0]

    def keep(self, new: Any, old: Any, active: list[bool]) -> Any:
        """The stacked ``new`` for the active members and ``old`` for the others."""
        mask = jnp.asarray(active)
        return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)

    def save_latest(self, state: TrainState, position: RunPosition) -> None:
        """Each member's latest checkpoint at ``position`` (a member stopped early included: it follows the others)."""
        for m, ctx in enumerate(self.contexts):
            ctx.save_latest(self.pick(state, m), position)

    def label(self, m: int) -> str:
        return f" ({self.labels[m] if self.labels else f'seed {self.seeds[m]}'})" if self.stacked else ""


@dataclasses.dataclass
class PhaseResult:
    state: TrainState
    position: RunPosition
    stopped: bool  # the budget ran out before the phase ended
    throughput: dict[str, float]


class Phase:
    """A training phase; subclasses name its units and metrics (see the module docstring)."""

    name: str
    unit: str  # progress-bar unit
    rate_unit: str  # what the meter counts

    def __init__(self, arrays: TurnArrays, step: Callable, hp: Hyperparams, rows: int, minibatches: int,
                 periods: int, validate_every: int | None, heads: int = 0, placement: Placement | None = None,
                 patience: int = 0, offsets: dict | None = None):
        self.arrays, self.step, self.hp = arrays, step, hp
        self.offsets = offsets  # part -> the wide term's out-of-fold logit of each training turn (None: no wide term)
        self.rows, self.minibatches = rows, minibatches
        self.periods, self.validate_every = periods, validate_every
        self.patience = patience  # validations in a row without a new best after which a member stops (0: never)
        self.heads = heads  # ensemble heads: their fixed bootstrap weights, per member's seed
        self.placement = placement  # the mesh (None: one device, each minibatch one slice)

    def part_offsets(self, part: int) -> np.ndarray | None:
        """The training logits' offsets of part ``part``'s rows (`salesrl_jax.train.wide_fit`), if the run has any."""
        return None if self.offsets is None else self.offsets.get(part)

    def gather(self, parts: batch_lib.PartCache, chunk: batch_lib.ChunkPlan) -> batch_lib.PackedBatch:
        """This process's share of a planned chunk, from the memory map."""
        if self.placement is None:
            return batch_lib.gather_packed(parts.get(chunk.part), chunk.minibatches, self.rows, self.minibatches)
        return batch_lib.gather_packed(parts.get(chunk.part), chunk.minibatches, self.rows, self.minibatches,
                                       self.placement.segments, self.placement.local_segments())

    # --- what differs between phases ---------------------------------------------------------
    def plan(self, period: int, member: int) -> list[batch_lib.ChunkPlan]: ...
    def to_batch(self, host: batch_lib.PackedBatch, part: int, seed: int) -> Any: ...
    def cursor(self, position: RunPosition) -> tuple[int, int]: ...  # (period, next unit)
    def after_unit(self, position: RunPosition, period: int, done: int) -> RunPosition: ...
    def after_period(self, position: RunPosition, period: int) -> RunPosition: ...
    def items(self, metrics) -> float: ...
    def finite(self, metrics) -> dict[str, np.ndarray]: ...
    def where(self, period: int, unit: int, state: TrainState) -> str: ...
    def record(self, metrics, period: int, unit: int, state: TrainState) -> dict: ...
    def postfix(self, metrics, rate: float | None) -> dict[str, str]: ...
    def bar_label(self, period: int) -> str: ...
    def validation_tag(self, period: int, done: int) -> str: ...

    # --- the shared loop ---------------------------------------------------------------------
    def halted(self, ctx: RunContext) -> bool:
        """Whether a member has stopped early: ``patience`` validations in a row without a new best."""
        return self.patience > 0 and ctx.stalled >= self.patience

    def run(self, members: Members, state: TrainState, position: RunPosition) -> PhaseResult:
        """Train ``members`` (their ``state``, stacked when several) from ``position`` to the phase's end, until
        every member has stopped early (`halted`), or until the first member's work budget runs out.

        A member that stops early while others train on keeps its state (each step's result is discarded for
        it), is neither validated nor logged again, and its latest checkpoint follows the others' position: it
        ends as it would alone."""
        meter = Meter()
        parts = [batch_lib.PartCache(self.arrays) for _ in range(len(members))]
        first_period, first_unit = self.cursor(position)
        budget = members.contexts[0]
        last_save = time.monotonic()
        for period in range(first_period, self.periods):
            plans = [self.plan(period, m) for m in range(len(members))]
            length = max(len(plan) for plan in plans)  # a member with fewer chunks gets empty ones (no-op steps)
            start = first_unit if period == first_period else 0
            bar = tqdm(total=length, initial=start, unit=self.unit, desc=self.bar_label(period),
                       disable=None if budget.progress else True, dynamic_ncols=True)
            for unit in range(start, length):
                active = [not self.halted(ctx) for ctx in members.contexts]
                if not any(active):
                    bar.close()
                    return PhaseResult(state, position, False, meter.report(self.name, self.rate_unit))
                batches = []
                for m, plan in enumerate(plans):
                    chunk = plan[unit] if unit < len(plan) else batch_lib.ChunkPlan(plan[-1].part, [])
                    batches.append(self.to_batch(self.gather(parts[m], chunk), chunk.part, members.seeds[m]))
                (new_state, metrics), seconds = meter.timed(self.step, state, members.stack(batches), self.hp)
                meter.add(sum(self.items(members.pick(metrics, m)) for m in range(len(members)) if active[m]),
                          seconds)
                for m in range(len(members)):
                    if active[m]:
                        require_finite(self.finite(members.pick(metrics, m)),
                                       self.where(period, unit, members.pick(state, m)) + members.label(m))
                state, done = (members.keep(new_state, state, active) if not all(active) else new_state), unit + 1
                position = self.after_unit(position, period, done)
                for m, ctx in enumerate(members.contexts):
                    if active[m]:
                        ctx.log.write({"seq": position.seq, "event": self.name,
                                       **self.record(members.pick(metrics, m), period, unit, members.pick(state, m)),
                                       "seconds": seconds})
                bar.set_postfix(**self.postfix(members.pick(metrics, active.index(True)), meter.rate))
                bar.update(1)
                period_ends = done == length
                if period_ends:
                    position = self.after_period(position, period)
                validates = period_ends or bool(self.validate_every and done % self.validate_every == 0)
                if validates:
                    tag = self.validation_tag(period, done)
                    for m, ctx in enumerate(members.contexts):
                        if active[m]:
                            ctx.validate_and_keep_best(members.pick(state, m), position, tag)
                            if self.halted(ctx):
                                ctx.log.write({"seq": position.seq, "event": "early_stop", "phase": self.name,
                                               "at": tag, "patience": self.patience})
                                bar.write(f"{self.name}{members.label(m)}: no new best in {self.patience} "
                                          f"validations; stopped early at {tag}")
                # Every member's latest follows one position (a member stopped early included), on one clock.
                saved = ((validates or done % budget.checkpoint_every == 0)
                         and (budget.checkpoint_seconds <= 0
                              or agreed(time.monotonic() - last_save >= budget.checkpoint_seconds)))
                if saved:
                    members.save_latest(state, position)
                    last_save = time.monotonic()
                if budget.spend():
                    if not saved:
                        members.save_latest(state, position)
                    bar.close()
                    return PhaseResult(state, position, True, meter.report(self.name, self.rate_unit))
            bar.close()
        return PhaseResult(state, position, False, meter.report(self.name, self.rate_unit))


class Pretraining(Phase):
    """Supervised pretraining: epochs of chunks of packed minibatches (one jitted `lax.scan` per chunk)."""

    name, unit, rate_unit = "pretrain", "chunk", "turns"

    def __init__(self, arrays: TurnArrays, step: Callable, hp: Hyperparams, rows: int, minibatches: int,
                 epochs: int, plans: list[Callable[[int], list[batch_lib.ChunkPlan]]], heads: int = 0,
                 placement: Placement | None = None, patience: int = 0, offsets: dict | None = None):
        super().__init__(arrays, step, hp, rows, minibatches, epochs, validate_every=None, heads=heads,
                         placement=placement, patience=patience, offsets=offsets)
        self._plans = plans  # per member: epoch -> its chunks

    def plan(self, period, member):
        return self._plans[member](period)

    def to_batch(self, host, part, seed):
        return supervised_batch(host, part, seed, self.heads, self.placement, self.part_offsets(part))

    def cursor(self, position):
        return position.epoch, position.chunk

    def after_unit(self, position, period, done):
        return position.advance(epoch=period, chunk=done)

    def after_period(self, position, period):
        return dataclasses.replace(position, epoch=period + 1, chunk=0)

    def items(self, metrics):
        return float(metrics.turns.sum())

    def finite(self, metrics):
        return {"loss": metrics.loss, "grad_norm": metrics.grad_norm}

    def where(self, period, unit, state):
        return f"pretrain epoch {period + 1}, chunk {unit + 1}, optimizer step {int(state.step) + 1}"

    def record(self, metrics, period, unit, state):
        used = metrics.turns > 0  # a part's short last chunk has empty minibatches: not logged
        return {"epoch": period, "chunk": unit, "step": int(state.step), "loss": metrics.loss[used].tolist(),
                "policy_bce": metrics.policy_bce[used].tolist(), "ensemble_bce": metrics.ensemble_bce[used].tolist(),
                "grad_norm": metrics.grad_norm[used].tolist(), "turns": int(metrics.turns.sum())}

    def postfix(self, metrics, rate):
        return {"loss": f"{float(metrics.policy_bce[metrics.turns > 0].mean()):.4f}",
                "turns_s": f"{rate:,.0f}" if rate else "-"}

    def bar_label(self, period):
        return f"pretrain {period + 1}/{self.periods}"

    def validation_tag(self, period, done):
        return f"pretrain epoch {period + 1}"


class PPOFinetuning(Phase):
    """PPO: one period of updates, each a rollout of its packed minibatches and epochs of clipped updates."""

    name, unit, rate_unit = "ppo", "update", "env_steps"

    def __init__(self, arrays: TurnArrays, step: Callable, hp: Hyperparams, rows: int, minibatches: int,
                 schedules: list[list[batch_lib.ChunkPlan]], validate_every: int, heads: int = 0,
                 placement: Placement | None = None, patience: int = 0, offsets: dict | None = None):
        super().__init__(arrays, step, hp, rows, minibatches, periods=1, validate_every=validate_every,
                         heads=heads, placement=placement, patience=patience, offsets=offsets)
        self.schedules = schedules  # per member

    def plan(self, period, member):
        return self.schedules[member]

    def to_batch(self, host, part, seed):
        return ppo_batch(host, part, seed, self.heads, self.placement, self.part_offsets(part))

    def cursor(self, position):
        return 0, position.update

    def after_unit(self, position, period, done):
        return position.advance(update=done)

    def after_period(self, position, period):
        return position

    def items(self, metrics):
        return float(metrics.env_steps)

    def finite(self, metrics):
        return {"loss": metrics.train.loss, "value_loss": metrics.train.value_loss}

    def where(self, period, unit, state):
        return f"PPO update {unit + 1}"

    def record(self, metrics, period, unit, state):
        return {"update": unit, "mean_reward": float(metrics.mean_reward),
                "prediction_brier": float(metrics.prediction_brier), "env_steps": int(metrics.env_steps),
                **{k: float(v) for k, v in metrics.train._asdict().items()}}

    def postfix(self, metrics, rate):
        return {"reward": f"{float(metrics.mean_reward):.4f}", "brier": f"{float(metrics.prediction_brier):.4f}",
                "steps_s": f"{rate:,.0f}" if rate else "-"}

    def bar_label(self, period):
        return "ppo"

    def validation_tag(self, period, done):
        return f"ppo update {done}"

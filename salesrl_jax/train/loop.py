"""``train_and_evaluate(config, workdir)``: supervised pretraining, then PPO, with checkpoints,
resumption, validation, a JSON-lines metrics log and throughput figures.

Resumption: the latest checkpoint records the `RunPosition` (phase, epoch, next chunk / next
update). The data order is a pure function of ``(seed, epoch)`` and every update is a pure
function of the state, so a run killed at any moment and restarted with the same arguments
finishes with the same parameters and metrics as an uninterrupted run (tested).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import optax
from tqdm import tqdm

from salesrl_jax.arrays import batches as batch_lib
from salesrl_jax.arrays.split import require_held_out
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.io.atomic import write_json_atomic, write_text_atomic
from salesrl_jax.io.lock import claim_output
from salesrl_jax.models.agent import create_agent
from salesrl_jax.models.predict import HOLDOUT
from salesrl_jax.parallel.distributed import start_distributed
from salesrl_jax.parallel.placement import Placement, make_placement
from salesrl_jax.run.checkpoints import Checkpoints, read_meta
from salesrl_jax.run.config import (
    ABSENT,
    NUMERIC_FIELDS,
    OPERATIONAL_FIELDS,
    TrainConfig,
    dotted_fields,
    field_changes,
    program_difference,
    resolution_note,
    resolve_regime,
)
from salesrl_jax.run.recalibration import Recalibration, recalibrate_run
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.metrics_log import MetricsLog, NoLog
from salesrl_jax.train.phases import Members, PPOFinetuning, Pretraining, RunContext, TrainingDiverged
from salesrl_jax.train.position import RunPosition
from salesrl_jax.train.ppo import make_ppo_update
from salesrl_jax.train.state import (
    TrainState,
    adam_linear,
    adamw_schedule,
    averaged,
    fixed_parameters,
    freeze_statistics,
    init_state,
)
from salesrl_jax.train.statistics import fit_statistics
from salesrl_jax.train.supervised import make_train_chunk
from salesrl_jax.train.validation import Validator, make_validator
from salesrl_jax.train.warm_start import warm_start_params

__all__ = ["RunResult", "TrainingDiverged", "check_embedding_space", "train_and_evaluate", "train_seeds_and_evaluate",
           "train_together"]

FEW_VALIDATION_CONVERSATIONS = 100  # fewer make the best checkpoint a noisy choice: said, not silent


@dataclasses.dataclass
class RunResult:
    workdir: Path
    valid: dict[str, float]  # validation metrics of the final model ({} when stopped early)
    best_valid: dict[str, float] | None
    throughput: dict[str, float]
    resumed_from: dict | None
    # The best model's recalibration on the validation split, which the run directory serves (None: not fitted).
    recalibration: Recalibration | None = None

    @property
    def learned(self) -> bool | None:
        """Whether the best checkpoint beats always predicting the training base rate (validation log loss), over all
        turns or at the last turn (`beats_base_rate`)."""
        if not self.best_valid or "base_rate_log_loss" not in self.valid:
            return None
        return beats_base_rate(self.best_valid, self.valid)

    def summary(self) -> str:
        lines = [f"run               {self.workdir}" + (f" (resumed at {self.resumed_from})" if self.resumed_from else "")]
        for name, valid in (("final model", self.valid), ("best checkpoint", self.best_valid)):
            if valid:
                lines.append(f"{name:<18}validation: last-turn AUC {valid['last_turn_auc']:.3f}, accuracy "
                             f"{valid['last_turn_accuracy']:.3f}, Brier {valid['last_turn_brier']:.3f}, "
                             f"ECE {valid['last_turn_ece']:.3f}; all turns log loss {valid['log_loss']:.4f}")
        if self.best_valid == {}:  # finished without a validation split (None: stopped before the end)
            lines.append(f"{'validation':<18}none (data.valid_fraction 0): the run serves its last model")
        if self.learned is not None:
            late = learned_late_only(self.best_valid, self.valid)
            last = (f", last turn {self.valid['base_rate_last_turn_log_loss']:.4f}"
                    if "base_rate_last_turn_log_loss" in self.valid else "")
            verdict = ("beats it at the last turn only (what it learned shows late)" if late
                       else "beats it" if self.learned else "does NOT beat it: it learned nothing")
            lines.append(f"{'base rate':<18}validation: all turns log loss "
                         f"{self.valid['base_rate_log_loss']:.4f}{last}; the best checkpoint {verdict}")
        if self.recalibration is not None:
            fit, (before, after) = self.recalibration.fit, (self.recalibration.before, self.recalibration.after)
            lines.append(f"{'recalibrated':<18}{fit['form']} scaling (slope {fit['slope']:.3f}) fitted on the "
                         f"validation split's {fit['conversations']:,} conversations, all turns: log loss "
                         f"{before['log_loss']:.4f} -> {after['log_loss']:.4f}, ECE {before['ece']:.3f} -> "
                         f"{after['ece']:.3f} (in-sample); the run serves it ({self.recalibration.path})")
        lines += [f"{key:<28}{value:,.1f}" for key, value in self.throughput.items()]
        return "\n".join(lines)


def resolve_text(config: TrainConfig, arrays: TurnArrays) -> TrainConfig:
    """A config whose embedder is ``auto`` takes the kind its arrays were embedded with (the offline hashing or
    n-gram representation `salesrl_jax.embed.config.resolve_embedder` chose for them), with its own dim and
    max_grams (`check_embedding_space` then refuses arrays that differ); the run saves that, so scoring embeds
    alike. Any other config is returned as it is."""
    if config.embedder.kind != "auto":
        return config
    kind = arrays.identity.kind
    if kind not in ("hashing", "ngrams"):
        raise ValueError(f"{arrays.path} holds {arrays.identity.key} embeddings, but embedder.kind auto stands for the "
                         f"offline hashing or ngrams representation: set embedder.kind={kind} (and its model and dim)")
    return dataclasses.replace(config, embedder=config.embedder.resolved(kind))


def dense_text_on_small_real_data(config: TrainConfig, arrays: TurnArrays) -> bool:
    """Whether a run trains the small-data regime on real conversations (no simulator oracle) from the offline
    hashed embeddings, where the n-gram path is the better text representation (measured on two corpora)."""
    counts = arrays.manifest["counts"]
    return config.regime == "small" and arrays.identity.kind == "hashing" and counts.get("turns_with_oracle", 0) == 0


def check_embedding_space(config: TrainConfig, arrays: TurnArrays) -> None:
    """The config's embedder must describe the cache's embedding space (so scoring embeds alike)."""
    identity, wanted = arrays.identity, config.embedder
    kind_ok = identity.kind == wanted.kind or (wanted.kind == "openai" and identity.kind == "azure-openai")
    model_ok = (wanted.kind == "hashing" or wanted.kind == "sentence-transformers" or identity.model == wanted.model
                or (wanted.kind == "ngrams" and identity == wanted.build().identity))
    if not (kind_ok and model_ok and identity.dim == wanted.dim):
        raise ValueError(f"{arrays.path} holds {identity.key} embeddings but the config says embedder.kind="
                         f"{wanted.kind}, embedder.dim={wanted.dim}, embedder.model={wanted.model}: "
                         "set the config's embedder to match, or embed the data again")


def resolve_placement(config: TrainConfig) -> tuple[TrainConfig, Placement]:
    """The run's mesh (`salesrl_jax.parallel`), and the config with ``parallel.devices`` and ``parallel.segments``
    as resolved (what the run saves: the segments decide the packing, so a resume must find the same)."""
    import jax

    p = config.parallel
    placement = make_placement(p.devices, p.segments, p.params, p.fsdp_min_size)
    # Every process of a distributed run saves and compares the same config: the process count, not the id nor
    # the coordinator's address (a resumed run may be launched on other hosts and ports).
    resolved = dataclasses.replace(p, devices=placement.devices, segments=placement.segments,
                                   num_processes=jax.process_count() if p.distributed else p.num_processes,
                                   process_id=-1, coordinator="")
    return dataclasses.replace(config, parallel=resolved), placement


def _on_one_device(validate: Validator, placement: Placement) -> Validator:
    """Validation predicts on one device per process: the parameters are brought there first."""
    return lambda params: validate(placement.to_host_device(params))


_PROGRAMS: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
PROGRAMS_KEPT = 8


def shared_program(key: tuple, build: Callable[[], Callable]) -> Callable:
    """The jitted training program named by ``key``, built once per process (the `PROGRAMS_KEPT` most recent kept).

    Runs whose programs are the same (a crossval's folds, a study's seeds and variants, the tests' runs) reuse one
    function object, and with it JAX's traced and compiled forms of it: a run otherwise traces and lowers each
    program again, 1-2 s apiece even when the compiled binary comes from the disk cache. ``key`` names everything
    the program is built from but the optimizer's numbers, which the program reads from each run's optimizer state
    (`optax.inject_hyperparams`, as for seeds trained together): the model's structure, the optimizer's shape
    (`Optimizers.pretrain_shape`, `ppo_shape`), the phase's static settings, the placement and the number of runs
    trained together."""
    program = _PROGRAMS.get(key)
    if program is None:
        program = _PROGRAMS[key] = build()
        while len(_PROGRAMS) > PROGRAMS_KEPT:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return program


@dataclasses.dataclass(frozen=True)
class Optimizers:
    pretrain: optax.GradientTransformation
    ppo: optax.GradientTransformation
    ppo_enabled: bool
    # What each optimizer's program depends on: the schedule's shape and length (its numbers are injected into the
    # optimizer state, not compiled in). Part of `shared_program`'s keys, so kept beside the optimizers' making.
    pretrain_shape: tuple = ()
    ppo_shape: tuple = ()

    def for_phase(self, phase: str) -> optax.GradientTransformation:
        """The optimizer whose state a checkpoint of ``phase`` holds (a finished run: its last phase's)."""
        if phase == "done":
            return self.ppo if self.ppo_enabled else self.pretrain
        return self.ppo if phase == "ppo" else self.pretrain


def _optimizers(config: TrainConfig, pretrain_steps: int, params) -> Optimizers:
    pre, ppo = config.pretrain, config.ppo
    fixed = fixed_parameters(config.model, params)
    return Optimizers(
        pretrain=freeze_statistics(adamw_schedule(pre.learning_rate, pretrain_steps, pre.weight_decay,
                                                  pre.max_grad_norm, pre.schedule,
                                                  steps_per_epoch=pretrain_steps // pre.epochs), params, fixed),
        ppo=freeze_statistics(adam_linear(ppo.learning_rate, ppo.updates * ppo.epochs * ppo.minibatches,
                                          ppo.max_grad_norm), params, fixed),
        ppo_enabled=ppo.enabled,
        pretrain_shape=("adamw", pretrain_steps, pre.schedule, pretrain_steps // pre.epochs),
        ppo_shape=("adam_linear", ppo.updates * ppo.epochs * ppo.minibatches))


class Resumed(NamedTuple):
    """Where a run starts: from its latest checkpoint, or afresh."""

    state: TrainState
    position: RunPosition
    saved_position: dict | None  # the position as the latest checkpoint recorded it (None: a fresh start)
    stalled: int  # validations in a row without a new best, in the current phase (early stopping)
    best_log_loss: float  # the best validation log loss as of the position (inf: none yet)


def _resume(config: TrainConfig, workdir: Path, checkpoints: Checkpoints, fresh: TrainState,
            optimizers: Optimizers, placement: Placement) -> Resumed:
    """The latest checkpoint's state, position and early-stopping record if the run was started before, else a
    fresh start (``fresh``: pretraining's state keeps the parameters' running average where the run averages, as a
    saved one does; the next phases' do not). The best log loss is the latest's own record: the kept best may be
    newer (`TrainConfig.checkpoint_seconds`); runs saved before the record kept their latest at every validation,
    so their kept best's is the one."""
    if checkpoints.latest.latest_step() is None:
        return Resumed(fresh, RunPosition(phase="pretrain" if config.pretrain.enabled else "ppo"), None, 0, math.inf)
    saved = read_meta(checkpoints.root / "latest")
    before, now = dotted_fields(saved["config"]), dotted_fields(json.loads(config.to_json()))
    changed = field_changes(before, now, ignore=OPERATIONAL_FIELDS)
    if changed:
        shown = ", ".join(f"{k} {before.get(k, ABSENT)} -> {now.get(k, ABSENT)}" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ValueError(f"{workdir} holds a run with a different config ({shown}{more}); use a new workdir or the "
                         f"same config (saved: {workdir / 'checkpoints' / 'latest'})")
    phase = saved["position"]["phase"]
    like = placement.put_state(init_state(fresh.params, optimizers.for_phase(phase), config.seed,
                                          average=phase == "pretrain" and fresh.ema is not None))
    state, meta = checkpoints.restore_latest(like)  # onto the mesh: the arrays' shardings come from ``like``
    if "best_log_loss" in meta:
        best = math.inf if meta["best_log_loss"] is None else float(meta["best_log_loss"])
    else:
        best = checkpoints.best_log_loss()
    return Resumed(state, RunPosition.from_dict(meta["position"]), dict(meta["position"]), meta.get("stalled", 0),
                   best)


def train_and_evaluate(config: TrainConfig, workdir: str | Path, *, progress: bool = True,
                       stop_after_chunks: int | None = None) -> RunResult:
    """Train per ``config`` in ``workdir`` (resuming if it holds a checkpoint) and validate.

    The config is first resolved for the amount of data (`resolve_regime`: small sets train without PPO,
    with smaller minibatches and more epochs); ``config.json`` and the checkpoints hold the resolved one.

    ``stop_after_chunks`` ends the process's work early after that many chunks/updates (tests use it
    to simulate a kill at a chosen point; a real kill -9 is tested too).

    The run claims ``workdir`` (`salesrl_jax.io.lock`): a second run on it fails at once instead of
    interleaving checkpoints.
    """
    return train_seeds_and_evaluate(config, [config.seed], [workdir], progress=progress,
                                    stop_after_chunks=stop_after_chunks)[0]


def train_seeds_and_evaluate(config: TrainConfig, seeds: Sequence[int], workdirs: Sequence[str | Path], *,
                             progress: bool = True, stop_after_chunks: int | None = None) -> list[RunResult]:
    """`train_and_evaluate` of ``config`` with each of ``seeds``, in its own workdir, all trained together in one
    compiled program (`train_together`)."""
    if len(seeds) != len(workdirs) or not seeds:
        raise ValueError(f"one workdir per seed: {len(seeds)} seeds, {len(workdirs)} workdirs")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {list(seeds)}")
    return train_together([dataclasses.replace(config, seed=seed) for seed in seeds], workdirs, progress=progress,
                          stop_after_chunks=stop_after_chunks)


def train_together(configs: Sequence[TrainConfig], workdirs: Sequence[str | Path], *, progress: bool = True,
                   stop_after_chunks: int | None = None) -> list[RunResult]:
    """`train_and_evaluate` of each of ``configs`` in its workdir, all trained together in one compiled program:
    the states stacked on a leading axis and the jitted chunk / PPO update vmapped over it. The configs may differ
    in their seed and in the numeric hyperparameters of `NUMERIC_FIELDS` (learning rates, weight decay, clip
    norms, loss weights, PPO coefficients), which reach the program as arrays: the losses' in `Hyperparams`
    (stacked per run), the optimizers' in their state (`optax.inject_hyperparams`). Anything structural must be
    the same (checked, naming the field).

    Each run keeps its own initialisation, data order, bootstrap weights, hyperparameters, validation, best
    checkpoint and log, and ends with the parameters it reaches alone, to float rounding (tested): a shorter
    epoch is padded with empty minibatches, which move neither the optimizer nor the key. Resumable like one run
    (the checkpoints are saved together). On a mesh of several devices (`salesrl_jax.parallel`) the runs train
    one after another."""
    configs, workdirs = list(configs), [Path(w) for w in workdirs]
    if len(configs) != len(workdirs) or not configs:
        raise ValueError(f"one workdir per config: {len(configs)} configs, {len(workdirs)} workdirs")
    if len({w.resolve() for w in workdirs}) != len(workdirs):
        raise ValueError(f"each run needs its own workdir, got {[str(w) for w in workdirs]}")
    for c in configs[1:]:
        differ = program_difference(configs[0], c)
        if differ:
            raise ValueError(f"runs trained together may differ only in the seed and the numeric hyperparameters "
                             f"({', '.join(NUMERIC_FIELDS)}); {c.name!r} differs from {configs[0].name!r} in "
                             f"{', '.join(differ)}")
    for workdir in workdirs:
        workdir.mkdir(parents=True, exist_ok=True)
    if configs[0].parallel.distributed:  # before anything asks JAX for a device
        p = configs[0].parallel
        start_distributed(p.coordinator, p.num_processes, p.process_id)
    if len(configs) > 1 and not resolve_placement(configs[0])[1].single:
        return [train_and_evaluate(c, w, progress=progress, stop_after_chunks=stop_after_chunks)
                for c, w in zip(configs, workdirs)]
    # In a distributed run every process trains and checkpoints together (orbax writes each array once); process 0
    # alone claims the directories and writes the config, the metrics log and the result.
    with contextlib.ExitStack() as claims:
        if is_primary():
            for workdir in workdirs:
                claims.enter_context(claim_output(workdir))
        return _train_claimed(configs, workdirs, progress, stop_after_chunks)


def is_primary() -> bool:
    """Whether this process writes the run's files (always, unless it is not process 0 of a distributed run)."""
    import jax

    return jax.process_index() == 0


def resolve_run_config(config: TrainConfig, arrays: TurnArrays) -> tuple[TrainConfig, Placement]:
    """The config a run of ``config`` on ``arrays`` trains with and saves (``config.json``, the checkpoints): the
    text space, the regime and the placement resolved; and its mesh."""
    config = resolve_text(config, arrays)
    check_embedding_space(config, arrays)
    config = resolve_regime(config, int(arrays.manifest["counts"]["labelled"]))
    return resolve_placement(config)


def _check_inputs(config: TrainConfig, arrays: TurnArrays) -> None:
    data = config.data
    if dense_text_on_small_real_data(config, arrays):
        warnings.warn(f"{arrays.path}: a small set of real conversations with dense {arrays.identity.kind} embeddings; "
                      "on human transcripts the learned n-gram path measured 0.07-0.09 AUC higher at the last turn "
                      "(docs/benchmarks.md): embed with the default embedder.kind auto (or --embedder.kind ngrams "
                      "--embedder.dim 262144) and train with the default config", stacklevel=3)
    held_out = require_held_out(arrays, data.valid_fraction, data.split_seed)
    if 0 < held_out < FEW_VALIDATION_CONVERSATIONS:
        warnings.warn(f"{arrays.path}: the best checkpoint is chosen on {held_out} validation conversations only "
                      f"(data.valid_fraction {data.valid_fraction}); its choice is noisy: raise data.valid_fraction "
                      "or add data", stacklevel=3)


def _train_claimed(configs: list[TrainConfig], workdirs: list[Path], progress: bool,
                   stop_after_chunks: int | None) -> list[RunResult]:
    # --- inputs, checked before any work ---------------------------------------------------------
    arrays = TurnArrays.open(configs[0].data.train)
    resolved = [resolve_run_config(c, arrays) for c in configs]
    if progress and is_primary():  # what the data changed of the recipe, before any work (config.json holds it)
        tqdm.write(f"{arrays.path}: " + resolution_note(configs[0], resolved[0][0],
                                                        int(arrays.manifest["counts"]["labelled"])), file=sys.stderr)
    configs, placement = [c for c, _ in resolved], resolved[0][1]
    for c in configs[1:]:  # the regime may set numeric fields: the resolved configs must still share one program
        if program_difference(configs[0], c):
            raise ValueError(f"{c.name!r} and {configs[0].name!r} differ in {program_difference(configs[0], c)} "
                             f"once resolved for {arrays.path}: they cannot train together")
    config = configs[0]  # the structure every member shares (they differ in seeds and numeric hyperparameters)
    data, pre, ppo = config.data, config.pretrain, config.ppo
    seeds = [c.seed for c in configs]

    def epoch_plan(seed: int, epoch: int, shuffle: bool = True) -> list[batch_lib.ChunkPlan]:
        return batch_lib.epoch_plan(arrays, "train", data.valid_fraction, data.split_seed, seed, epoch,
                                    pre.rows_per_minibatch, pre.chunk_minibatches, shuffle=shuffle,
                                    segments=placement.segments)

    first_epochs = [epoch_plan(seed, 0) for seed in seeds] if pre.enabled else [[] for _ in seeds]
    if pre.enabled and not first_epochs[0]:
        raise ValueError(f"{arrays.path}: no labelled training conversations ({arrays.labels_note()})")
    _check_inputs(config, arrays)
    for c, workdir in zip(configs, workdirs):
        if is_primary():
            write_text_atomic(workdir / "config.json", c.to_json())

    # --- model, optimizers, and where each run stands ---------------------------------------------
    graphdef, _ = create_agent(config.model, arrays.dim, config.seed, sparse_text=arrays.sparse, abstract=True)
    untrained = [create_agent(config.model, arrays.dim, seed, sparse_text=arrays.sparse)[1] for seed in seeds]
    # Fitted on the train split; the offsets: the wide term's out-of-fold logit of each training turn.
    initial, fitted, offsets = fit_statistics(graphdef, untrained, arrays, data.valid_fraction, data.split_seed)
    warm_source = None
    if config.init_from is not None:  # every member starts from the same trained run (its seed still sets the order)
        initial, warm_source = warm_start_params(initial, config.init_from, arrays, config.model)
    # The schedule's length counts the minibatches of the training split packed in its stored order: the same for
    # every seed, so that seeds share one optimizer (and one compiled program).
    per_step = placement.segments
    pretrain_steps = sum(-(-len(chunk.minibatches) // per_step)
                         for chunk in epoch_plan(0, 0, shuffle=False)) * pre.epochs if pre.enabled else 0
    optimizers = [_optimizers(c, pretrain_steps, initial[0]) for c in configs]  # same structure, own numbers
    checkpoints = [Checkpoints(workdir) for workdir in workdirs]
    starts = []
    # One program serves every member: the running average is kept if any member averages (decay 0 keeps the
    # parameters themselves).
    average = pre.enabled and any(c.pretrain.ema_decay > 0 for c in configs)
    for c, workdir, params, ckpt, opt in zip(configs, workdirs, initial, checkpoints, optimizers):
        fresh = placement.put_state(init_state(params, opt.for_phase("pretrain" if pre.enabled else "ppo"), c.seed,
                                               average=average))
        starts.append(_resume(c, workdir, ckpt, fresh, opt, placement))
    position, resumed_from = starts[0].position, starts[0].saved_position
    if any(start.position != position for start in starts):
        raise ValueError(f"{[str(w) for w in workdirs]}: these runs stopped at different points "
                         f"({[s.position.to_dict() for s in starts]}); finish them one at a time (salesrl train)")
    # Without a validation split (data.valid_fraction 0: train on every conversation, for a length chosen
    # elsewhere) nothing is validated, and each epoch's model replaces the kept one.
    validate = (_on_one_device(make_validator(graphdef, arrays, config, fitted.get(HOLDOUT)), placement)
                if data.valid_fraction > 0 else None)
    contexts = [RunContext(
        checkpoints=ckpt,
        log=MetricsLog(workdir / "metrics.jsonl", position.seq if resumed_from else None,
                       tensorboard=workdir / "tensorboard" if c.tensorboard else None) if is_primary() else NoLog(),
        validate=validate,
        meta={"config": json.loads(c.to_json()), "embedder": dataclasses.asdict(arrays.identity),
              "features": list(arrays.feature_names), "embed_dim": arrays.dim,
              **fitted, **({"init_from": warm_source} if warm_source else {})},
        checkpoint_every=c.checkpoint_every, progress=progress, budget=stop_after_chunks,
        stalled=start.stalled, best_log_loss=start.best_log_loss, checkpoint_seconds=c.checkpoint_seconds)
        for c, workdir, ckpt, start in zip(configs, workdirs, checkpoints, starts)]
    members = Members(contexts, seeds, [f"seed {c.seed}, {w}" for c, w in zip(configs, workdirs)])
    state = members.stack([start.state for start in starts])
    throughput: dict[str, float] = {}
    heads = config.model.ensemble_size  # the heads' fixed bootstrap weights, both phases, per seed

    def stopped() -> list[RunResult]:
        return [RunResult(w, {}, None, throughput, resumed_from) for w in workdirs]

    try:
        # --- supervised pretraining ------------------------------------------------------------
        if position.phase == "pretrain":
            # Dropout's program serves a run without it too (rate 0 keeps every entry, and the key is split alike).
            dropout = any(c.pretrain.input_dropout > 0 for c in configs)
            text_dropout = any(c.pretrain.text_dropout > 0 for c in configs)
            train_chunk = shared_program(
                ("pretrain", graphdef, optimizers[0].pretrain_shape, dropout, text_dropout, average, placement,
                 len(members)),
                lambda: make_train_chunk(graphdef, optimizers[0].pretrain, input_dropout=dropout,
                                         text_dropout=text_dropout, average=average,
                                         placement=placement, members=len(members)))
            plans = [functools.partial(lambda first, seed, epoch: first if epoch == 0 else epoch_plan(seed, epoch),
                                       first, seed) for first, seed in zip(first_epochs, seeds)]
            phase = Pretraining(arrays, train_chunk, members.stack([Hyperparams.pretrain(c) for c in configs]),
                                pre.rows_per_minibatch, pre.chunk_minibatches, pre.epochs, plans=plans,
                                heads=heads, placement=placement, patience=pre.patience,
                                offsets=offsets)
            done = phase.run(members, state, position)
            throughput.update(done.throughput)
            if done.stopped:
                return stopped()
            # From here on the model is the parameters' running average: PPO starts from it (or it is the final
            # model), as the validations of pretraining and its best checkpoint read it.
            state, position = averaged(done.state), done.position
            if ppo.enabled:  # PPO starts with a fresh optimizer (and its own PRNG stream)
                state = members.stack([placement.put_state(init_state(members.pick(state, m).params,
                                                                      optimizers[m].ppo, seed + 1))
                                       for m, seed in enumerate(seeds)])
            position = dataclasses.replace(position, phase="ppo" if ppo.enabled else "done", update=0)
            for ctx in contexts:  # each phase has its own patience
                ctx.stalled = 0
            members.save_latest(state, position)

        # --- PPO fine-tuning -------------------------------------------------------------------
        if position.phase == "ppo":
            schedules = [batch_lib.ppo_plan(arrays, data.valid_fraction, data.split_seed, seed, ppo.updates,
                                            ppo.rows_per_minibatch, ppo.minibatches, segments=placement.segments)
                         for seed in seeds]
            update = shared_program(
                ("ppo", graphdef, optimizers[0].ppo_shape, ppo.epochs, ppo.reward, placement, len(members)),
                lambda: make_ppo_update(graphdef, optimizers[0].ppo, epochs=ppo.epochs, reward_kind=ppo.reward,
                                        placement=placement, members=len(members)))
            phase = PPOFinetuning(arrays, update, members.stack([Hyperparams.ppo(c) for c in configs]),
                                  ppo.rows_per_minibatch, ppo.minibatches,
                                  schedules, validate_every=config.checkpoint_every, heads=heads,
                                  placement=placement, patience=ppo.patience, offsets=offsets)
            done = phase.run(members, state, position)
            throughput.update(done.throughput)
            if done.stopped:
                return stopped()
            state, position = done.state, dataclasses.replace(done.position, phase="done")
            members.save_latest(state, position)

        # --- the final models, the best checkpoints, and the record of each run ------------------
        return [_finish(c, ctx, workdir, members.pick(state, m), position, throughput, resumed_from)
                for m, (c, ctx, workdir) in enumerate(zip(configs, contexts, workdirs))]
    except TrainingDiverged as err:
        raise TrainingDiverged(f"{err} {' '.join(_kept_best(c) for c in checkpoints)}") from None
    finally:
        for ctx, ckpt in zip(contexts, checkpoints):
            ctx.log.close()
            ckpt.close()


def _finish(config: TrainConfig, ctx: RunContext, workdir: Path, state: TrainState, position: RunPosition,
            throughput: dict, resumed_from: dict | None) -> RunResult:
    valid = ctx.validate(state.params) if ctx.validate is not None else {}
    best = ctx.checkpoints.best_meta()
    if best is None:
        raise ValueError(f"{workdir}: the run finished without a best checkpoint in {ctx.checkpoints.root / 'best'}")
    result = RunResult(workdir, valid, best["valid"], throughput, resumed_from)
    if result.learned is False:
        last = (f"; at the last turn {best['valid']['last_turn_log_loss']:.4f} against "
                f"{valid['base_rate_last_turn_log_loss']:.4f}" if "last_turn_log_loss" in best["valid"] else "")
        warnings.warn(f"{workdir}: the best checkpoint's validation log loss {best['valid']['log_loss']:.4f} is "
                      f"no better than always predicting the training base rate "
                      f"({valid['base_rate_log_loss']:.4f}){last}: the model learned nothing usable. Check the "
                      "labels and the learning rate, or add data", stacklevel=3)
    result.recalibration = _recalibrate(config, workdir)  # every process: orbax saves together
    if is_primary():
        write_json_atomic(workdir / "result.json",
                          {"valid": valid, "best_valid": result.best_valid, "throughput": throughput,
                           "better_than_base_rate": result.learned,
                           "recalibration": result.recalibration.fit if result.recalibration else None})
    ctx.log.write({"seq": position.seq, "event": "done", **valid})
    return result


def _recalibrate(config: TrainConfig, workdir: Path):
    """The finished run's recalibration on its validation split (``config.recalibration``; `recalibrate_run`), or
    None where there is none to fit: ``none``, no validation split, or a model that reads its own prediction."""
    if config.recalibration == "none" or config.data.valid_fraction <= 0 or config.model.feed_prediction:
        return None
    return recalibrate_run(workdir, config.recalibration, config.recalibration_level)


def beats_base_rate(model: dict, base: dict) -> bool:
    """Whether validation metrics ``model`` beat always predicting the training base rate (``base``'s
    ``base_rate_*``) in log loss, over all turns or at the last turn. Either will do: on long calls whose outcome
    shows only late, the early turns' average can sit at the base rate while the last turns have learned it (3,000
    calls of about 100 turns: all turns 0.6970 against 0.6955, held-out last-turn AUC 0.646)."""
    if model["log_loss"] < base["base_rate_log_loss"]:
        return True
    return ("last_turn_log_loss" in model and "base_rate_last_turn_log_loss" in base
            and model["last_turn_log_loss"] < base["base_rate_last_turn_log_loss"])


def learned_late_only(model: dict, base: dict) -> bool:
    """`beats_base_rate` at the last turn while not over all turns (what it learned shows late)."""
    return beats_base_rate(model, base) and model["log_loss"] >= base["base_rate_log_loss"]


def _kept_best(checkpoints: Checkpoints) -> str:
    """What a diverged run leaves: whether its best checkpoint learned anything (beats the base rate)."""
    best = checkpoints.best_meta()
    if best is None:
        return "No checkpoint was kept: nothing usable was learned."
    valid = best["valid"]
    if not valid:
        return "The kept checkpoint is the newest before it (the run has no validation split)."
    if "base_rate_log_loss" not in valid:
        return f"The kept best checkpoint has validation log loss {valid['log_loss']:.4f}."
    learned, late = beats_base_rate(valid, valid), learned_late_only(valid, valid)
    verdict = "better than" if learned else "NO better than: it learned nothing usable, compared with"
    last = (f"; at the last turn {valid['last_turn_log_loss']:.4f} against {valid['base_rate_last_turn_log_loss']:.4f}"
            if "base_rate_last_turn_log_loss" in valid else "")
    return (f"The kept best checkpoint (validation log loss {valid['log_loss']:.4f}{last}) is {verdict} always "
            f"predicting the training base rate ({valid['base_rate_log_loss']:.4f})"
            + (", at the last turn only." if late else "."))

"""``train_and_evaluate(config, workdir)``: supervised pretraining, then PPO, with checkpoints,
resumption, validation, a JSON-lines metrics log and throughput figures.

Resumption: the latest checkpoint records the data position (phase, epoch, next chunk / next
update). The data order is a pure function of ``(seed, epoch)`` and every update is a pure
function of the state, so a run killed at any moment and restarted with the same arguments
finishes with the same parameters and metrics as an uninterrupted run (tested).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.eval import metrics as metric_fns
from salesrl_jax.eval.predict import make_predict, predict_arrays
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.train import batches as batch_lib
from salesrl_jax.train.checkpoint import Checkpoints
from salesrl_jax.train.config import TrainConfig
from salesrl_jax.train.hyperparams import Hyperparams
from salesrl_jax.train.ppo import PPOBatch, make_ppo_update
from salesrl_jax.train.state import adam_linear, adamw_schedule, create_agent, init_state
from salesrl_jax.train.supervised import SupervisedBatch, make_train_chunk


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is left untouched."""


def check_embedding_space(config: TrainConfig, arrays: TurnArrays) -> None:
    """The config's embedder must describe the cache's embedding space (so scoring embeds alike)."""
    identity, wanted = arrays.identity, config.embedder
    kind_ok = identity.kind == wanted.kind or (wanted.kind == "openai" and identity.kind == "azure-openai")
    model_ok = wanted.kind == "hashing" or wanted.kind == "sentence-transformers" or identity.model == wanted.model
    if not (kind_ok and model_ok and identity.dim == wanted.dim):
        raise ValueError(f"{arrays.path} holds {identity.key} embeddings but the config says embedder.kind="
                         f"{wanted.kind}, embedder.dim={wanted.dim}, embedder.model={wanted.model}: "
                         "set the config's embedder to match, or embed the data again")


def _supervised_batch(host: batch_lib.PackedBatch) -> SupervisedBatch:
    inputs = TurnInputs(jnp.asarray(host.embeddings), jnp.asarray(host.features), jnp.asarray(host.starts),
                        jnp.asarray(host.valid))
    return SupervisedBatch(inputs, jnp.asarray(host.labels), jnp.asarray(host.segment))


def _ppo_batch(host: batch_lib.PackedBatch) -> PPOBatch:
    supervised = _supervised_batch(host)
    return PPOBatch(supervised.inputs, supervised.labels)


@dataclasses.dataclass
class RunResult:
    workdir: Path
    valid: dict[str, float]  # validation metrics of the final model
    best_valid: dict[str, float] | None
    throughput: dict[str, float]
    resumed_from: dict | None


class _Log:
    """Append-only JSON lines; on resume, lines past the restored position are dropped first."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line and json.loads(line).get("seq", 0) <= keep_until]
            path.write_text("".join(line + "\n" for line in kept))
        elif keep_until is None:
            path.write_text("")
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class _Meter:
    """Items per second of a jitted call, with the first call (compilation) timed apart."""

    def __init__(self):
        self.compile_seconds: float | None = None
        self.items = 0.0
        self.seconds = 0.0

    def timed(self, fn, *args):
        """``fn(*args) -> (state, metrics)``; returns them (metrics on the host) and the seconds taken."""
        start = time.perf_counter()
        new_state, metrics = jax.block_until_ready(fn(*args))
        seconds = time.perf_counter() - start
        return (new_state, jax.device_get(metrics)), seconds

    def add(self, items: float, seconds: float) -> None:
        if self.compile_seconds is None:
            self.compile_seconds = seconds
        else:
            self.items += items
            self.seconds += seconds

    @property
    def rate(self) -> float | None:
        return self.items / self.seconds if self.seconds else None


class _PartCache:
    """The one memory-mapped part in use (consecutive chunks mostly share a part)."""

    def __init__(self, arrays: TurnArrays):
        self.arrays, self.index, self.part = arrays, None, None

    def get(self, index: int):
        if index != self.index:
            self.index, self.part = index, self.arrays.part(index)
        return self.part


def _finite_or_raise(values: dict[str, np.ndarray], where: str) -> None:
    for name, value in values.items():
        if not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))[0]
            raise TrainingDiverged(f"{name} became {np.atleast_1d(value)[bad]} at {where} (minibatch {bad}); "
                                   "stopped without saving: the last good checkpoint is kept. Lower the learning "
                                   "rate or check the data.")


def train_and_evaluate(config: TrainConfig, workdir: str | Path, *, progress: bool = True,
                       stop_after_chunks: int | None = None) -> RunResult:
    """Train per ``config`` in ``workdir`` (resuming if it holds a checkpoint) and validate.

    ``stop_after_chunks`` ends the process's work early after that many chunks/updates (tests use it
    to simulate a kill at a chosen point; a real kill -9 is tested too).
    """
    from tqdm import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    arrays = TurnArrays.open(config.data.train)
    check_embedding_space(config, arrays)
    (workdir / "config.json").write_text(config.to_json())
    graphdef, params = create_agent(config.model, arrays.dim, config.seed)
    predict = make_predict(graphdef)
    checkpoints = Checkpoints(workdir)
    meta_base = {"config": json.loads(config.to_json()), "embedder": dataclasses.asdict(arrays.identity),
                 "features": list(arrays.feature_names), "embed_dim": arrays.dim}

    def validate(params) -> dict[str, float]:
        pred = predict_arrays(predict, params, arrays, split="valid", valid_fraction=config.data.valid_fraction,
                              split_seed=config.data.split_seed, rows=config.eval_rows_per_minibatch)
        last = metric_fns.summary(pred.prediction[pred.last], pred.outcome[pred.last])
        return {"log_loss": metric_fns.log_loss(pred.prediction, pred.outcome),
                "brier": metric_fns.brier(pred.prediction, pred.outcome),
                "last_turn_auc": last["auc"], "last_turn_accuracy": last["accuracy"],
                "last_turn_brier": last["brier"], "last_turn_ece": last["ece"], "conversations": len(pred.ids)}

    # --- where are we? -----------------------------------------------------------------------
    pre, ppo = config.pretrain, config.ppo
    plans = {}
    if pre.enabled:
        plans[0] = batch_lib.epoch_plan(arrays, "train", config.data.valid_fraction, config.data.split_seed,
                                        config.seed, 0, pre.rows_per_minibatch, pre.chunk_minibatches)
        if not plans[0]:
            raise ValueError(f"{arrays.path}: no labelled training conversations")
    data = config.data
    if data.valid_fraction > 0 and not any(
            np.any(batch_lib.validation_mask(part.ids, data.valid_fraction, data.split_seed) & (part.outcome >= 0))
            for part in arrays.iter_parts()):
        # The usual way to get here: these arrays were carved out of a larger set by the same seeded id
        # hash (a held-out test set split off first), so none of their ids falls below the threshold.
        raise ValueError(f"{arrays.path}: data.valid_fraction {data.valid_fraction} with data.split_seed "
                         f"{data.split_seed} holds out no labelled conversation (if these arrays were split off a "
                         f"larger set with the same seed, pick another --data.split-seed)")
    pretrain_steps = sum(len(c.minibatches) for c in plans.get(0, [])) * pre.epochs
    pre_opt = adamw_schedule(pre.learning_rate, pretrain_steps, pre.weight_decay, pre.max_grad_norm)
    ppo_opt = adam_linear(ppo.learning_rate, ppo.updates * ppo.epochs * ppo.minibatches, ppo.max_grad_norm)
    position = {"phase": "pretrain" if pre.enabled else "ppo", "epoch": 0, "chunk": 0, "update": 0, "seq": 0}
    state = init_state(params, pre_opt if pre.enabled else ppo_opt, config.seed)
    resumed_from = None
    latest_step = checkpoints.latest.latest_step()
    if latest_step is not None:
        from salesrl_jax.train.checkpoint import read_meta

        saved = read_meta(checkpoints.root / "latest")
        if saved["config"] != json.loads(config.to_json()):
            raise ValueError(f"{workdir} holds a run with a different config; use a new workdir or the same config "
                             f"(saved: {workdir / 'checkpoints' / 'latest'})")
        phase = saved["position"]["phase"]
        like = init_state(params, ppo_opt if phase in ("ppo", "done") else pre_opt, config.seed)
        state, meta = checkpoints.restore_latest(like)
        position = dict(meta["position"])
        resumed_from = dict(position)
    log = _Log(workdir / "metrics.jsonl", position["seq"] if resumed_from else None)
    throughput: dict[str, float] = {}
    work_done = 0

    def save_latest() -> None:
        checkpoints.save_latest(state, {**meta_base, "position": position})

    def end_of_period(tag: str) -> dict[str, float]:
        valid = validate(state.params)
        improved = checkpoints.save_best(state, {**meta_base, "position": position, "valid": valid},
                                         valid["log_loss"])
        log.write({"seq": position["seq"], "event": "validation", "at": tag, **valid, "best": improved})
        return valid

    try:
        # --- supervised pretraining ----------------------------------------------------------
        if position["phase"] == "pretrain":
            train_chunk = make_train_chunk(graphdef, pre_opt)
            hp = Hyperparams.pretrain(config)
            meter, parts = _Meter(), _PartCache(arrays)
            for epoch in range(position["epoch"], pre.epochs):
                plan = plans[0] if epoch == 0 else batch_lib.epoch_plan(
                    arrays, "train", config.data.valid_fraction, config.data.split_seed, config.seed, epoch,
                    pre.rows_per_minibatch, pre.chunk_minibatches)
                bar = tqdm(total=len(plan), initial=position["chunk"], unit="chunk", desc=f"pretrain {epoch + 1}/{pre.epochs}",
                           disable=None if progress else True, dynamic_ncols=True)
                for index in range(position["chunk"], len(plan)):
                    chunk = plan[index]
                    host = batch_lib.gather_packed(parts.get(chunk.part), chunk.minibatches, pre.rows_per_minibatch,
                                                   pre.chunk_minibatches)
                    (new_state, m), seconds = meter.timed(train_chunk, state, _supervised_batch(host), hp)
                    meter.add(float(m.turns.sum()), seconds)
                    where = f"pretrain epoch {epoch + 1}, chunk {index + 1}, optimizer step {int(state.step) + 1}"
                    _finite_or_raise({"loss": m.loss, "grad_norm": m.grad_norm}, where)
                    state = new_state
                    position.update(epoch=epoch, chunk=index + 1, seq=position["seq"] + 1)
                    used = m.turns > 0
                    log.write({"seq": position["seq"], "event": "pretrain", "epoch": epoch, "chunk": index,
                               "step": int(state.step), "loss": m.loss[used].tolist(),
                               "policy_bce": m.policy_bce[used].tolist(), "ensemble_bce": m.ensemble_bce[used].tolist(),
                               "grad_norm": m.grad_norm[used].tolist(), "turns": int(m.turns.sum()),
                               "seconds": seconds})
                    bar.set_postfix(loss=f"{float(m.policy_bce[used].mean()):.4f}",
                                    turns_s=f"{meter.rate:,.0f}" if meter.rate else "-")
                    bar.update(1)
                    work_done += 1
                    if position["chunk"] % config.checkpoint_every == 0 and index + 1 < len(plan):
                        save_latest()
                    if stop_after_chunks is not None and work_done >= stop_after_chunks:
                        save_latest()
                        return RunResult(workdir, {}, None, throughput, resumed_from)
                bar.close()
                position.update(epoch=epoch + 1, chunk=0)
                end_of_period(f"pretrain epoch {epoch + 1}")
                save_latest()
            if meter.compile_seconds is not None:
                throughput["pretrain_compile_s"] = meter.compile_seconds
            if meter.rate:
                throughput["pretrain_turns_per_s"] = meter.rate
            if ppo.enabled:
                position.update(phase="ppo", update=0)
                state = init_state(state.params, ppo_opt, config.seed + 1)
                save_latest()
            else:
                position.update(phase="done")
                save_latest()

        # --- PPO fine-tuning -----------------------------------------------------------------
        if position["phase"] == "ppo":
            update = make_ppo_update(graphdef, ppo_opt, epochs=ppo.epochs, reward_kind=ppo.reward)
            hp = Hyperparams.ppo(config)
            schedule = batch_lib.ppo_plan(arrays, config.data.valid_fraction, config.data.split_seed, config.seed,
                                          ppo.updates, ppo.rows_per_minibatch, ppo.minibatches)
            bar = tqdm(total=ppo.updates, initial=position["update"], unit="update", desc="ppo",
                       disable=None if progress else True, dynamic_ncols=True)
            meter, parts = _Meter(), _PartCache(arrays)
            for u in range(position["update"], ppo.updates):
                planned = schedule[u]
                host = batch_lib.gather_packed(parts.get(planned.part), planned.minibatches, ppo.rows_per_minibatch,
                                               ppo.minibatches)
                (new_state, m), seconds = meter.timed(update, state, _ppo_batch(host), hp)
                meter.add(float(m.env_steps), seconds)
                _finite_or_raise({"loss": m.train.loss, "value_loss": m.train.value_loss},
                                 f"PPO update {u + 1}")
                state = new_state
                position.update(update=u + 1, seq=position["seq"] + 1)
                log.write({"seq": position["seq"], "event": "ppo", "update": u,
                           "mean_reward": float(m.mean_reward), "prediction_brier": float(m.prediction_brier),
                           "env_steps": int(m.env_steps), "seconds": seconds,
                           **{k: float(v) for k, v in m.train._asdict().items()}})
                bar.set_postfix(reward=f"{float(m.mean_reward):.4f}", brier=f"{float(m.prediction_brier):.4f}",
                                steps_s=f"{meter.rate:,.0f}" if meter.rate else "-")
                bar.update(1)
                work_done += 1
                if position["update"] % config.checkpoint_every == 0 or position["update"] == ppo.updates:
                    end_of_period(f"ppo update {position['update']}")
                    save_latest()
                if stop_after_chunks is not None and work_done >= stop_after_chunks:
                    save_latest()
                    return RunResult(workdir, {}, None, throughput, resumed_from)
            bar.close()
            if meter.compile_seconds is not None:
                throughput["ppo_compile_s"] = meter.compile_seconds
            if meter.rate:
                throughput["ppo_env_steps_per_s"] = meter.rate
            position.update(phase="done")
            save_latest()

        valid = validate(state.params)
        best = checkpoints.best_meta()
        result = RunResult(workdir, valid, best["valid"] if best else None, throughput, resumed_from)
        (workdir / "result.json").write_text(json.dumps(
            {"valid": valid, "best_valid": result.best_valid, "throughput": throughput}, indent=1))
        log.write({"seq": position["seq"], "event": "done", **valid})
        return result
    finally:
        log.close()
        checkpoints.close()

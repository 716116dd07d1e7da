"""The typed, documented configuration of a training run (``salesrl train --help`` prints it).

Structural fields (the model's components, sizes, which phases run) are static: they shape the
compiled program. The numeric hyperparameters (`NUMERIC_FIELDS`) reach the jitted functions as arrays:
the losses' (ensemble weight, PPO clip, value and entropy coefficients, gamma, lambda, dropout rate) in
`salesrl_jax.train.hyperparams.Hyperparams`, the optimizers' (learning rates, weight decay, clip norms)
in the optimizer state (``optax.inject_hyperparams``; the schedule's shape is structural). One compiled
update serves every setting, and runs that differ only in them train together, vmapped
(`salesrl_jax.train.loop.train_together`, a study's `Sweep`).

A config file is a Python file with ``get_config() -> TrainConfig``; a variant imports the
default and overrides a few dotted fields (`with_overrides`; see ``configs/``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from salesrl_jax.embed.config import SMALL_DATA_CONVERSATIONS, EmbedderConfig
from salesrl_jax.models.config import ModelConfig


def _positive(config, prefix: str, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{prefix}.{name} must be > 0, got {getattr(config, name)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which cached arrays to train on, and the validation split."""

    # --data as well, the flag every other subcommand reads its input from
    train: Annotated[Path, tyro.conf.arg(aliases=("--data",))] = Path("runs/demo/arrays")
    """Cached arrays from `salesrl embed` (the training set; validation is held out of it)."""
    valid_fraction: float = 0.1
    """Share of conversations held out for validation, chosen by a seeded hash of the id. 0: none (train on every
    conversation for the planned epochs; nothing is validated, no early stopping, no recalibration, no confidence
    fit, and the run serves its last model). Below 20,000 labelled conversations the small-data regime sets 0.2
    (`TrainConfig.regime`: pin regime large to keep what is given here)."""
    split_seed: int = 0
    """Seed of the validation split (independent of the training seed)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"data.valid_fraction must be in [0, 1), got {self.valid_fraction}")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Supervised pretraining: per-turn binary cross-entropy against the conversation's outcome."""

    enabled: bool = True
    """Run this phase."""
    epochs: int = 4
    """Passes over the training split."""
    rows_per_minibatch: int = 2048
    """Turn slots per packed minibatch (whole conversations, so at least the longest conversation)."""
    chunk_minibatches: int = 16
    """Minibatches per jitted `lax.scan` call (the host gathers one chunk while it trains)."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate (see schedule)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """cosine: a 5% warm-up, then cosine decay to 5% over the planned epochs; constant: a warm-up over 5% of one
    epoch, then the peak rate (independent of the planned epochs, so early stopping picks a training length)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    ensemble_weight: float = 1.0
    """Weight of the ensemble heads' bootstrap-weighted cross-entropy in the loss."""
    input_dropout: float = 0.0
    """Share of turn-embedding entries zeroed (the rest scaled up) in each training step: dropout on the
    input, which for hashed bag-of-words embeddings acts as an adaptive L2 penalty (Wager et al., 2013)."""
    text_dropout: float = 0.8
    """Share of training conversations read without their text in each step (every turn's embedding zero, or every
    n-gram bag empty), their features and history kept; not rescaled, so a dropped conversation reads as absent
    text, not as noise. Modality dropout (Neverova et al., ModDrop, 2015): the words, which can tell any
    conversation apart, cannot crowd out the features and the history, so the model still predicts where a
    conversation's words are unlike its training data's. Whole conversations, not single turns: a model trained
    with turns dropped at random never sees the all-text conversations it scores, and its early turns came out
    biased (ECE 0.025-0.039 against 0.010-0.020).
    Measured (docs/benchmarks.md, "Text dropout"): on 20k simulator conversations, 0.8 against 0 raises the AUC at
    turns 2-12 by 0.04-0.06 (where industries differ in what works: 0.02-0.03, and 0.04-0.05 on three held-out
    ones), and the validation log loss prefers it to 0.5 and to 0; on the 100k benchmark it moves no reported AUC
    by more than 0.005, and on both real development sets by at most 0.013. 0: text in every step."""

    ema_decay: float = 0.0
    """Decay of the parameters' exponential moving average (Polyak averaging), per optimizer step, capped by
    (1 + t) / (10 + t) early on, updated at the end of each chunk (`salesrl_jax.train.state.average_decay`); 0:
    none, the parameters themselves. With an average, validation, the best checkpoint, the PPO phase's start and
    the final model read it, not the last step's parameters. The small-data regime sets 0.99: at its constant rate
    and small minibatches the last steps of an epoch move the model by noise, the validation loss jumps between
    epochs and early stopping keeps a noisy model; averaging does the annealing the constant rate does not (2,000
    simulator conversations: AUC +0.011 at turns 2-12, ECE 0.027-0.041 against 0.049-0.100; real corpora: AUC
    level, last-turn ECE 0.030 and 0.026 against 0.045 and 0.026). Under the cosine schedule, which anneals, it
    changed nothing (docs/benchmarks.md, "Averaged parameters")."""

    patience: int = 3
    """Stop pretraining after this many epochs in a row whose validation found no new best checkpoint (early
    stopping by validation log loss; the best checkpoint is kept either way). 0: train every planned epoch."""

    last_turn_share: float = 0.0
    """Share of the loss on each conversation's last turn: loss = (1 - s) mean BCE over all turns + s mean BCE over
    last turns. 0 weighs every prefix alike; larger values pull training toward whole conversations, as a
    whole-dialogue classifier. Only the loss reads which turn is last, never the model's input."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.last_turn_share < 1.0:
            raise ValueError(f"pretrain.last_turn_share must be in [0, 1), got {self.last_turn_share}")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"pretrain.input_dropout must be in [0, 1), got {self.input_dropout}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"pretrain.text_dropout must be in [0, 1), got {self.text_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"pretrain.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.patience < 0:
            raise ValueError(f"pretrain.patience must be >= 0 (0: never stop early), got {self.patience}")
        _positive(self, "pretrain", ("epochs", "rows_per_minibatch", "chunk_minibatches", "learning_rate"))


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO fine-tuning: the action is a probability estimate, the reward a proper scoring rule of it."""

    enabled: bool = True
    """Run this phase."""
    updates: int = 40
    """PPO updates (each: one rollout batch, then epochs x minibatches of gradient steps)."""
    rows_per_minibatch: int = 2048
    """Turn slots per packed minibatch (whole conversations, each one episode)."""
    epochs: int = 4
    """Passes over each rollout batch."""
    minibatches: int = 4
    """Packed minibatches per rollout batch (so a batch holds minibatches x rows_per_minibatch turns)."""
    reward: Literal["brier", "log"] = "brier"
    """Scoring rule of the estimate a against the outcome y: brier 1 - (a - y)^2; log y log a + (1 - y) log(1 - a).
    Both are strictly proper: the best policy reports the true conditional probability."""
    learning_rate: float = 3e-4
    """Adam learning rate (linear decay to 0 over the phase)."""
    clip_eps: float = 0.2
    """PPO ratio clip."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 1e-3
    """Weight of the policy entropy bonus."""
    gamma: float = 0.0
    """Discount. An estimate does not change later rewards, so gamma > 0 adds only variance; kept configurable."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    patience: int = 3
    """Stop PPO after this many validations in a row (one every checkpoint_every updates) without a new best
    checkpoint. Measured on 20k synthetic conversations: fine-tuning never beat the pretrained checkpoint, and PPO
    from scratch peaked at update 64 of 400 and then only worsened (docs/benchmarks.md). 0: run every update."""
    ensemble_weight: float = 1.0
    """The ensemble heads keep learning by cross-entropy on a stop-gradient state (they never train the encoder here)."""

    def __post_init__(self) -> None:
        _positive(self, "ppo", ("updates", "rows_per_minibatch", "epochs", "minibatches", "learning_rate"))
        if self.patience < 0:
            raise ValueError(f"ppo.patience must be >= 0 (0: never stop early), got {self.patience}")


@dataclasses.dataclass(frozen=True)
class ConfidenceConfig:
    """The confidence module (`salesrl_jax.models.confidence`), fitted after training on the validation split."""

    enabled: bool = True
    """Fit it when `salesrl train` finishes (`salesrl confidence` fits or refits it for any model)."""
    bank_size: int = 512
    """Encoder states of training turns kept as the reference bank (nearest-neighbour distance, brute force)."""
    text_bank_size: int = 8192
    """Distinct training turn embeddings kept as the text bank (dense text; n-gram models use unseen-gram mass
    instead). The bank's size, more than its width, decides how well unseen vocabulary stands out; each turn reads
    it whole (text_bank_size x text_dim floats): the main cost of the module (docs/benchmarks.md)."""
    text_dim: int = 64
    """Dimensions of the seeded random projection the text bank compares turns in."""
    familiarity_level: float = 0.01
    """alpha: confidence falls toward 0 (and the error estimate toward an uninformed one) only for states more novel
    than all but this share of calibration turns (familiarity below alpha). Larger values flag more, and cost
    in-distribution ranking: 0.05 demotes 5% of typical turns, at random as far as their error goes
    (docs/benchmarks.md)."""
    interval_level: float = 0.9
    """Nominal coverage of the per-turn interval [p_low, p_high]."""
    low_threshold: float = 0.55
    """low_confidence flags turns whose confidence is below this: for a familiar state, an estimated RMS error of
    the probability above 0.45 (a coin flip's is 0.5); and any state unlike the calibration data."""
    seed: int = 0
    """Seed of the bank's sample of training turns."""

    def __post_init__(self) -> None:
        _positive(self, "confidence", ("bank_size", "text_bank_size", "text_dim"))
        for name in ("familiarity_level", "interval_level", "low_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"confidence.{name} must be in (0, 1), got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """Where training runs: a `jax.sharding.Mesh` with one axis, ``data`` (`salesrl_jax.parallel`).

    Each packed minibatch is laid out as ``segments`` equal slices of whole conversations, and the slices are
    sharded over the mesh's devices: every device scans only its own conversations, and XLA adds the gradient
    all-reduce. The layout, not the device count, decides the numbers: a run on 1 device with segments=8 and
    one on 8 devices give the same parameters to float rounding (tested)."""

    devices: int = 0
    """Devices on the mesh's data axis: 0 takes every device JAX sees (all processes' when distributed)."""
    segments: int = 0
    """Slices per packed minibatch (a multiple of the device count; 0: one per device). It changes the packing,
    so set it explicitly to compare runs across device counts; rows_per_minibatch must be a multiple of it."""
    params: Literal["replicated", "fsdp"] = "replicated"
    """replicated: every device holds the parameters and optimizer state. fsdp: each array of at least
    fsdp_min_size elements is split over the devices along its largest divisible axis (parameters, and Adam's
    moments with them), gathered by XLA where a layer needs it: for models larger than one device's memory."""
    fsdp_min_size: int = 2 ** 16
    """Arrays smaller than this stay replicated under params=fsdp (splitting them costs more than it saves)."""
    distributed: bool = False
    """Start `jax.distributed` before training (several processes, one or more hosts). The coordinator, process
    count and id come from coordinator / num_processes / process_id below or, when left unset, from JAX's own
    cluster detection (Slurm, Open MPI, Kubernetes JobSet) and its JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID variables. See docs/distributed.md."""
    coordinator: str = ""
    """host:port of process 0's coordinator service (distributed runs)."""
    num_processes: int = 0
    """Processes in a distributed run (0: from the environment)."""
    process_id: int = -1
    """This process's id in a distributed run (-1: from the environment)."""

    def __post_init__(self) -> None:
        if self.devices < 0 or self.segments < 0:
            raise ValueError(f"parallel.devices and parallel.segments must be >= 0, got {self.devices}, "
                             f"{self.segments}")
        if self.devices and self.segments and self.segments % self.devices:
            raise ValueError(f"parallel.segments ({self.segments}) must be a multiple of parallel.devices "
                             f"({self.devices})")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: data, model, phases, checkpoints."""

    name: str = "default"
    """A label for reports."""
    seed: int = 0
    """Seed of initialisation, data order, bootstrap weights and PPO sampling."""
    embedder: EmbedderConfig = EmbedderConfig()
    """The embedding space; must match the cached arrays' (checked), and is what `salesrl score` embeds with."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    ppo: PPOConfig = PPOConfig()
    confidence: ConfidenceConfig = ConfidenceConfig()
    parallel: ParallelConfig = ParallelConfig()
    checkpoint_every: int = 8
    """Save the latest checkpoint (what a killed run resumes from) every this many chunks / PPO updates and at each
    validation, once `checkpoint_seconds` have passed since the last save (and at every phase end)."""
    checkpoint_seconds: float = 60.0
    """Within a phase, save the latest checkpoint at most this often: at the first validation or `checkpoint_every`
    boundary this many seconds after the last save. A kill loses at most about this much training, which the
    resumed run replays to the same result. In the small-data regime an epoch of PersuasionForGood takes about a
    second and a save of the n-gram model's training state (its parameters, their running average and Adam's two
    moments: 55 MB) a third of one: saved every epoch, it took about a quarter of a crossval fold's training
    (docs/benchmarks.md, session 38). 0: at every validation and boundary."""
    eval_rows_per_minibatch: int = 4096
    """Rows per minibatch when predicting for validation and evaluation."""
    tensorboard: bool = False
    """Also write the run's scalars to WORKDIR/tensorboard (TensorBoard event files; needs the tensorboard
    extra: pip install 'salesrl-jax[tensorboard]')."""
    init_from: Path | None = None
    """A trained run (directory from `salesrl train`, or one of its checkpoint directories) whose parameters start
    this one instead of a random initialisation: for example training on simulator conversations, then fine-tuning
    on a small real set. Its model settings, embedding space and turn features must be this run's; fitted
    statistics (the n-gram idf) are fitted on this run's training split."""
    regime: Literal["auto", "small", "large"] = "auto"
    """How the recipe adapts to the amount of data (`resolve_regime`): auto is small below 20,000 labelled
    conversations (SMALL_DATA_CONVERSATIONS), else large, with pretrain.epochs raised so that pretraining reads
    200,000 training conversations (MIN_CONVERSATION_READS; 12 epochs at 20k, 5 at 50k, the given 4 from about
    56k); small sets the fields of SMALL_DATA_OVERRIDES whatever this config says; large (pinned) keeps every
    field as given. `salesrl train` prints what the regime changed."""
    recalibration: Literal["temperature", "platt", "none"] = "temperature"
    """How the finished run recalibrates its best model's probabilities on the validation split, served by the run
    directory as checkpoints/calibrated (`salesrl_jax.run.recalibration.recalibrate_run`): temperature, the logit's
    slope alone (a slope under 1 pulls every prediction toward 0.5; what `salesrl crossval` measures); platt, slope
    and intercept; none.
    Skipped without a validation split and for model.feed_prediction, whose state reads its own prediction."""
    recalibration_level: float = 0.05
    """The run recalibrates only where its validation split shows the best model miscalibrated: the Wald test of the
    identity map, robust to a conversation's turns being correlated, at this level
    (`salesrl_jax.run.recalibration.miscalibration_test`); 1 recalibrates whatever the split shows."""

    def __post_init__(self) -> None:
        if not 0.0 < self.recalibration_level <= 1.0:
            raise ValueError(f"recalibration_level must be in (0, 1], got {self.recalibration_level}")
        if not (self.pretrain.enabled or self.ppo.enabled):
            raise ValueError("at least one of pretrain.enabled and ppo.enabled must be true")
        segments = self.parallel.segments
        for name, rows in (("pretrain", self.pretrain.rows_per_minibatch), ("ppo", self.ppo.rows_per_minibatch)):
            if segments and rows % segments:
                raise ValueError(f"{name}.rows_per_minibatch ({rows}) must be a multiple of parallel.segments "
                                 f"({segments}): each minibatch is cut into that many equal slices")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if not self.checkpoint_seconds >= 0:
            raise ValueError(f"checkpoint_seconds must be >= 0, got {self.checkpoint_seconds}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str, indent=1)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict`` (see `config_from_dict`)."""
        return config_from_dict(raw)


SMALL_DATA_OVERRIDES: dict[str, Any] = {
    # Measured on PersuasionForGood and CaSiNo (docs/benchmarks.md): PPO never gives the best checkpoint on
    # small real sets and costs most of the time, so it is off.
    "ppo.enabled": False,
    # 2,048-row minibatches make an epoch of a few hundred conversations a handful of optimizer steps:
    # smaller ones give enough steps, and more epochs with the best checkpoint kept (early stopping by the
    # inner split's log loss) let the data decide how long to train.
    "pretrain.rows_per_minibatch": 256,
    "pretrain.chunk_minibatches": 8,
    "pretrain.epochs": 12,
    "pretrain.learning_rate": 1e-3,
    "pretrain.weight_decay": 1e-2,
    # With early stopping choosing the length, the rate must not depend on how many epochs were planned.
    "pretrain.schedule": "constant",
    # A small inner split's log loss is noisy: on PersuasionForGood (fold 2 of `salesrl crossval`) epochs 2-4
    # did not beat epoch 1 and epoch 7 was the best, so the default patience of 3 would have stopped at epoch 4.
    # 4 keeps every fold's best epoch on both development corpora; 5 leaves a margin.
    "pretrain.patience": 5,
    # A validation split large enough to choose a checkpoint on (10% of 800 conversations is 80).
    "data.valid_fraction": 0.2,
    # The constant rate does not anneal: the parameters' running average does, so the epochs' validations (and the
    # checkpoint early stopping keeps) read a model without the last minibatches' noise (PretrainConfig.ema_decay).
    "pretrain.ema_decay": 0.99,
}


# On top of SMALL_DATA_OVERRIDES when the text is sparse n-grams (embedder.kind ngrams): the embedding bag has
# 2^18 rows, most seen in a handful of conversations, and Adam moves every row it sees by about the learning rate
# whatever its gradient, so rare grams are memorised within two epochs at 1e-3 (measured on PersuasionForGood:
# inner-split log loss 0.68 after epoch 1, 2.0 after 12). A smaller step, stronger weight decay and dropping half
# of each turn's grams (word dropout) keep the best epoch later and better (docs/benchmarks.md, "n-gram path").
SPARSE_SMALL_DATA_OVERRIDES: dict[str, Any] = {
    "pretrain.learning_rate": 1e-4,
    "pretrain.weight_decay": 0.1,
    "pretrain.input_dropout": 0.5,
}


MIN_CONVERSATION_READS = 200_000
"""With ``regime="auto"`` on large data, supervised pretraining plans at least this many reads of a training
conversation: `resolve_regime` raises ``pretrain.epochs`` to ``ceil(MIN_CONVERSATION_READS / training
conversations)``. The default 4 epochs of 2,048-row minibatches are a few hundred optimizer steps on 20k
conversations, and the model stops short there (docs/benchmarks.md, "How long to pretrain"): validation log loss
0.5947 after 4 epochs, 0.5885 after 8, 0.5881 after 12, and the early turns' ECE halves. From 50k conversations the
4 epochs are enough. A pinned ``regime="large"`` keeps the epochs as given."""


def planned_epochs(config: TrainConfig, labelled_conversations: int) -> int:
    """``pretrain.epochs``, raised so that pretraining reads `MIN_CONVERSATION_READS` training conversations (the
    labelled ones less the validation split) on large data."""
    training = max(1, round(labelled_conversations * (1.0 - config.data.valid_fraction)))
    return max(config.pretrain.epochs, math.ceil(MIN_CONVERSATION_READS / training))


def resolve_regime(config: TrainConfig, labelled_conversations: int) -> TrainConfig:
    """The config a run uses on ``labelled_conversations`` (before the validation split): with ``regime="auto"``,
    small below `SMALL_DATA_CONVERSATIONS` (the fields of `SMALL_DATA_OVERRIDES` set, and those of
    `SPARSE_SMALL_DATA_OVERRIDES` for sparse n-gram text), else large (``pretrain.epochs`` raised to
    `planned_epochs`); a pinned ``regime="large"`` keeps every field as given.
    The resolved config, with ``regime`` small or large, is what the run saves and resumes with."""
    regime = config.regime
    if regime == "auto":
        regime = "small" if labelled_conversations < SMALL_DATA_CONVERSATIONS else "large"
        if regime == "large":
            return with_overrides(config, {"pretrain.epochs": planned_epochs(config, labelled_conversations),
                                           "regime": "large"})
    if regime == "large":
        return dataclasses.replace(config, regime="large")
    overrides = dict(SMALL_DATA_OVERRIDES)
    if config.embedder.kind == "ngrams":
        overrides.update(SPARSE_SMALL_DATA_OVERRIDES)
    if not config.pretrain.enabled:  # a PPO-only run (an ablation): its only phase stays on
        overrides.pop("ppo.enabled")
    return with_overrides(config, {**overrides, "regime": "small"})


def resolution_note(given: TrainConfig, resolved: TrainConfig, labelled_conversations: int) -> str:
    """One line saying what a run changed of ``given`` for its data (`resolve_regime`, the text space): the regime
    and each field set, old and new value."""
    before, after = dotted_fields(json.loads(given.to_json())), dotted_fields(json.loads(resolved.to_json()))
    changed = [f"{key} {before.get(key, ABSENT)} -> {after.get(key, ABSENT)}"
               for key in field_changes(before, after, ignore=("regime",))]
    return (f"{labelled_conversations:,} labelled conversations: regime {resolved.regime}"
            + (f" ({given.regime} given)" if given.regime != resolved.regime else "")
            + ("; " + ", ".join(changed) if changed else "; every field as given"))


NUMERIC_FIELDS: tuple[str, ...] = (
    "pretrain.learning_rate", "pretrain.weight_decay", "pretrain.max_grad_norm", "pretrain.ensemble_weight",
    "pretrain.input_dropout", "pretrain.text_dropout", "pretrain.last_turn_share", "pretrain.ema_decay",
    "ppo.learning_rate", "ppo.max_grad_norm", "ppo.ensemble_weight", "ppo.clip_eps", "ppo.value_coef",
    "ppo.entropy_coef", "ppo.gamma", "ppo.gae_lambda")
"""The numeric hyperparameters that reach the compiled programs as arrays: the losses' (`Hyperparams`) and the
optimizers' (held in the optimizer state by ``optax.inject_hyperparams``). Runs whose configs differ only in these
and the seed train together in one program, vmapped over them (`salesrl_jax.train.loop.train_together`), and a
study sweeps them (`salesrl_jax.run.study.Sweep`)."""

# Per run, outside the compiled programs:
BOOKKEEPING_FIELDS = ("seed", "name", "tensorboard", "recalibration", "recalibration_level")

OPERATIONAL_FIELDS = ("checkpoint_seconds",)
"""Fields that change how a run goes, not what it computes: a run resumes under the value given now, whatever it
was saved with (or without: a run saved before the field existed). Any other difference from the saved config is
refused."""


ABSENT = "absent"  # how `field_changes` and its callers show a field one of two configs lacks (an older save)


def field_changes(before: dict[str, Any], after: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted fields (`dotted_fields`) whose values differ between two flattened configs, sorted; a field
    present in one only differs."""
    return sorted(key for key in set(before) | set(after)
                  if key not in ignore and before.get(key, ABSENT) != after.get(key, ABSENT))


def dotted_fields(raw: dict) -> dict[str, Any]:
    """A config as saved (``json.loads(config.to_json())``), flattened to its dotted fields."""
    flat: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(raw, "")
    return flat


def program_fields(config: TrainConfig) -> dict[str, Any]:
    """The flattened (dotted) fields that shape a run's compiled programs: all but `NUMERIC_FIELDS` and the
    per-run bookkeeping (seed, name, TensorBoard)."""
    flat = dotted_fields(json.loads(config.to_json()))
    for dotted in (*NUMERIC_FIELDS, *BOOKKEEPING_FIELDS):
        flat.pop(dotted)
    return flat


def program_difference(a: TrainConfig, b: TrainConfig) -> list[str]:
    """The structural fields in which ``a`` and ``b`` differ (empty: they can train in one program)."""
    fa, fb = program_fields(a), program_fields(b)
    return sorted(k for k in fa if fa[k] != fb[k])


def config_from_dict(raw: dict) -> TrainConfig:
    """Inverse of ``dataclasses.asdict`` (a config saved beside checkpoints, as JSON), driven by the field
    types: paths become `Path`, lists become tuples, an unknown field is an error naming it."""
    import dacite

    try:
        return dacite.from_dict(TrainConfig, raw, config=dacite.Config(cast=[Path, tuple], strict=True))
    except dacite.DaciteError as err:
        raise ValueError(f"invalid saved config: {err}") from None


def with_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` with dotted fields replaced, e.g. ``{"model.history": "none", "ppo.enabled": False}``.

    Each value is checked against its field's type by rebuilding the config from a dict, so a typo in a
    field name or a value of the wrong kind is refused with the field named.
    """
    raw = dataclasses.asdict(config)
    for dotted, value in overrides.items():
        node, *path = raw, *dotted.split(".")
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                raise ValueError(f"unknown config field {dotted!r} (no section {key!r})")
            node = node[key]
        if path[-1] not in node:
            raise ValueError(f"unknown config field {dotted!r}")
        node[path[-1]] = value
    return config_from_dict(raw)


CONFIGS_PACKAGE = "salesrl_jax.configs"  # the top-level configs/ folder, installed under this name


def _module_name(path: Path) -> str | None:
    """The importable name of a config file inside the installed configs package, else None."""
    spec = importlib.util.find_spec(CONFIGS_PACKAGE)  # located, not imported: configs sit above this layer
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    try:
        relative = path.resolve().with_suffix("").relative_to(root)
    except ValueError:
        return None
    return ".".join((CONFIGS_PACKAGE, *relative.parts))


def load_config(path: str | Path | None) -> TrainConfig:
    """``get_config()`` of a config file (the default config when ``path`` is None).

    A file of the project's configs/ is imported as the module it is (``salesrl_jax.configs.<name>``); any
    other file is loaded by path. Either way it imports its base as ``salesrl_jax.configs.default``.
    """
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    name = _module_name(path)
    if name is not None:
        module = importlib.import_module(name)
    else:
        spec = importlib.util.spec_from_file_location(f"_salesrl_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file must define get_config() -> TrainConfig")
    config = module.get_config()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path}: get_config() returned {type(config).__name__}, not TrainConfig")
    return config

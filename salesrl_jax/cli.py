"""The ``salesrl`` command line: one entry point, one subcommand per job.

Every option is a typed dataclass field whose docstring is its ``--help`` text. Each command parses,
calls one library function and prints its result's summary: the work itself is importable and
usable from Python. Heavy modules are imported inside each command so ``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.guidance.config import GuidanceConfig, load_guidance_config
from salesrl_jax.help_text import cli
from salesrl_jax.run.compile_cache import enable_compile_cache
from salesrl_jax.run.config import ConfidenceConfig, TrainConfig, load_config
from salesrl_jax.sim.config import SimulatorConfig

ArchiveFormat = Literal["jsonl", "jsonl.gz", "csv", "parquet"]
SpeakerNames = Annotated[tuple[str, ...], tyro.conf.arg(help=(
    "Roles of speaker names the usual aliases (agent, client, user, ...) do not know, as NAME=rep or NAME=customer, "
    "e.g. --speaker SPEAKER_00=rep SPEAKER_01=customer for a diarized export (case, spaces and hyphens do not "
    "matter); recorded with the output."))]
"""``--speaker``, as every command that reads an archive takes it (`salesrl_jax.data.validation.reading_limits`)."""


def _progress(total: int | None, unit: str, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, unit_scale=True, dynamic_ncols=True,
                disable=None)  # None: no bar when stderr is not a terminal (CI logs)


def _expected_turns(data: Path) -> int | None:
    from salesrl_jax.data.readers import estimate_turns

    return estimate_turns(data)


@dataclasses.dataclass
class Generate:
    """Generate a synthetic sales-conversation archive with per-turn ground truth (oracle probability, dialogue acts).
    Resumable: rerun the same command after a kill to finish it."""

    sim: Annotated[SimulatorConfig, tyro.conf.arg(name="")] = SimulatorConfig()
    out: Path = Path("runs/synthetic")
    """Output directory: shard files plus manifest.json."""
    format: ArchiveFormat = "parquet"
    """Shard file format."""
    workers: int = 0
    """Worker processes (0 = one per core). Does not change the output bytes."""

    def run(self) -> None:
        from salesrl_jax.sim.generate import generate
        from salesrl_jax.sim.summary import format_summary

        with _progress(self.sim.num_conversations, "conv", "generate") as bar:
            result = generate(self.sim, self.out, fmt=self.format, workers=self.workers or None, progress=bar.update)
        print(f"wrote {self.out}/ ({self.format})")
        print(format_summary(result))


@dataclasses.dataclass
class ConvertPersuasionForGood:
    """Convert the PersuasionForGood corpus (persuader = rep, persuadee = customer, donated = converted)."""

    data: Annotated[Path, tyro.conf.arg(aliases=("--source",))] = Path("../shared/data/persuasionforgood")
    """Directory holding full_dialog.csv and full_info.csv."""
    out: Path = Path("runs/persuasionforgood.jsonl")
    """Output archive; the format follows the extension (.jsonl, .jsonl.gz, .csv, .parquet)."""
    rejects: Path | None = None
    """Where bad records go (default: beside the output, *.rejects.jsonl)."""
    drop_low_quality: bool = False
    """Leave out the dialogues the authors marked BAD_ (kept and flagged by default)."""

    def run(self) -> None:
        from salesrl_jax.data.convert import convert_persuasionforgood

        print(convert_persuasionforgood(self.data, self.out, rejects=self.rejects,
                                        drop_low_quality=self.drop_low_quality).summary())


@dataclasses.dataclass
class ConvertCasino:
    """Convert CaSiNo campsite negotiations (the participant who makes the final decision = customer; outcome 1 if
    that participant is "Extremely satisfied"; deal actions never become turns)."""

    data: Path = Path("../shared/data/casino")
    """Directory holding casino_{train,valid,test}.json (or casino.json), or one such file."""
    out: Path = Path("runs/casino.jsonl")
    """Output archive; the format follows the extension (.jsonl, .jsonl.gz, .csv, .parquet)."""
    rejects: Path | None = None
    """Where bad records go (default: beside the output, *.rejects.jsonl)."""

    def run(self) -> None:
        from salesrl_jax.data.convert import convert_casino

        print(convert_casino(self.data, self.out, rejects=self.rejects).summary())


@dataclasses.dataclass
class ConvertArchive:
    """Validate any JSONL/CSV/Parquet archive (tolerant input) and write it in the library's format (strict output)."""

    data: Annotated[Path, tyro.conf.arg(aliases=("--input",))]
    """Archive file or directory of shards."""
    out: Annotated[Path, tyro.conf.arg(aliases=("--output",))]
    """Output archive; the format follows the extension."""
    rejects: Path | None = None
    """Where bad records go (default: beside the output, *.rejects.jsonl)."""
    strict: bool = False
    """Fail on the first bad record instead of setting it aside."""
    max_turn_chars: int = 20_000
    """A longer single turn is rejected as a broken export."""
    label_key: str | None = None
    """The field that holds the outcome, dotted into objects (e.g. won, metadata.donated, meta.crm.closed); by
    default the first of outcome / converted / label / sale / success / won."""
    speaker: SpeakerNames = ()

    def run(self) -> None:
        from salesrl_jax.data.convert import convert_archive

        print(convert_archive(self.data, self.out, rejects=self.rejects, strict=self.strict,
                              max_turn_chars=self.max_turn_chars, label_key=self.label_key,
                              speakers=self.speaker).summary())


@dataclasses.dataclass
class Convert:
    """Convert a source into the library's conversation format (every command reads --data and writes --out)."""

    target: Annotated[
        Union[
            Annotated[ConvertPersuasionForGood, tyro.conf.subcommand("persuasionforgood")],
            Annotated[ConvertCasino, tyro.conf.subcommand("casino")],
            Annotated[ConvertArchive, tyro.conf.subcommand("archive")],
        ],
        tyro.conf.arg(name=""),
    ]

    def run(self) -> None:
        self.target.run()


@dataclasses.dataclass
class Split:
    """Split an archive into a development file and a held-out test file (stratified by outcome, by a seeded hash
    of the id kept apart from training's validation split), for a nested protocol: train and tune on the
    development file (its inner validation split picks the checkpoint), evaluate once on the test file."""

    data: Path
    """Archive file or directory of shards."""
    out: Path
    """Directory for development.<format>, test.<format> and rejects.jsonl."""
    test_fraction: float = 0.2
    """Share of each outcome's conversations held out for the test file."""
    seed: int = 0
    """Seed of the split."""
    format: ArchiveFormat = "jsonl"
    """Format of the two files."""
    label_key: str | None = None
    """The field that holds the outcome, dotted into objects (e.g. metadata.donated)."""
    speaker: SpeakerNames = ()

    def run(self) -> None:
        from salesrl_jax.data.split import split_archive

        print(split_archive(self.data, self.out, test_fraction=self.test_fraction, seed=self.seed, fmt=self.format,
                            label_key=self.label_key, speakers=self.speaker).summary())


@dataclasses.dataclass
class Embed:
    """Embed and featurise an archive into cached training arrays (memory-mapped; resumable; a no-op when done)."""

    data: Path
    """Archive file or directory of shards."""
    out: Path
    """Cache directory (parts, manifest.json, rejects.jsonl)."""
    embedder: EmbedderConfig = EmbedderConfig()
    dtype: Literal["float16", "float32"] = "float16"
    """Storage type of the embeddings (float16 halves the disk; training computes in float32)."""
    chunk_conversations: int = 10_000
    """Conversations per part: the unit of resumption and of streaming."""
    workers: int = 0
    """Worker processes (0 = one per core). Does not change the output bytes."""
    cache: Path | None = None
    """SQLite embedding cache shared across runs (default: OUT/embeddings.sqlite for API embedders, none for
    the offline embedder, which is faster than a cache lookup)."""
    label_key: str | None = None
    """The field that holds the outcome, dotted into objects (e.g. metadata.donated); by default the first of
    outcome / converted / label / sale / success / won."""
    speaker: SpeakerNames = ()
    wait: bool = False
    """If another run is writing this directory, wait for it instead of failing at once."""
    engine: Literal["local", "ray"] = "local"
    """local: worker processes on this machine. ray: a pool of Ray actors, on a local Ray or the cluster at
    --address; the same parts (needs pip install 'salesrl-jax[ray]')."""
    address: str | None = None
    """Ray cluster to join (auto, or ray://HOST:10001); unset: start a local Ray of --workers CPUs."""

    def run(self) -> None:
        from salesrl_jax.arrays.build import embed_archive

        cache = self.cache or (self.out / "embeddings.sqlite" if self.embedder.is_remote else None)
        with _progress(_expected_turns(self.data), "turn", "embed") as bar:
            result = embed_archive(self.data, self.out, self.embedder, dtype=self.dtype,
                                   chunk_conversations=self.chunk_conversations, workers=self.workers or None,
                                   cache_path=cache, progress=bar.update, label_key=self.label_key,
                                   speakers=self.speaker, wait=self.wait,
                                   engine=self.engine, address=self.address)
        print(result.summary())


@dataclasses.dataclass
class Train:
    """Train the SalesRLAgent model (supervised pretraining, then PPO) on cached arrays; resumes from WORKDIR.

    `--config FILE` loads a config file (a Python file with get_config(), see configs/); any field
    below overrides it, e.g. `--model.ensemble-size 3 --ppo.no-enabled`.
    """

    config_file: Annotated[Path | None, tyro.conf.arg(name="config")] = None
    """Config file (Python, defines get_config() -> TrainConfig); the built-in default if omitted."""
    workdir: Path = Path("runs/train")
    """Run directory: checkpoints (latest, best), metrics.jsonl, config.json, result.json. Rerun to resume."""
    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = TrainConfig()

    def run(self) -> None:
        from salesrl_jax.train.loop import TrainingDiverged, train_and_evaluate

        try:
            result = train_and_evaluate(self.config, self.workdir)
        except TrainingDiverged as err:
            raise SystemExit(f"error: training diverged: {err}") from None
        print(result.summary())
        if self.config.confidence.enabled and self.config.data.valid_fraction > 0 and result.best_valid:
            if self.config.parallel.distributed:
                # Every process would write the same fit to the same directory: one process fits it afterwards.
                import jax

                if jax.process_index() == 0:
                    print(f"confidence module not fitted in a distributed run: fit it in one process with "
                          f"`salesrl confidence --model {self.workdir}`")
                return
            from salesrl_jax.eval.confidence_fit import fit_confidence

            print(fit_confidence(self.workdir).summary())


@dataclasses.dataclass
class Evaluate:
    """Evaluate a trained model on cached arrays: last turn, by turn index, by fraction seen, per industry, and
    the simulator's oracle side by side; writes report.md, metrics.json and PNG plots."""

    model: Path
    """Run directory of `salesrl train` (the model it serves: its best checkpoint, recalibrated on the validation
    split) or a checkpoint directory."""
    data: Path
    """Cached arrays from `salesrl embed` (a test set the model never trained on)."""
    out: Path | None = None
    """Report directory (default: MODEL/eval-<data directory name>)."""
    max_conversations: int | None = None
    """Evaluate only the first this many conversations."""
    quantized: bool = False
    """Evaluate the int8 model, to measure what quantization costs: the run's saved int8 parameters
    (`salesrl quantize`), else quantized now and calibrated on the run's training arrays."""
    split: Literal["all", "valid"] = "all"
    """all: every labelled conversation of DATA; valid: only the validation split the model held out of DATA
    (the model's data.valid_fraction and data.split_seed), for data sets too small to split into files."""
    ood_data: Path | None = None
    """Cached arrays of out-of-distribution conversations (held-out industries, another corpus): how well the
    confidence module tells them from DATA's (needs a confidence fit, `salesrl confidence`)."""
    baselines: bool = False
    """Also fit the baselines `salesrl crossval` compares with (four TF-IDF logistic regressions, a regression on the
    turn embeddings' means, gradient-boosted trees on the turn features) on the labelled conversations of the model's
    training arrays, and report them on DATA beside the model: AUC by turn index with intervals, and the model minus
    the strongest TF-IDF variant, paired over conversations. Reads the text of the archives the arrays were built
    from. Needs scikit-learn (the `baselines` extra) and a DATA that shares no conversation with the training
    arrays."""
    train_archive: Path | None = None
    """With --baselines: the archive the model's training arrays were built from (default: the path their manifest
    records; checked against its hash either way)."""
    test_archive: Path | None = None
    """With --baselines: the archive DATA was built from (default: the path its manifest records; hash checked)."""

    def run(self) -> None:
        from salesrl_jax.eval.evaluate import evaluate_model
        from salesrl_jax.run.trained_model import TrainedModel

        if (self.train_archive or self.test_archive) and not self.baselines:
            raise ValueError("--train-archive and --test-archive are read with --baselines only")
        if self.baselines and self.split != "all":
            raise ValueError("--baselines compares on a test set of its own (--split all); to compare on the data a "
                             "model is trained on, run `salesrl crossval`")
        model = TrainedModel.load(self.model)
        sections = []
        if self.baselines:
            from salesrl_jax.pipelines.compare import baselines_section

            sections.append(baselines_section(model, self.data, train_archive=self.train_archive,
                                              test_archive=self.test_archive))
        weights = None
        if self.quantized:
            from salesrl_jax.infer.quantize import int8_model

            graphdef, params, how = int8_model(model)
            weights = (graphdef, params)
            print(f"int8 model: {how}")
        out = self.out or self.model / f"eval-{self.data.name}{'-int8' if self.quantized else ''}"
        print(evaluate_model(model, self.data, out, split=self.split, max_conversations=self.max_conversations,
                             weights=weights, label="int8" if self.quantized else "",
                             ood_data=self.ood_data, sections=sections).summary())


@dataclasses.dataclass
class Score:
    """Score every turn of a transcript archive (JSONL / CSV / Parquet, any size): per-turn probabilities and
    uncertainty, plus a per-conversation summary. Resumable after a kill; a no-op when done."""

    model: Path
    """Run directory of `salesrl train` (the model it serves: its best checkpoint, recalibrated on the validation
    split) or a checkpoint directory."""
    data: Annotated[Path, tyro.conf.arg(aliases=("--input",))]
    """Archive file or directory of shards."""
    out: Annotated[Path, tyro.conf.arg(aliases=("--output",))]
    """Per-turn output (.jsonl or .parquet); the summary goes beside it as *.conversations.<ext>."""
    quantized: bool = False
    """Run the int8 model: the run's saved int8 parameters (`salesrl quantize`), else quantized now and
    calibrated on the run's training arrays."""
    chunk_conversations: int = 2_000
    """Conversations per chunk: the unit of resumption."""
    workers: int = 0
    """Embedding worker processes (0 = one per core)."""
    cache: Path | None = None
    """SQLite embedding cache (recommended with API embedders)."""
    strict: bool = False
    """Fail on the first bad record instead of setting it aside."""
    wait: bool = False
    """If another run is writing this output, wait for it instead of failing at once."""
    confidence: bool = True
    """Write the confidence columns when the model has a confidence fit (--no-confidence: about 1.5x faster)."""
    engine: Literal["local", "ray"] = "local"
    """local: worker processes on this machine. ray: a pool of Ray actors (each loads the model once), on a local
    Ray or the cluster at --address; the same outputs (needs pip install 'salesrl-jax[ray]')."""
    address: str | None = None
    """Ray cluster to join (auto, or ray://HOST:10001); unset: start a local Ray of --workers CPUs."""
    guidance: str | None = None
    """A `salesrl guidance train` run on this model's encoder state (observation model; DIR or DIR@K for its K-th
    seed): adds the rep's recommended next act per turn (sim_next_act, its probability, and sim_sale_if, the
    estimated conversion if each act is played now), learned in simulation (docs/guidance.md)."""
    label_key: str | None = None
    """The field that holds the outcome (for the conversations file), dotted into objects (e.g. metadata.won)."""
    speaker: SpeakerNames = ()

    def run(self) -> None:
        from salesrl_jax.infer.archive import score_archive

        with _progress(_expected_turns(self.data), "turn", "score") as bar:
            result = score_archive(self.model, self.data, self.out, quantized=self.quantized,
                                   chunk_conversations=self.chunk_conversations, workers=self.workers or None,
                                   cache_path=self.cache, strict=self.strict, progress=bar.update, wait=self.wait,
                                   confidence=self.confidence, engine=self.engine, address=self.address,
                                   guidance=self.guidance, label_key=self.label_key, speakers=self.speaker)
        print(result.summary())
        if self.guidance is not None:
            print(f"guidance          sim_* columns: the next act a policy learned in simulation recommends "
                  f"({self.guidance}); not validated on real calls")


@dataclasses.dataclass
class Quantize:
    """Quantize a trained model to int8 and save it beside the float one: per-output-channel symmetric weights,
    and per-input-channel activation scales calibrated on a sample of training turns."""

    model: Path
    """Run directory of `salesrl train`."""
    calibration: Path | None = None
    """Cached arrays to calibrate the activation scales on (default: the run's training arrays, data.train)."""
    calibration_turns: int = 65_536
    """Turns of the calibration arrays to read."""

    def run(self) -> None:
        from salesrl_jax.infer.quantize import quantize_model

        print(quantize_model(self.model, calibration=self.calibration,
                             calibration_turns=self.calibration_turns).summary())


@dataclasses.dataclass
class Calibrate:
    """Recalibrate a trained model's probabilities on held-out turns (Platt scaling of its logit, folded into the
    policy head; ranking unchanged) and save the result as a new model directory that every command loads.

    A `salesrl train` run already serves its model recalibrated on its validation split (its recalibration field,
    temperature by default); this command fits again on top of that, for what the run could not see: conversations
    of another domain or period (--data ARRAYS --split all), last turns only, or another form."""

    model: Path
    """Run directory of `salesrl train` (the model it serves: its best checkpoint, recalibrated on the validation
    split) or a checkpoint directory."""
    out: Path
    """New model directory (a run directory with checkpoints/best)."""
    data: Path | None = None
    """Cached arrays to fit on (default: the run's training arrays, data.train, with --split valid)."""
    split: Literal["valid", "all"] = "valid"
    """valid: the validation split the model held out of DATA (its data.valid_fraction and data.split_seed);
    all: every labelled conversation of DATA (arrays the model never trained on)."""
    turns: Literal["all", "last"] = "all"
    """Fit on every turn of those conversations, or on each one's last turn only."""
    form: Literal["platt", "temperature"] = "platt"
    """platt: sigmoid(a z + b), which also moves the base rate (a new domain's); temperature: sigmoid(a z), the
    model's base rate kept (what `salesrl train` fits on its validation split: on small inner splits a fitted
    intercept did not carry over to the held-out fold)."""

    def run(self) -> None:
        from salesrl_jax.eval.calibration import recalibrate_model

        print(recalibrate_model(self.model, self.out, data=self.data, split=self.split, turns=self.turns,
                                form=self.form).summary())


@dataclasses.dataclass
class Confidence:
    """Fit (or refit) a trained model's confidence module and save it beside the model: a bank of training
    states, text novelty, a calibrated estimate of each prediction's error, and per-turn intervals
    (`salesrl_jax.models.confidence`). `salesrl train` does this itself when confidence.enabled."""

    model: Path
    """Run directory of `salesrl train` (the model it serves: its best checkpoint, recalibrated on the validation
    split) or a checkpoint directory."""
    data: Path | None = None
    """Cached arrays to calibrate on (default: the run's training arrays, data.train, with --split valid)."""
    split: Literal["valid", "all"] = "valid"
    """valid: the validation split the model held out of DATA; all: every labelled conversation of DATA
    (arrays the model never trained on)."""
    settings: Annotated[ConfidenceConfig, tyro.conf.arg(name="")] = ConfidenceConfig()
    """The fit's settings (the `confidence` section of a training config; `enabled` is not read here)."""

    def run(self) -> None:
        from salesrl_jax.eval.confidence_fit import fit_confidence

        print(fit_confidence(self.model, data=self.data, split=self.split, config=self.settings).summary())


@dataclasses.dataclass
class GuidanceTrain:
    """Train a next-best-action policy with PPO in the simulator environment (the whole run one jitted program,
    seeds vmapped), then A/B-test it against the scripted rep, a rule table and the exact ceiling on the same
    simulated customers. Learned in simulation: see docs/guidance.md for what that does and does not say.

    `--config FILE` loads a guidance config (configs/guidance/*.py); any field below overrides it."""

    config_file: Annotated[Path | None, tyro.conf.arg(name="config")] = None
    """Guidance config file (Python, defines get_config() -> GuidanceConfig); the built-in default if omitted."""
    workdir: Path = Path("runs/guidance")
    """Run directory: config.json, metrics.jsonl, policy/ (orbax), result.json, ab/ (report.md, ab.json, ab.png)."""
    config: Annotated[GuidanceConfig, tyro.conf.arg(name="")] = GuidanceConfig()

    def run(self) -> None:
        from salesrl_jax.guidance.train import train_guidance

        print(train_guidance(self.config, self.workdir).summary())


@dataclasses.dataclass
class GuidanceAB:
    """Simulated A/B test of rep policies on the same customers (common random numbers): conversion and call
    length per arm with 95% intervals, the uplift against the first arm with its paired interval, per industry;
    writes report.md, ab.json and ab.png."""

    policy: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """An arm, repeated (the first is the control): scripted, rule, ceiling, ceiling_acts, or a `salesrl guidance
    train` run directory (DIR@K for its K-th seed)."""
    conversations: int = 100_000
    """Simulated conversations per arm."""
    out: Path = Path("runs/ab")
    """Report directory."""
    seed: int = 0
    """Which customers: the same seed, the same customers and chance."""
    time_cost: float = 0.0
    """Per-exchange time cost in the arms' return (and in the ceiling's objective)."""
    simulator: SimulatorConfig = SimulatorConfig()
    """The customers: industries, length cap, pace."""

    def run(self) -> None:
        from salesrl_jax.env.environment import make_params
        from salesrl_jax.guidance.ab import markdown, write_report
        from salesrl_jax.guidance.train import resolve_policy, run_ab

        if len(self.policy) < 2:
            raise ValueError("an A/B test needs at least two --policy arms (the first is the control)")
        policies = {}
        for spec in self.policy:
            policy = resolve_policy(spec)
            if policy.name in policies:
                raise ValueError(f"--policy {spec!r} names an arm twice")
            policies[policy.name] = policy
        result = run_ab(policies, make_params(self.simulator, time_cost=self.time_cost), self.conversations,
                        self.seed)
        write_report(result, self.out)
        print(markdown(result) + f"\nreport: {self.out / 'report.md'}")


@dataclasses.dataclass
class Guidance:
    """Guidance for the rep: next-best-action policies trained in the simulator (`guidance train`) and simulated
    A/B tests (`guidance ab`)."""

    command: GuidanceTrain | GuidanceAB

    def run(self) -> None:
        self.command.run()


def _guidance_type(train_default: GuidanceTrain) -> type:
    """`Guidance` with its two subcommands, ``train``'s defaults from its config file (read before parsing)."""
    commands = Union[Annotated[GuidanceTrain, tyro.conf.subcommand("train", default=train_default)],
                     Annotated[GuidanceAB, tyro.conf.subcommand("ab")]]
    return dataclasses.make_dataclass(
        "Guidance", [("command", Annotated[commands, tyro.conf.arg(name="")])], bases=(Guidance,),
        namespace={"__doc__": Guidance.__doc__})


@dataclasses.dataclass
class Bench:
    """Speed benchmarks, every variant in one process with ratios printed: batch throughput float32 vs int8,
    streaming latency p50/p99, the per-turn-loop baseline, and training throughput with FLOP/s vs matmul peak."""

    parts: tuple[Literal["batch", "stream", "confidence", "loop", "train", "mesh", "guidance", "incumbent",
                         "archive"], ...] = ("batch", "stream", "confidence", "loop", "train")
    """Which benchmarks to run. archive (only when named): `salesrl score` end to end on --archive-conversations
    simulator conversations as raw JSONL, int8, at the smallest of --dims (offline embeddings), with the confidence
    columns and without (salesrl_jax.bench.archive; about 2 minutes at the default size). mesh (only when named):
    data-parallel training throughput on 1, 2, 4, 8 of the devices JAX sees (on CPU:
    XLA_FLAGS=--xla_force_host_platform_device_count=8 for 8 virtual devices).
    guidance (only when named): the simulator environment's and PPO's env steps/s (docs/guidance.md).
    incumbent (only when named; the incumbent extra): the incumbent's stack, Stable-Baselines3 PPO and torch at its
    3,088-float observation and widths, against ours in the same run: PPO, streaming and batch 1,024, at the
    largest of --dims (salesrl_jax.bench.incumbent)."""
    dims: tuple[int, ...] = (512, 3072)
    """Embedding dimensions (512: the offline default; 3072: text-embedding-3-large)."""
    batch_sizes: tuple[int, ...] = (1, 32, 1024, 16384)
    """Batch sizes of the throughput table."""
    min_seconds: float = 1.0
    """Steady-state timing per measurement (after the compiling first call)."""
    train_models: tuple[Literal["default", "incumbent-sized"], ...] = ("default", "incumbent-sized")
    """Model sizes of the train part (incumbent-sized: the incumbent's 512-256-64 extractor and 128-64 heads)."""
    train_rows: int = 0
    """Turn slots per packed minibatch in the train and mesh parts (0: the config default, 2,048; an accelerator
    needs larger minibatches to be busy)."""
    archive_conversations: int = 20_000
    """Conversations of the archive part's simulator archive (about 10 turns each)."""
    out: Path = Path("runs/bench.json")
    """All numbers as JSON."""

    def run(self) -> None:
        from salesrl_jax.bench.suite import run_suite

        run_suite(self.parts, self.dims, self.batch_sizes, self.min_seconds, out=self.out,
                  train_rows=self.train_rows or None, train_models=self.train_models,
                  archive_conversations=self.archive_conversations)


@dataclasses.dataclass
class Crossval:
    """K-fold cross-validation of the training recipe and of strong baselines (a TF-IDF logistic regression
    family, a logistic regression on the model's inputs, gradient-boosted trees on the turn features) on one
    archive of real conversations: AUC, Brier, log loss and ECE by turn index and at the last turn, with
    bootstrap intervals and paired differences. Writes report.md, metrics.json, out-of-fold predictions and
    plots; resumable (finished folds are kept). The baselines need scikit-learn (the `baselines` extra)."""

    data: Path
    """Archive of labelled conversations (JSONL / CSV / Parquet)."""
    out: Path
    """Output directory (arrays, one folder per fold, the report)."""
    config_file: Annotated[Path | None, tyro.conf.arg(name="config")] = None
    """Training config file (defines get_config() -> TrainConfig); the library's default recipe if omitted."""
    folds: int = 5
    """Folds, stratified by outcome; a conversation is never split."""
    seeds: int = 1
    """Models per fold, each with its own seed; the held-out predictions are their mean."""
    fold_seed: int = 0
    """Seed of the fold assignment (and of the bootstrap)."""
    repeats: int = 1
    """Fold assignments to run the whole cross-validation under (fold seeds fold-seed, fold-seed + 1, ...): every
    figure is then the mean over them, every interval resamples conversations once for all. On about 1,000
    conversations one assignment moves a difference between methods by about 0.01 AUC; 3 repeats take 3 times as
    long. A finished run without repeats is extended, not redone."""
    baselines: bool = True
    """Fit the baselines on the same folds."""
    baseline_max_prefixes: int | None = 100_000
    """At most about this many training prefixes per fold for the TF-IDF variants fitted on prefixes (past it, a
    random subset of each training conversation's, at least one each; the report says so). Their memory grows with
    the prefixes' words: 4.5 GB at the peak for 100,000 prefixes of 100-turn calls. None reads every prefix."""
    bootstrap: int = 1000
    """Bootstrap resamples of the conversations for every interval."""
    label_key: str | None = None
    """The field that holds the outcome, dotted into objects (e.g. metadata.donated)."""
    speaker: SpeakerNames = ()

    def run(self) -> None:
        from salesrl_jax.pipelines.crossval import crossval

        result = crossval(self.data, self.out, folds=self.folds, config=load_config(self.config_file), seeds=self.seeds,
                          fold_seed=self.fold_seed, baselines=self.baselines, bootstrap=self.bootstrap,
                          label_key=self.label_key, repeats=self.repeats, speakers=self.speaker,
                          baseline_max_prefixes=self.baseline_max_prefixes)
        print(result.summary())


@dataclasses.dataclass
class Study:
    """Run an ablation study: every variant x seed of a study file (configs/studies/*.py), each its own resumable
    run, evaluated on the study's test sets, with baseline rows; writes table.md / table.csv / forest.png
    (means with 95% intervals over seeds, paired differences to the base variant). Runs that differ only in
    seeds and numeric hyperparameters train together in one compiled program; a sweep's setting is chosen by
    validation loss (never the test set). A killed study continues."""

    study: tyro.conf.Positional[Path]
    """The study file (defines get_study() -> Study)."""
    workdir: Path = Path("runs/study")
    """Where the data, runs, baselines and tables go."""
    seeds: tuple[int, ...] | None = None
    """Seeds to run instead of the file's."""
    set: tuple[str, ...] = ()
    """Dotted config fields for every variant, as FIELD=VALUE (VALUE read as JSON where it parses), e.g.
    --set pretrain.epochs=2 ppo.enabled=false."""

    def run(self) -> None:
        import json

        from salesrl_jax.pipelines.study import run_study

        overrides = {}
        for item in self.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
            try:
                overrides[key] = json.loads(value)
            except ValueError:
                overrides[key] = value
        print(run_study(self.study, self.workdir, seeds=self.seeds, overrides=overrides).summary())


@dataclasses.dataclass
class Demo:
    """The whole pipeline on embedded defaults, offline: generate synthetic train and test archives, validate,
    embed, train a small model (supervised + PPO), evaluate it against the simulator's oracle, and score raw
    transcripts with the int8 model."""

    workdir: Path = Path("runs/demo")
    """Where every artefact of the demo goes."""
    num_conversations: int = 2_000
    """Size of the synthetic training archive (the test archive is a quarter of it, from another seed)."""
    seed: int = 0
    """Simulator seed (the test archive uses seed + 1)."""

    def run(self) -> None:
        from salesrl_jax.pipelines.demo import run_demo

        run_demo(self.workdir, self.num_conversations, self.seed)


def _command_type(train_default: Train, guidance_default: type = Guidance):
    return Union[
        Annotated[Demo, tyro.conf.subcommand("demo")],
        Annotated[Generate, tyro.conf.subcommand("generate")],
        Annotated[Split, tyro.conf.subcommand("split")],
        Annotated[Embed, tyro.conf.subcommand("embed")],
        Annotated[Train, tyro.conf.subcommand("train", default=train_default)],
        Annotated[Evaluate, tyro.conf.subcommand("evaluate")],
        Annotated[Score, tyro.conf.subcommand("score")],
        Annotated[Quantize, tyro.conf.subcommand("quantize")],
        Annotated[Calibrate, tyro.conf.subcommand("calibrate")],
        Annotated[Confidence, tyro.conf.subcommand("confidence")],
        Annotated[Crossval, tyro.conf.subcommand("crossval")],
        Annotated[Study, tyro.conf.subcommand("study")],
        Annotated[Bench, tyro.conf.subcommand("bench")],
        Annotated[guidance_default, tyro.conf.subcommand("guidance")],
        Annotated[Convert, tyro.conf.subcommand("convert")],
    ]


def _config_file(argv: list[str]) -> Path | None:
    """The value of ``--config`` (train's config file), read before parsing so the file sets the defaults."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``salesrl`` command.

    Every known failure (bad input, a damaged or missing file, a refused model, a failed embeddings request, a
    busy output, a file system that refuses a write) prints one line naming what failed and exits 1; ``--debug``
    (anywhere on the command line) shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    formatwarning = warnings.formatwarning
    if not debug:  # a warning is a line for the user, not a source location and the line of code that raised it
        warnings.formatwarning = _warning_line
    try:
        _main(argv, debug)
    finally:
        warnings.formatwarning = formatwarning


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """One warning as the command line prints it: ``warning: MESSAGE``, with the category where it says more than
    UserWarning (``warning (NoWideTerm): ...``)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"warning{kind}: {message}\n"


def _main(argv: list[str], debug: bool) -> None:
    if argv[:1] != ["bench"] and not {"-h", "--help"} & set(argv):  # bench reports compile times: it compiles afresh
        enable_compile_cache()
    try:
        config_file = _config_file(argv) if argv[:1] == ["train"] else None
        train_default = Train(config_file=config_file, config=load_config(config_file))
        guidance_file = _config_file(argv) if argv[:2] == ["guidance", "train"] else None
        guidance = _guidance_type(GuidanceTrain(config_file=guidance_file, config=load_guidance_config(guidance_file)))
        command = cli(_command_type(train_default, guidance), args=argv, prog="salesrl",
                           description="salesrl-jax: real-time, turn-by-turn sales-conversion prediction.")
        command.run()
    except Exception as err:
        # Expected failures (a missing or damaged file, a bad config, a bad record under --strict, a failed
        # embeddings request, a read-only output, a busy output) get one clear line, not a traceback; anything
        # else is a bug and keeps its traceback.
        from salesrl_jax.data.validation import BadRecordError
        from salesrl_jax.embed.openai_embedder import EmbeddingRequestError

        if debug or not isinstance(err, (OSError, ValueError, EmbeddingRequestError)):
            raise

        message = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message += f": {err.filename}"
        raise SystemExit(f"error: {message}" + (" (--strict)" if isinstance(err, BadRecordError) else "")) from None


if __name__ == "__main__":
    main(sys.argv[1:])

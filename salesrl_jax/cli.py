"""The ``salesrl`` command line: one entry point, one subcommand per job.

Every option is a typed dataclass field whose docstring is its ``--help`` text.
Heavy modules are imported inside each command so ``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.train.config import TrainConfig, load_config

ArchiveFormat = Literal["jsonl", "jsonl.gz", "csv", "parquet"]


def _progress(total: int, unit: str, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, unit_scale=True, dynamic_ncols=True,
                disable=None)  # None: no bar when stderr is not a terminal (CI logs)


def _print_rejects(rejects, where: Path | None) -> None:
    if not rejects.count:
        print("rejected          0")
        return
    print(f"rejected          {rejects.count}" + (f" (reasons in {where})" if where else ""))
    for reason, count in rejects.by_reason.most_common(8):
        print(f"  {count:>8}  {reason}")
    for problem in rejects.first[:3]:
        print(f"  e.g. {problem}")


@dataclasses.dataclass
class Generate:
    """Generate a synthetic sales-conversation archive with per-turn ground truth (oracle probability, dialogue acts)."""

    sim: Annotated[SimulatorConfig, tyro.conf.arg(name="")] = SimulatorConfig()
    out: Path = Path("runs/synthetic")
    """Output directory: shard files plus manifest.json."""
    format: ArchiveFormat = "parquet"
    """Shard file format."""
    workers: int = 0
    """Worker processes (0 = one per core). Does not change the output bytes."""

    def run(self) -> None:
        from salesrl_jax.eval.simulator_report import format_summary
        from salesrl_jax.sim.generate import generate

        with _progress(self.sim.num_conversations, "conv", "generate") as bar:
            result = generate(self.sim, self.out, fmt=self.format, workers=self.workers or None, progress=bar.update)
        print(f"wrote {self.out}/ ({self.format})")
        print(format_summary(result))


@dataclasses.dataclass
class ConvertPersuasionForGood:
    """Convert the PersuasionForGood corpus (persuader = rep, persuadee = customer, donated = converted)."""

    source: Path = Path("../shared/data/persuasionforgood")
    """Directory holding full_dialog.csv and full_info.csv."""
    out: Path = Path("runs/persuasionforgood.jsonl")
    """Output archive; the format follows the extension (.jsonl, .jsonl.gz, .csv, .parquet)."""
    rejects: Path | None = None
    """Where bad records go (default: beside the output, *.rejects.jsonl)."""
    drop_low_quality: bool = False
    """Leave out the dialogues the authors marked BAD_ (kept and flagged by default)."""

    def run(self) -> None:
        from salesrl_jax.data.persuasionforgood import read_persuasionforgood
        from salesrl_jax.data.readers import RejectSink
        from salesrl_jax.data.writers import ArchiveWriter

        rejects_path = self.rejects or self.out.with_name(self.out.name.split(".")[0] + ".rejects.jsonl")
        with RejectSink(rejects_path) as rejects, ArchiveWriter(self.out) as writer:
            labelled = converted = turns = 0
            for conv in read_persuasionforgood(self.source, rejects=rejects, drop_low_quality=self.drop_low_quality):
                writer.write(conv)
                turns += conv.num_turns
                if conv.outcome is not None:
                    labelled += 1
                    converted += conv.outcome
        print(f"wrote {self.out}: {writer.count} conversations, {turns} turns, "
              f"{labelled} labelled, {converted / max(labelled, 1):.3f} converted")
        _print_rejects(rejects, rejects_path)


@dataclasses.dataclass
class ConvertArchive:
    """Validate any JSONL/CSV/Parquet archive (tolerant input) and write it in the library's format (strict output)."""

    input: Path
    """Archive file or directory of shards."""
    output: Path
    """Output archive; the format follows the extension."""
    rejects: Path | None = None
    """Where bad records go (default: beside the output, *.rejects.jsonl)."""
    strict: bool = False
    """Fail on the first bad record instead of setting it aside."""
    max_turn_chars: int = 20_000
    """A longer single turn is rejected as a broken export."""

    def run(self) -> None:
        from salesrl_jax.data.readers import ArchiveReader, RejectSink
        from salesrl_jax.data.validation import BadRecordError, Limits
        from salesrl_jax.data.writers import ArchiveWriter

        rejects_path = self.rejects or self.output.with_name(self.output.name.split(".")[0] + ".rejects.jsonl")
        with RejectSink(rejects_path) as rejects:
            reader = ArchiveReader(self.input, limits=Limits(max_turn_chars=self.max_turn_chars),
                                   strict=self.strict, rejects=rejects)
            try:
                with ArchiveWriter(self.output) as writer:
                    writer.write_all(reader)
            except BadRecordError as err:
                raise SystemExit(f"error: {err} (--strict)") from None
        print(f"wrote {self.output}: {reader.stats.conversations} conversations, {reader.stats.turns} turns")
        _print_rejects(rejects, rejects_path)


@dataclasses.dataclass
class Convert:
    """Convert a source into the library's conversation format."""

    target: Annotated[
        Union[
            Annotated[ConvertPersuasionForGood, tyro.conf.subcommand("persuasionforgood")],
            Annotated[ConvertArchive, tyro.conf.subcommand("archive")],
        ],
        tyro.conf.arg(name=""),
    ]

    def run(self) -> None:
        self.target.run()


def _expected_turns(data: Path) -> int | None:
    from salesrl_jax.data.readers import estimate_turns

    return estimate_turns(data)


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

    def run(self) -> None:
        from salesrl_jax.arrays.build import embed_archive

        cache = self.cache or (self.out / "embeddings.sqlite" if self.embedder.is_remote else None)
        with _progress(_expected_turns(self.data), "turn", "embed") as bar:
            result = embed_archive(self.data, self.out, self.embedder, dtype=self.dtype,
                                   chunk_conversations=self.chunk_conversations, workers=self.workers or None,
                                   cache_path=cache, progress=bar.update)
        print(format_embed_result(result, self.out))


def format_embed_result(result, out: Path) -> str:
    arrays = result.arrays
    counts = arrays.manifest["counts"]
    lines = []
    if result.up_to_date:
        lines.append(f"{out}: already complete for this archive and embedder; nothing to do")
    else:
        lines.append(f"wrote {out}/: {result.parts_written} parts" +
                     (f" ({result.parts_reused} reused from an interrupted run)" if result.parts_reused else ""))
    lines.append(f"embedder          {arrays.identity.key} ({arrays.manifest['dtype']})")
    lines.append(f"conversations     {counts['conversations']:,} ({counts['labelled']:,} labelled, "
                 f"{counts['converted']:,} converted)")
    lines.append(f"turns             {counts['turns']:,} ({counts['turns_with_oracle']:,} with oracle probability)")
    lines.append(f"rejected          {counts['rejected']:,}" +
                 (f" (reasons in {out / 'rejects.jsonl'})" if counts["rejected"] else ""))
    if result.cache is not None:
        lines.append(str(result.cache))
    return "\n".join(lines)


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
        print(format_train_result(result))


def format_train_result(result) -> str:
    lines = [f"run               {result.workdir}" + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")]
    for name, valid in (("final model", result.valid), ("best checkpoint", result.best_valid)):
        if valid:
            lines.append(f"{name:<18}validation: last-turn AUC {valid['last_turn_auc']:.3f}, accuracy "
                         f"{valid['last_turn_accuracy']:.3f}, Brier {valid['last_turn_brier']:.3f}, "
                         f"ECE {valid['last_turn_ece']:.3f}; all turns log loss {valid['log_loss']:.4f}")
    for key, value in result.throughput.items():
        lines.append(f"{key:<28}{value:,.1f}")
    return "\n".join(lines)


@dataclasses.dataclass
class Evaluate:
    """Evaluate a trained model on cached arrays: last turn, by turn index, by fraction seen, per industry, and
    the simulator's oracle side by side; writes report.md, metrics.json and PNG plots."""

    model: Path
    """Run directory of `salesrl train` (its best checkpoint is used) or a checkpoint directory."""
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

    def run(self) -> None:
        from salesrl_jax.arrays.store import TurnArrays
        from salesrl_jax.eval.predict import make_predict, predict_arrays
        from salesrl_jax.eval.report import format_tables, evaluation_tables, write_report
        from salesrl_jax.train.checkpoint import TrainedModel

        model = TrainedModel.load(self.model)
        arrays = TurnArrays.open(self.data)
        model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {self.data}")
        graphdef, params = model.graphdef, model.params
        if self.quantized:
            from salesrl_jax.infer.quantize import int8_model

            graphdef, params, how = int8_model(model)
            print(f"int8 model: {how}")
        pred = predict_arrays(make_predict(graphdef), params, arrays, split=self.split,
                              valid_fraction=model.config.data.valid_fraction, split_seed=model.config.data.split_seed,
                              rows=model.config.eval_rows_per_minibatch, max_conversations=self.max_conversations)
        out = self.out or self.model / f"eval-{self.data.name}{'-int8' if self.quantized else ''}"
        header = (f"model `{model.directory}` ({model.config.name}{', int8' if self.quantized else ''}), "
                  f"data `{self.data}`, embeddings `{arrays.identity.key}`")
        path = write_report(pred, out, f"Evaluation: {model.config.name}", header)
        print(format_tables(evaluation_tables(pred)))
        print(f"\nreport: {path}")


@dataclasses.dataclass
class Score:
    """Score every turn of a transcript archive (JSONL / CSV / Parquet, any size): per-turn probabilities and
    uncertainty, plus a per-conversation summary. Resumable after a kill; a no-op when done."""

    model: Path
    """Run directory of `salesrl train` (its best checkpoint is used) or a checkpoint directory."""
    input: Path
    """Archive file or directory of shards."""
    output: Path
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

    def run(self) -> None:
        from salesrl_jax.data.validation import BadRecordError
        from salesrl_jax.infer.archive import score_archive

        with _progress(_expected_turns(self.input), "turn", "score") as bar:
            try:
                result = score_archive(self.model, self.input, self.output, quantized=self.quantized,
                                       chunk_conversations=self.chunk_conversations, workers=self.workers or None,
                                       cache_path=self.cache, strict=self.strict, progress=bar.update)
            except BadRecordError as err:
                raise SystemExit(f"error: {err} (--strict)") from None
        if result.up_to_date:
            print(f"{self.output}: already scored with this model and input; nothing to do")
        else:
            reused = f" ({result.chunks_reused} chunks reused from an interrupted run)" if result.chunks_reused else ""
            print(f"scored {result.conversations:,} conversations, {result.turns:,} turns{reused}")
        print(f"per turn          {result.outputs['turns']}")
        print(f"per conversation  {result.outputs['conversations']}")
        print(f"rejected          {result.rejected:,}" + (f" (reasons in {result.outputs['rejects']})"
                                                          if result.rejected else ""))
        if result.cache is not None:
            print(result.cache)


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
        from salesrl_jax.arrays.store import TurnArrays
        from salesrl_jax.infer.quantize import (QUANTIZED_DIR, activation_ranges, calibration_batches, quantize_params,
                                                save_quantized, training_arrays, tree_bytes)
        from salesrl_jax.infer.scorer import saved_quantized_dir
        from salesrl_jax.train.checkpoint import TrainedModel

        model = TrainedModel.load(self.model)
        if self.calibration is not None:
            arrays = TurnArrays.open(self.calibration)
            model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {self.calibration}")
        else:
            arrays = training_arrays(model)
            if arrays is None:
                raise SystemExit(f"error: the run's training arrays ({model.config.data.train}) are not on disk or do "
                                 "not match the model; pass --calibration ARRAYS (cached arrays from `salesrl embed`)")
        ranges = activation_ranges(model.graphdef, model.params, calibration_batches(arrays, self.calibration_turns))
        _, q_params = quantize_params(model.params, model.config.model, model.identity.dim, ranges)
        path = save_quantized(saved_quantized_dir(model) or self.model / QUANTIZED_DIR, q_params)
        print(f"calibrated on the first {min(self.calibration_turns, arrays.num_turns):,} turns of {arrays.path}")
        print(f"wrote {path}: {tree_bytes(q_params) / 1e6:.2f} MB of parameters "
              f"(float32: {tree_bytes(model.params) / 1e6:.2f} MB, {tree_bytes(model.params) / tree_bytes(q_params):.1f}x)")


@dataclasses.dataclass
class Calibrate:
    """Recalibrate a trained model's probabilities on held-out turns (Platt scaling of its logit, folded into the
    policy head; ranking unchanged) and save the result as a new model directory that every command loads."""

    model: Path
    """Run directory of `salesrl train` (its best checkpoint is used) or a checkpoint directory."""
    out: Path
    """New model directory (a run directory with checkpoints/best)."""
    data: Path | None = None
    """Cached arrays to fit on (default: the run's training arrays, data.train, with --split valid)."""
    split: Literal["valid", "all"] = "valid"
    """valid: the validation split the model held out of DATA (its data.valid_fraction and data.split_seed);
    all: every labelled conversation of DATA (arrays the model never trained on)."""

    def run(self) -> None:
        from salesrl_jax.arrays.store import TurnArrays
        from salesrl_jax.eval import metrics
        from salesrl_jax.eval.calibration import check_recalibratable, fit_platt, logits_of, recalibrated_params
        from salesrl_jax.eval.predict import make_predict, predict_arrays
        from salesrl_jax.train.checkpoint import TrainedModel, export_model

        model = TrainedModel.load(self.model)
        check_recalibratable(model.config.model)
        data = self.data or model.config.data.train
        if self.split == "valid" and model.config.data.valid_fraction <= 0:
            raise ValueError(f"the model at {model.directory} held out no validation split (data.valid_fraction 0): "
                             "pass --data ARRAYS of conversations it never trained on, with --split all")
        arrays = TurnArrays.open(data)
        model.require_compatible(arrays.identity, arrays.feature_names, f"the cached arrays at {data}")
        pred = predict_arrays(make_predict(model.graphdef), model.params, arrays, split=self.split,
                              valid_fraction=model.config.data.valid_fraction,
                              split_seed=model.config.data.split_seed, rows=model.config.eval_rows_per_minibatch)
        scaling = fit_platt(logits_of(pred.prediction), pred.outcome)
        before, after = pred.prediction, scaling(logits_of(pred.prediction))
        fit = {"slope": scaling.slope, "intercept": scaling.intercept, "data": str(data), "split": self.split,
               "conversations": len(pred.ids), "turns": int(len(before)), "from": str(model.directory)}
        path = export_model(self.out, recalibrated_params(model.params, model.config.model, scaling),
                            {**model.meta, "recalibration": fit})
        print(f"Platt scaling p' = sigmoid({scaling.slope:.4f} z + {scaling.intercept:.4f}), fitted on "
              f"{len(before):,} turns of {len(pred.ids):,} conversations ({data}, split {self.split})")
        print("on those turns (in-sample)   log loss   Brier     ECE")
        for name, probs in (("before", before), ("after", after)):
            print(f"  {name:<26} {metrics.log_loss(probs, pred.outcome):8.4f} {metrics.brier(probs, pred.outcome):8.4f} "
                  f"{metrics.expected_calibration_error(probs, pred.outcome):7.4f}")
        print(f"wrote {path}")


BenchPart = Literal["batch", "stream", "loop", "train"]


@dataclasses.dataclass
class Bench:
    """Speed benchmarks, every variant in one process with ratios printed: batch throughput float32 vs int8,
    streaming latency p50/p99, the per-turn-loop baseline, and training throughput with FLOP/s vs matmul peak."""

    parts: tuple[BenchPart, ...] = ("batch", "stream", "loop", "train")
    """Which benchmarks to run."""
    dims: tuple[int, ...] = (512, 3072)
    """Embedding dimensions (512: the offline default; 3072: text-embedding-3-large)."""
    batch_sizes: tuple[int, ...] = (1, 32, 1024, 16384)
    """Batch sizes of the throughput table."""
    min_seconds: float = 1.0
    """Steady-state timing per measurement (after the compiling first call)."""
    out: Path = Path("runs/bench.json")
    """All numbers as JSON."""

    def run(self) -> None:
        from salesrl_jax.bench import inference, training
        from salesrl_jax.bench.timing import matmul_peak_flops

        results: dict = {"jax_devices": [str(d) for d in __import__("jax").devices()]}
        if "batch" in self.parts:
            rows = inference.batch_throughput(self.dims, self.batch_sizes, self.min_seconds)
            results["batch"] = rows
            print("batch scoring over cached arrays (turns/s; weights random, shapes of the default model; int8 with "
                  "calibrated activation scales, its products summed in int32 or on bf16 dot units; int8 embeddings: "
                  f"the default way, {rows[0]['int8_dot_default']}, fed int8 embeddings)")
            print("| dim | batch | float32 | int8, int32 sums | ratio | int8, bf16 units | ratio | int8, int8 embeddings "
                  "| ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                cells = " | ".join(f"{r[f'{name}_turns_per_s']:,.0f} | {r[f'{name}_over_float32']:.2f}x"
                                   for name in inference.INT8_VARIANTS)
                print(f"| {r['dim']} | {r['batch']:,} | {r['float32_turns_per_s']:,.0f} | {cells} |")
        if "stream" in self.parts:
            rows = inference.streaming_latency()
            results["stream"] = rows
            print("\nstreaming scorer, one turn per call")
            print("| case | p50 ms | p99 ms | turns/s |\n|---|---:|---:|---:|")
            for r in rows:
                print(f"| {r['case']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['turns_per_s']:,.0f} |")
        if "loop" in self.parts:
            r = inference.loop_baseline(max(self.dims))
            results["loop"] = r
            print(f"\nper-turn Python loop (the incumbent's way) vs batch {r['batch']}, {r['dim']}-d, same model:")
            print(f"  loop {r['loop_turns_per_s']:,.0f} turns/s; batch float32 {r['batch_float32_turns_per_s']:,.0f} "
                  f"({r['float32_speedup']:.1f}x); batch int8 {r['batch_int8_turns_per_s']:,.0f} "
                  f"({r['int8_speedup']:.1f}x)")
        if "train" in self.parts:
            peak = matmul_peak_flops()
            rows = training.training_throughput(self.dims, peak_flops=peak, min_seconds=max(self.min_seconds, 2.0))
            results["matmul_peak_gflops"] = peak / 1e9
            results["train"] = rows
            print(f"\ntraining throughput (measured matmul peak {peak / 1e9:,.1f} GFLOP/s, 2048^3 float32)")
            print("| dim | model | params | pretrain turns/s | GFLOP/s (% peak) | compile s | PPO env steps/s | "
                  "GFLOP/s (% peak) | compile s |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                pre_f = f"{r.get('pretrain_gflops_per_s', float('nan')):.1f} ({r.get('pretrain_fraction_of_peak', float('nan')):.0%})"
                ppo_f = f"{r.get('ppo_gflops_per_s', float('nan')):.1f} ({r.get('ppo_fraction_of_peak', float('nan')):.0%})"
                print(f"| {r['dim']} | {r['model']} | {r['parameters']:,} | {r['pretrain_turns_per_s']:,.0f} | {pre_f} | "
                      f"{r['pretrain_compile_s']:.1f} | {r['ppo_env_steps_per_s']:,.0f} | {ppo_f} | {r['ppo_compile_s']:.1f} |")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(results, indent=1))
        print(f"\nall numbers: {self.out}")


@dataclasses.dataclass
class Demo:
    """The whole pipeline on embedded defaults, offline: generate synthetic train and test archives, validate,
    embed, train a small model (supervised + PPO), and evaluate it against the simulator's oracle."""

    workdir: Path = Path("runs/demo")
    """Where every artefact of the demo goes."""
    num_conversations: int = 2_000
    """Size of the synthetic training archive (the test archive is a quarter of it, from another seed)."""
    seed: int = 0
    """Simulator seed (the test archive uses seed + 1)."""

    def run(self) -> None:
        from salesrl_jax.arrays.build import embed_archive
        from salesrl_jax.data.readers import ArchiveReader, RejectSink
        from salesrl_jax.eval.predict import make_predict, predict_arrays
        from salesrl_jax.eval.report import evaluation_tables, format_tables, write_report
        from salesrl_jax.eval.simulator_report import format_summary
        from salesrl_jax.sim.generate import generate
        from salesrl_jax.train import presets
        from salesrl_jax.train.checkpoint import TrainedModel
        from salesrl_jax.train.loop import train_and_evaluate

        steps = 6
        train_data, test_data = self.workdir / "synthetic", self.workdir / "synthetic-test"
        num_test = max(self.num_conversations // 4, 100)
        print(f"[1/{steps}] generate {self.num_conversations} training and {num_test} test conversations "
              f"-> {train_data}/, {test_data}/")
        result = generate(SimulatorConfig(num_conversations=self.num_conversations, seed=self.seed), train_data,
                          fmt="parquet")
        generate(SimulatorConfig(num_conversations=num_test, seed=self.seed + 1), test_data, fmt="parquet")
        print(format_summary(result))

        print(f"\n[2/{steps}] validate {train_data}/ by reading it back")
        rejects_path = self.workdir / "synthetic.rejects.jsonl"
        with RejectSink(rejects_path) as rejects:
            reader = ArchiveReader(train_data, rejects=rejects)
            first = None
            for conv in reader:
                first = first or conv
        print(f"read back         {reader.stats.conversations} conversations, {reader.stats.turns} turns")
        _print_rejects(rejects, rejects_path)
        if first is not None:
            print(f"\nfirst conversation ({first.id}, {first.industry}, outcome {first.outcome}):")
            for index, turn in enumerate(first.turns):
                print(f"  {index + 1:>2} {turn.speaker:<8} oracle {turn.oracle_prob:.2f}  {turn.text}")

        arrays_dir, test_arrays_dir = self.workdir / "arrays", self.workdir / "arrays-test"
        print(f"\n[3/{steps}] embed (offline hashing embedder) and featurise -> {arrays_dir}/, {test_arrays_dir}/")
        embedded = embed_archive(train_data, arrays_dir, EmbedderConfig(), chunk_conversations=1_000)
        test_embedded = embed_archive(test_data, test_arrays_dir, EmbedderConfig(), chunk_conversations=1_000)
        print(format_embed_result(embedded, arrays_dir))

        run_dir = self.workdir / "model"
        config = presets.demo(arrays_dir)
        print(f"\n[4/{steps}] train ({config.pretrain.epochs} supervised epochs, then {config.ppo.updates} PPO "
              f"updates) -> {run_dir}/")
        trained = train_and_evaluate(config, run_dir)
        print(format_train_result(trained))

        print(f"\n[5/{steps}] evaluate the best checkpoint on the held-out test archive (oracle = the ceiling)")
        model = TrainedModel.load(run_dir)
        pred = predict_arrays(make_predict(model.graphdef), model.params, test_embedded.arrays)
        report = write_report(pred, run_dir / "eval-test", "Evaluation: demo",
                              f"model `{run_dir}`, data `{test_arrays_dir}`")
        print(format_tables(evaluation_tables(pred)))
        print(f"\nreport with plots: {report}")

        from salesrl_jax.data.writers import write_conversations
        from salesrl_jax.infer.archive import score_archive

        transcripts = self.workdir / "transcripts.jsonl"
        write_conversations(transcripts, ArchiveReader(test_data))
        scores = self.workdir / "scores.jsonl"
        print(f"\n[6/{steps}] score raw transcripts {transcripts} with the int8 model -> {scores}")
        scored = score_archive(run_dir, transcripts, scores, quantized=True)
        print(f"scored {scored.conversations:,} conversations, {scored.turns:,} turns; per conversation: "
              f"{scored.outputs['conversations']}")
        summary = json.loads(scored.outputs["conversations"].read_text().splitlines()[0])
        conversation = next(iter(ArchiveReader(test_data)))
        print(f"\n{summary['conversation_id']} turn by turn (P(sale) after each turn; outcome {summary['outcome']}):")
        for index, (turn, prob) in enumerate(zip(conversation.turns, summary["trajectory"])):
            print(f"  {index + 1:>2} {turn.speaker:<8} P(sale) {prob:.2f}  oracle {turn.oracle_prob:.2f}  "
                  f"{turn.text[:70]}")


def _command_type(train_default: Train):
    return Union[
        Annotated[Demo, tyro.conf.subcommand("demo")],
        Annotated[Generate, tyro.conf.subcommand("generate")],
        Annotated[Embed, tyro.conf.subcommand("embed")],
        Annotated[Train, tyro.conf.subcommand("train", default=train_default)],
        Annotated[Evaluate, tyro.conf.subcommand("evaluate")],
        Annotated[Score, tyro.conf.subcommand("score")],
        Annotated[Quantize, tyro.conf.subcommand("quantize")],
        Annotated[Calibrate, tyro.conf.subcommand("calibrate")],
        Annotated[Bench, tyro.conf.subcommand("bench")],
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
    """Entry point of the ``salesrl`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config_file = _config_file(argv) if argv[:1] == ["train"] else None
        train_default = Train(config_file=config_file, config=load_config(config_file))
        command = tyro.cli(_command_type(train_default), args=argv, prog="salesrl",
                           description="salesrl-jax: real-time, turn-by-turn sales-conversion prediction.")
        command.run()
    except (FileNotFoundError, ValueError) as err:
        # Expected user errors (a missing file, a bad config) get one clear line, not a traceback.
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main(sys.argv[1:])

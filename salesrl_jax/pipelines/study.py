"""`salesrl study`: an ablation study as one command, every number with its uncertainty.

For a `salesrl_jax.run.study.Study`, in ``WORKDIR``:

* ``data/NAME/``: each synthetic data set generated and embedded (resumable, a no-op when done);
* ``runs/VARIANT/seed-S/``: each variant x seed trained. Runs whose configs differ only in their seed and numeric
  hyperparameters (a variant's seeds, a sweep's settings, a learning-rate variant beside the full model) train
  together in one compiled program vmapped over them (`train_together`, up to ``Study.max_together`` per
  program; each run its own resumable workdir); variants whose configs are equal once resolved for the data,
  as the int8 row and the full model, share one run. Each row is evaluated on every test set (``eval-TEST/``:
  `evaluate_model`'s report, metrics and per-turn predictions); a finished run or evaluation is kept, so a
  killed study continues where it stopped and a finished one only rebuilds the table;
* ``runs/SWEEP/setting-K/seed-S/``: each sweep's settings; ``runs/SWEEP/choice.json`` the setting kept (lowest
  mean validation log loss over seeds, never the test set), whose models ``runs/SWEEP/seed-S/eval-TEST/``
  evaluate;
* ``baselines/TEST/``: the baseline rows, fitted once on the same training data (majority class; with
  archives, TF-IDF logistic regressions and gradient-boosted trees, `salesrl_jax.baselines`);
* ``table.md``, ``table.csv``, ``table.json``, ``sweeps.json`` (with sweeps), ``study.json`` and ``forest.png``.

**The table**, per test set and variant: the mean over seeds of last-turn AUC, ECE and Brier, AUC at turns
2, 4 and 8 (conversations still running) and the AUC gap to the simulator's oracle where there is one,
each with a 95% Student-t interval over seeds, ``mean +- t_{0.975, n-1} s / sqrt(n)``; and the
difference of last-turn AUC to the base variant, paired by seed (both variants trained with seed s,
evaluated on the same test conversations): the mean difference, its t interval and the paired t-test's
p-value.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salesrl_jax.io.atomic import write_json_atomic, write_text_atomic
from salesrl_jax.run.config import (
    ABSENT,
    SMALL_DATA_OVERRIDES,
    TrainConfig,
    dotted_fields,
    field_changes,
    program_fields,
    resolve_regime,
)
from salesrl_jax.run.study import Data, Study, load_study, variant_config

if TYPE_CHECKING:
    from salesrl_jax.arrays.store import TurnArrays

POINTS = (2, 4, 8)  # turn indices tabulated beside the last turn
# Last-turn accuracy (at 0.5) because the paper's Table III reports accuracies; AUC is the column to compare rows by.
COLUMNS = ("last_auc", "last_accuracy", "last_ece", "last_brier", *(f"auc_t{k}" for k in POINTS), "oracle_gap")


# --- numbers ------------------------------------------------------------------------------------

def mean_interval(values: list[float], level: float = 0.95, bounds: tuple[float, float] = (-math.inf, math.inf)
                  ) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student-t interval ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)`` over ``values``
    (NaN ends for fewer than two values; NaN values are left out), its ends clipped to ``bounds``, the range the
    metric can take: over two seeds ``t`` is 12.7, and an accuracy interval reached 1.62."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1])


def paired_test(values: list[float], base: list[float], level: float = 0.95) -> dict[str, float]:
    """Mean difference ``values - base`` (paired element by element), its t interval and the paired t-test's
    two-sided p-value (NaN with fewer than two pairs; a constant nonzero difference gives p = 0)."""
    from scipy import stats

    diffs = [a - b for a, b in zip(values, base) if math.isfinite(a) and math.isfinite(b)]
    mean, lo, hi = mean_interval(diffs, level, bounds=(-1.0, 1.0))  # differences of metrics in [0, 1]
    p = math.nan
    if len(diffs) >= 2:
        p = 0.0 if np.std(diffs) == 0 and mean != 0 else (1.0 if np.std(diffs) == 0 else
                                                         float(stats.ttest_1samp(diffs, 0.0).pvalue))
    return {"diff": mean, "lo": lo, "hi": hi, "p": p, "pairs": len(diffs)}


def run_metrics(metrics_json: dict) -> dict[str, float]:
    """The study's columns from one evaluation's ``metrics.json``."""
    last = metrics_json["last_turn"]
    model = last["model"]
    row = {"last_auc": model.get("auc"), "last_accuracy": model.get("accuracy"), "last_ece": model.get("ece"),
           "last_brier": model.get("brier")}
    by_turn = {r["turn"]: r["model"].get("auc") for r in metrics_json["by_turn"]}
    row.update({f"auc_t{k}": by_turn.get(k) for k in POINTS})
    oracle = last.get("oracle", {}).get("auc")
    row["oracle_gap"] = None if oracle is None or row["last_auc"] is None else oracle - row["last_auc"]
    return {k: (math.nan if v is None else float(v)) for k, v in row.items()}


# --- the run ------------------------------------------------------------------------------------

@dataclasses.dataclass
class StudyResult:
    workdir: Path
    table: dict
    runs_trained: int
    runs_reused: int

    def summary(self) -> str:
        return (f"{self.runs_trained} runs trained, {self.runs_reused} reused\n\n"
                f"{(self.workdir / 'table.md').read_text()}\ntable: {self.workdir / 'table.md'}")


def data_paths(name: str, data: Data, workdir: Path) -> tuple[Path, Path | None]:
    """``(arrays, archive)`` of a data set: the given ones, or where the study makes synthetic data."""
    if data.synthetic is None:
        return Path(data.arrays), (Path(data.archive) if data.archive else None)
    return workdir / "data" / name / "arrays", workdir / "data" / name / "archive"


def prepare_data(name: str, data: Data, study: Study, workdir: Path) -> tuple[Path, Path | None]:
    """``(arrays, archive)`` of a data set, generating and embedding synthetic data under ``workdir/data``."""
    if data.synthetic is None:
        return data_paths(name, data, workdir)
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.sim.generate import generate, simulated_config

    root = workdir / "data" / name
    sim = data.synthetic.simulator_config()
    made = simulated_config(root / "archive")
    if made is None:
        generate(sim, root / "archive", fmt="parquet")
    elif made != sim:  # the study file's data set changed since this workdir's runs were trained on it
        changed = [f.name for f in dataclasses.fields(sim) if getattr(made, f.name) != getattr(sim, f.name)]
        raise ValueError(f"{root}: generated with other {', '.join(changed)} ("
                         + ", ".join(f"{k}={getattr(made, k)!r}" for k in changed) + f") than the study's {name!r} "
                         "data set asks for; its runs were trained on that data: use a new --workdir or delete it")
    embed_archive(root / "archive", root / "arrays", study.embedder)
    return root / "arrays", root / "archive"


def check_finished_run(config: TrainConfig, run_dir: Path, arrays: TurnArrays | None = None) -> None:
    """Refuse a finished run (``result.json``) whose saved config is not the one the study now asks for: the
    study file, its overrides or the library's defaults changed since it trained, and keeping it would put another
    recipe's numbers in this row. ``config`` is compared as a run on ``arrays`` saves it (`resolve_run_config`;
    None: as given). The name is left out (runs of one config share a directory across variants)."""
    if not (run_dir / "result.json").exists():
        return  # an unfinished run resumes, and resuming refuses a changed config itself
    if arrays is not None:
        from salesrl_jax.train.loop import resolve_run_config

        config = resolve_run_config(config, arrays)[0]
    saved = dotted_fields(json.loads((run_dir / "config.json").read_text()))
    wanted = dotted_fields(json.loads(config.to_json()))
    changed = field_changes(saved, wanted, ignore=("name",))
    if changed:
        raise ValueError(f"{run_dir}: trained with other {', '.join(changed)} than the study now asks for ("
                         + "; ".join(f"{k}: saved {saved.get(k, ABSENT)!r}, now {wanted.get(k, ABSENT)!r}"
                                     for k in changed)
                         + "); use a new --workdir, or delete this run to train it again")


def run_study(study_file: str | Path, workdir: str | Path, *, seeds: tuple[int, ...] | None = None,
              overrides: dict | None = None, progress: bool = True, max_runs: int | None = None) -> StudyResult:
    """Run (or continue, or re-tabulate) the study of ``study_file`` in ``workdir``.

    ``seeds`` and ``overrides`` (dotted fields for every variant) replace the file's; ``max_runs`` stops before
    the next program once that many runs are trained (a test's stand-in for a kill; rerun to continue)."""
    from tqdm import tqdm

    from salesrl_jax.arrays.store import TurnArrays
    from salesrl_jax.eval.evaluate import evaluate_model
    from salesrl_jax.run.trained_model import TrainedModel
    from salesrl_jax.train.loop import train_together

    study = load_study(study_file)
    if seeds is not None or overrides:
        study = dataclasses.replace(study, seeds=tuple(seeds or study.seeds),
                                    overrides={**study.overrides, **(overrides or {})})
    workdir = Path(workdir)
    runs = study.runs()  # the variants, then each sweep's settings
    # Every config is built before any work: an unknown field fails at once, naming file and variant.
    configs = {(v.name, s): variant_config(study, v, s, data_paths("train", study.train, workdir)[0], study_file)
               for v in runs for s in study.seeds}
    # A sweep chooses by validation loss: a run that holds none out fails here (a pinned large regime keeps the
    # config's split) or once the regime is resolved for the data below.
    _check_sweeps_hold_out(study, {key: c for key, c in configs.items() if c.regime == "large"}, study_file)
    train_arrays, train_archive = prepare_data("train", study.train, study, workdir)
    if study.embedder.kind == "auto":  # synthetic test sets are embedded as the training data was
        study = dataclasses.replace(study, embedder=study.embedder.resolved(TurnArrays.open(train_arrays).identity.kind))
    tests = {name: prepare_data(f"test-{name}", data, study, workdir) for name, data in study.tests.items()}
    write_json_atomic(workdir / "study.json", {"study": str(study_file), "seeds": list(study.seeds),
                                               "variants": [v.name for v in study.variants],
                                               "sweeps": [dataclasses.asdict(sw) for sw in study.sweeps],
                                               "overrides": dict(study.overrides)})
    # Runs that train the same config once resolved for the data (the int8 row is the full model evaluated
    # quantized; on small data "supervised only" is the full model) share one run directory.
    train_set = TurnArrays.open(train_arrays)
    labelled = int(train_set.manifest["counts"]["labelled"])
    resolved = {key: resolve_regime(config, labelled) for key, config in configs.items()}
    owner: dict[tuple[str, int], Path] = {}
    run_dirs = {}
    for (name, seed), config in resolved.items():
        key = (json.dumps({**json.loads(config.to_json()), "name": None}), seed)
        run_dirs[name, seed] = owner.setdefault(key, workdir / "runs" / name / f"seed-{seed}")
    _check_sweeps(study, run_dirs, study_file)
    _check_sweeps_hold_out(study, resolved, study_file)

    # --- training: runs that differ only in seeds and numeric hyperparameters share one compiled program ---
    # The programs are fixed by the study, not by what is finished (a killed study's runs resume in the program
    # they started in, with the same companions: the same float rounding as uninterrupted).
    owned = [key for key in configs if run_dirs[key] == workdir / "runs" / key[0] / f"seed-{key[1]}"]
    for key in owned:
        check_finished_run(resolved[key], run_dirs[key], train_set)
    groups: dict[str, list[tuple[str, int]]] = {}
    for key in owned:
        groups.setdefault(json.dumps(program_fields(resolved[key]), sort_keys=True, default=str), []).append(key)
    size = study.max_together if study.seeds_together else 1
    programs = [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]
    unfinished = [[key for key in program if not (run_dirs[key] / "result.json").exists()] for program in programs]
    pending = sum(len(keys) for keys in unfinished)
    reused, trained = len(owned) - pending, 0
    def evaluate(rows: list, bar=None) -> None:
        """Evaluate every (row, seed) whose model is trained and whose evaluation is missing."""
        for name, quantized, dirs in rows:
            for seed in study.seeds:
                if not (dirs[seed] / "result.json").exists():
                    continue
                model = None
                for test, (arrays, _) in tests.items():
                    out = workdir / "runs" / name / f"seed-{seed}" / f"eval-{test}"
                    if (out / "metrics.json").exists():
                        continue
                    model = model or TrainedModel.load(dirs[seed])
                    # No figures: the table reads the numbers (`salesrl evaluate` draws them for one run).
                    evaluate_model(model, arrays, out, weights=_int8(model) if quantized else None,
                                   label="int8" if quantized else "", plots=False)
                if bar is not None:
                    bar.update(1)

    # Each variant's rows are evaluated as soon as its runs are trained: a study stopped part way already holds
    # the evaluations of what it finished.
    rows = [(v.name, v.quantized, {seed: run_dirs[v.name, seed] for seed in study.seeds}) for v in study.variants]
    with tqdm(total=pending, unit="run", desc="study: train", disable=not progress) as bar:
        for keys in unfinished:
            if not keys:
                continue
            if max_runs is not None and trained >= max_runs:
                return StudyResult(workdir, {}, trained, reused)
            train_together([configs[key] for key in keys], [run_dirs[key] for key in keys], progress=False)
            trained += len(keys)
            bar.update(len(keys))
            evaluate(rows)

    # --- each sweep's setting, chosen by validation loss; then every row evaluated on the test sets ---------
    sweeps = {sweep.name: choose_setting(sweep, study.seeds, run_dirs, workdir) for sweep in study.sweeps}
    rows += [(name, False, {seed: run_dirs[choice["chosen_variant"], seed] for seed in study.seeds})
             for name, choice in sweeps.items()]
    with tqdm(total=len(rows) * len(study.seeds), unit="run", desc="study: evaluate", disable=not progress) as bar:
        evaluate(rows, bar)
    baselines = {name: fit_study_baselines(study, train_arrays, train_archive, arrays, archive,
                                           workdir / "baselines" / name)
                 for name, (arrays, archive) in tests.items()}
    table = tabulate(study, workdir, baselines)
    write_outputs(study, workdir, table, sweeps)
    return StudyResult(workdir, table, trained, reused)


def _check_sweeps_hold_out(study: Study, configs: dict, study_file) -> None:
    """A sweep chooses its setting by the inner validation split's log loss (`choose_setting`): a setting whose run
    holds no split out (``data.valid_fraction`` 0) has nothing to be chosen by, refused up front."""
    for sweep in study.sweeps:
        names = {v.name for v in sweep.variants()}
        unvalidated = sorted({name for (name, _), c in configs.items()
                              if name in names and c.data.valid_fraction <= 0})
        if unvalidated:
            raise ValueError(f"{study_file}: sweep {sweep.name!r} chooses its setting by validation log loss, but "
                             f"its runs {', '.join(unvalidated)} hold no validation split out (data.valid_fraction "
                             "0): give the sweep a data.valid_fraction above 0")


def _check_sweeps(study: Study, run_dirs: dict, study_file) -> None:
    """A sweep whose settings train one config once resolved for the data (the small-data regime sets some fields
    whatever the config says) would compare a run with itself: refused up front."""
    for sweep in study.sweeps:
        names = [v.name for v in sweep.variants()]
        for seed in study.seeds:
            dirs = [run_dirs[name, seed] for name in names]
            if len(set(dirs)) != len(dirs):
                raise ValueError(f"{study_file}: sweep {sweep.name!r}: some settings train the same config once "
                                 f"resolved for the training data (the small-data regime sets "
                                 f"{sorted(set(k for s in sweep.expanded() for k in s) & set(SMALL_DATA_OVERRIDES))}"
                                 "); add 'regime': 'large' to the sweep's overrides to sweep them")


def choose_setting(sweep, seeds: tuple[int, ...], run_dirs: dict, workdir: Path) -> dict:
    """The sweep's settings with their validation log loss (each seed's best checkpoint on the inner validation
    split) and the chosen one: the lowest mean over seeds. Written to ``runs/SWEEP/choice.json``; when it differs
    from the choice recorded there (settings were added), the old choice's evaluations are removed, so the row is
    evaluated again from the new one's models."""
    settings = []
    for variant, setting in zip(sweep.variants(), sweep.expanded()):
        losses = [json.loads((run_dirs[variant.name, s] / "result.json").read_text())["best_valid"]["log_loss"]
                  for s in seeds]
        mean, lo, hi = mean_interval(losses, bounds=(0.0, math.inf))
        settings.append({"variant": variant.name, "setting": setting, "valid_log_loss": losses,
                         "mean": mean, "lo": lo, "hi": hi})
    best = min(range(len(settings)), key=lambda k: settings[k]["mean"])
    choice = {"sweep": sweep.name, "chosen": best, "chosen_variant": settings[best]["variant"],
              "chosen_setting": settings[best]["setting"], "settings": settings,
              "rule": "lowest mean over seeds of the best checkpoint's validation log loss"}
    path = workdir / "runs" / sweep.name / "choice.json"
    if path.exists() and json.loads(path.read_text())["chosen_variant"] != choice["chosen_variant"]:
        for stale in (workdir / "runs" / sweep.name).glob("seed-*/eval-*"):
            shutil.rmtree(stale)
    write_json_atomic(path, choice)
    return choice


def _int8(model):
    from salesrl_jax.infer.quantize import int8_model

    graphdef, params, _ = int8_model(model)
    return graphdef, params


# --- baselines ------------------------------------------------------------------------------------

def fit_study_baselines(study: Study, train_arrays: Path, train_archive: Path | None, test_arrays: Path,
                        test_archive: Path | None, out: Path) -> dict[str, dict[str, float]]:
    """The baseline rows on one test set (cached in ``out/metrics.json``, with the settings they were fitted with
    in ``out/fit.json``: changed settings refit them): the majority class always (the
    training base rate, per turn); the text baselines when both archives are known and scikit-learn is
    installed (`salesrl_jax.baselines`), fitted on every training conversation."""
    cached, fit_path = out / "metrics.json", out / "fit.json"
    settings = {"baselines": list(study.baselines), "baseline_max_prefixes": study.baseline_max_prefixes}
    if cached.exists() and fit_path.exists():  # NaN (no oracle on real data) is saved as null: read back as NaN
        rows = {method: {k: math.nan if v is None else v for k, v in row.items()}
                for method, row in json.loads(cached.read_text()).items()}
        fitted_with = json.loads(fit_path.read_text())
        # Refitted when the study's baseline settings changed, or the rows predate a column.
        if all(fitted_with.get(k) == v for k, v in settings.items()) and all(set(COLUMNS) <= set(r)
                                                                                for r in rows.values()):
            return rows
    from salesrl_jax.arrays.store import TurnArrays
    from salesrl_jax.eval.report import evaluation_tables

    rows: dict[str, dict[str, float]] = {}
    fit_note = {**settings, "training_prefixes": None, "of": None}  # prefixes: when text baselines were fitted
    test = _truth(TurnArrays.open(test_arrays))
    if "majority" in study.baselines:
        train = _truth(TurnArrays.open(train_arrays))
        rate = float(np.mean(train["outcome"]))
        rows["majority"] = run_metrics(evaluation_tables(_predictions(test, np.full(len(test["outcome"]), rate))))
    text = [b for b in study.baselines if b != "majority"]
    if text and (train_archive is None or test_archive is None):
        warnings.warn(f"{out.name}: no archives to read the text from; baselines {text} are left out", stacklevel=2)
    elif text and not _has_sklearn():
        warnings.warn(f"baselines {text} need scikit-learn (pip install 'salesrl-jax[baselines]'); left out",
                      stacklevel=2)
    elif text:
        from salesrl_jax.baselines.fit import fit_baselines
        from salesrl_jax.baselines.prefixes import build_prefixes, concat_tables
        from salesrl_jax.data.readers import read_conversations

        # Each archive read as its arrays were built from it (their label key and speaker names).
        train_set, test_set = TurnArrays.open(train_arrays), TurnArrays.open(test_arrays)
        train_table = build_prefixes(read_conversations(train_archive, limits=train_set.reading()), train_set,
                                     train_archive, max_rows=study.baseline_max_prefixes)
        test_table = build_prefixes(read_conversations(test_archive, limits=test_set.reading()), test_set,
                                    test_archive)
        fit_note.update(training_prefixes=len(train_table.turn_index), of=train_table.prefixes)
        if test_table.ids != test["ids"]:
            raise AssertionError("prefix table and arrays disagree on the test conversations")  # both cache order
        n_train = len(train_table.ids)
        fitted = fit_baselines(concat_tables(train_table, test_table), np.arange(n_train),
                               np.arange(n_train, n_train + len(test_table.ids)), methods=tuple(text),
                               max_prefix_rows=None)  # the training table holds `baseline_max_prefixes` already
        for method, probs in fitted.probs.items():  # held-out rows in cache order: the rows of `test`
            rows[method] = run_metrics(evaluation_tables(_predictions(test, probs)))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cached, rows)
    write_json_atomic(fit_path, fit_note)  # last: the cache is whole once it exists; the table reads it too
    return rows


def _has_sklearn() -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def _truth(arrays) -> dict:
    """Per-turn outcome, position and oracle of the labelled conversations of ``arrays``."""
    cols: dict[str, list] = {"outcome": [], "turn_index": [], "length": [], "conversation": [], "oracle": []}
    ids: list[str] = []
    for part in arrays.iter_parts():
        lengths = part.lengths
        for c in np.flatnonzero(np.asarray(part.outcome) >= 0):
            start, n = int(part.offsets[c]), int(lengths[c])
            cols["outcome"].append(np.full(n, int(part.outcome[c])))
            cols["turn_index"].append(np.arange(n))
            cols["length"].append(np.full(n, n))
            cols["conversation"].append(np.full(n, len(ids)))
            cols["oracle"].append(np.asarray(part.oracle_prob[start:start + n], np.float32))
            ids.append(part.ids[c])
    return {**{k: np.concatenate(v) for k, v in cols.items()}, "ids": ids}


def _predictions(truth: dict, probs: np.ndarray):
    from salesrl_jax.models.predict import TurnPredictions

    n = len(truth["outcome"])
    return TurnPredictions(np.asarray(probs, np.float32), np.zeros(n, np.float32),
                           np.asarray(truth["oracle"], np.float32), np.asarray(truth["outcome"], np.int8),
                           np.asarray(truth["turn_index"], np.int32), np.asarray(truth["length"], np.int32),
                           np.asarray(truth["conversation"], np.int64), list(truth["ids"]),
                           [None] * len(truth["ids"]))


# --- the table ------------------------------------------------------------------------------------

def tabulate(study: Study, workdir: Path, baselines: dict[str, dict]) -> dict:
    """``{test: {"variants": {name: {column: {mean, lo, hi, seeds}}, "vs_base": {...}}}, "baselines": {...}}}``."""
    table: dict = {}
    for test in study.tests:
        per_seed = {row: {s: run_metrics(json.loads((workdir / "runs" / row / f"seed-{s}" / f"eval-{test}" /
                                                     "metrics.json").read_text()))
                          for s in study.seeds} for row in study.rows}
        variants = {}
        for row in study.rows:
            variants[row] = {}
            for column in COLUMNS:
                values = [per_seed[row][s][column] for s in study.seeds]
                mean, lo, hi = mean_interval(values, bounds=(-1.0, 1.0) if column == "oracle_gap" else (0.0, 1.0))
                variants[row][column] = {"mean": mean, "lo": lo, "hi": hi, "seeds": values}
            base = [per_seed[study.base_variant][s]["last_auc"] for s in study.seeds]
            variants[row]["vs_base"] = paired_test([per_seed[row][s]["last_auc"] for s in study.seeds], base)
        table[test] = {"variants": variants, "baselines": baselines.get(test, {})}
        fit = workdir / "baselines" / test / "fit.json"
        if fit.exists():
            table[test]["baseline_fit"] = json.loads(fit.read_text())
    return table


def _fmt(entry: dict) -> str:
    mean, lo, hi = entry["mean"], entry["lo"], entry["hi"]
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.3f}" if not math.isfinite(lo) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(study: Study, table: dict, sweeps: dict | None = None) -> str:
    head = ["variant", "last AUC", "last accuracy", "last ECE", "last Brier", *(f"AUC t={k}" for k in POINTS),
            "oracle gap",
            f"last AUC - {study.base_variant} (paired)", "p"]
    lines = [f"# Study `{study.name}`: {len(study.seeds)} seeds ({', '.join(map(str, study.seeds))}), mean "
             "[95% t interval over seeds]", ""]
    for test, entry in table.items():
        lines += [f"## Test set `{test}`", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for name, row in entry["variants"].items():
            vs = row["vs_base"]
            diff = "-" if name == study.base_variant or not math.isfinite(vs["diff"]) else (
                f"{vs['diff']:+.3f}" + (f" [{vs['lo']:+.3f}, {vs['hi']:+.3f}]" if math.isfinite(vs["lo"]) else ""))
            p = "-" if name == study.base_variant or not math.isfinite(vs["p"]) else f"{vs['p']:.3f}"
            lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in COLUMNS) + f" | {diff} | {p} |")
        for name, row in entry["baselines"].items():
            cells = ["-" if not math.isfinite(row[c]) else f"{row[c]:.3f}" for c in COLUMNS]
            lines.append(f"| baseline: {name} | " + " | ".join(cells) + " | - | - |")
        fit = entry.get("baseline_fit")
        if fit and fit.get("training_prefixes") is not None and fit["training_prefixes"] < fit["of"]:
            lines += ["", f"The baselines fitted on prefixes saw {fit['training_prefixes']:,} of the "
                      f"{fit['of']:,} training prefixes: a random subset of each conversation's "
                      f"(`baseline_max_prefixes` {fit['baseline_max_prefixes']:,}); the whole-dialogue ones saw "
                      "every conversation."]
        lines.append("")
    for name, choice in (sweeps or {}).items():
        fields = list(choice["settings"][0]["setting"])
        lines += [f"## Sweep `{name}`: the row `{name}` is the setting with the lowest validation log loss", "",
                  "Chosen on each run's inner validation split (its best checkpoint's log loss, mean over seeds); "
                  "the test sets were not consulted.", "",
                  "| setting | " + " | ".join(fields) + " | validation log loss | chosen |",
                  "|---|" + "---:|" * len(fields) + "---:|---|"]
        for k, entry in enumerate(choice["settings"]):
            lines.append(f"| {k} | " + " | ".join(f"{entry['setting'][f]:g}" for f in fields) +
                         f" | {_fmt({'mean': entry['mean'], 'lo': entry['lo'], 'hi': entry['hi']})} | "
                         f"{'**yes**' if k == choice['chosen'] else ''} |")
        lines.append("")
    return "\n".join(lines)


def write_outputs(study: Study, workdir: Path, table: dict, sweeps: dict | None = None) -> None:
    write_text_atomic(workdir / "table.md", markdown(study, table, sweeps))
    write_json_atomic(workdir / "table.json", table)
    if sweeps:
        write_json_atomic(workdir / "sweeps.json", sweeps)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["test", "row", *(f"{c}_{k}" for c in COLUMNS for k in ("mean", "lo", "hi")),
                     "diff_vs_base", "diff_lo", "diff_hi", "p"])
    for test, entry in table.items():
        for name, row in entry["variants"].items():
            vs = row["vs_base"]
            writer.writerow([test, name, *(row[c][k] for c in COLUMNS for k in ("mean", "lo", "hi")),
                             vs["diff"], vs["lo"], vs["hi"], vs["p"]])
        for name, row in entry["baselines"].items():
            writer.writerow([test, f"baseline:{name}", *(v for c in COLUMNS for v in (row[c], "", "")),
                             "", "", "", ""])
    write_text_atomic(workdir / "table.csv", buffer.getvalue())
    forest_plot(study, table, workdir / "forest.png")


def forest_plot(study: Study, table: dict, path: Path) -> None:
    """Last-turn AUC difference to the base variant with its interval, one panel per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = list(table)
    fig, axes = plt.subplots(1, len(tests), figsize=(5 * len(tests), 0.5 * len(study.rows) + 1.5),
                             squeeze=False)
    for ax, test in zip(axes[0], tests):
        names = [row for row in study.rows if row != study.base_variant]
        diffs = [table[test]["variants"][n]["vs_base"] for n in names]
        y = np.arange(len(names))
        mean = np.array([d["diff"] for d in diffs])
        lo = np.array([d["lo"] if math.isfinite(d["lo"]) else d["diff"] for d in diffs])
        hi = np.array([d["hi"] if math.isfinite(d["hi"]) else d["diff"] for d in diffs])
        ax.errorbar(mean, y, xerr=[mean - lo, hi - mean], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set(yticks=y, yticklabels=names, xlabel=f"last-turn AUC minus {study.base_variant}", title=test)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

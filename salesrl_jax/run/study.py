"""What an ablation study is: variants of a base config, seeds, training data and test sets, in one file.

A study file (``configs/studies/*.py``) defines ``get_study() -> Study``::

    def get_study() -> Study:
        return Study(
            name="table3",
            variants=(Variant("full"), Variant("no_history", config="configs/ablations/no_history.py"),
                      Variant("lr_1e-3", overrides={"pretrain.learning_rate": 1e-3})),
            train=Data(synthetic=Synthetic(20_000, seed=0)),
            tests={"synthetic": Data(synthetic=Synthetic(5_000, seed=1))},
            seeds=(0, 1, 2))

A study may also hold sweeps (`Sweep`): a grid or list of settings of numeric hyperparameters, each setting x
seed a run, the setting with the lowest mean validation log loss kept as one row of the table::

    sweeps=(Sweep("lr", grid={"pretrain.learning_rate": (1e-3, 3e-3, 1e-2)}),)

`salesrl study FILE --workdir W` runs every variant x seed (`salesrl_jax.pipelines.study`). Each variant
is also an ordinary config: ``salesrl train --config`` runs any one of them alone (`Variant.config`
names a config file; `Variant.overrides` are dotted fields, as on the command line).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
from pathlib import Path
from typing import Any, Mapping

from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.io.python_file import call_in_file
from salesrl_jax.run.config import NUMERIC_FIELDS, TrainConfig, load_config, with_overrides

BASELINES = ("majority", "tfidf_plain_whole", "tfidf_tagged_prefix", "features_gbm")


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """Simulator conversations the study generates and embeds itself (under ``WORKDIR/data``)."""

    conversations: int
    seed: int
    exclude_industries: tuple[str, ...] = ()
    industries: tuple[str, ...] | None = None
    """Industries to draw from (None: all of the simulator's)."""
    industry_dynamics: float = 0.0
    """`SimulatorConfig.industry_dynamics`: how much the industries differ in what works."""

    def __post_init__(self) -> None:
        self.simulator_config()  # an unknown industry or a bad value fails when the study file is read

    def simulator_config(self):
        """The `SimulatorConfig` this data set is generated with."""
        from salesrl_jax.sim.config import SimulatorConfig

        industries = {} if self.industries is None else {"industries": tuple(self.industries)}
        return SimulatorConfig(num_conversations=self.conversations, seed=self.seed,
                               exclude_industries=tuple(self.exclude_industries),
                               industry_dynamics=self.industry_dynamics, **industries)


@dataclasses.dataclass(frozen=True)
class Data:
    """One data set: ``synthetic``, or cached ``arrays`` (with the ``archive`` they came from, which the text
    baselines read; without it only the majority baseline is fitted)."""

    synthetic: Synthetic | None = None
    arrays: Path | None = None
    archive: Path | None = None

    def __post_init__(self) -> None:
        if (self.synthetic is None) == (self.arrays is None):
            raise ValueError("a study's Data needs exactly one of synthetic= and arrays=")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the study: a config file (default: the default config) with dotted-field ``overrides``;
    ``quantized`` evaluates the int8 form of the trained model instead of the float one."""

    name: str
    config: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quantized: bool = False


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A row of the table chosen from settings of numeric hyperparameters (`NUMERIC_FIELDS`: learning rates,
    weight decay, clip norms, loss weights, PPO coefficients). Every setting x seed is trained, all of them in one
    compiled program vmapped over settings and seeds (their structure is one: the numbers reach the program as
    arrays); the setting with the lowest validation log loss (the best checkpoint's, on the inner validation
    split, averaged over seeds) is kept, and only it is evaluated on the test sets: the test set never chooses.

    ``grid`` maps dotted fields to values (every combination is a setting); ``settings`` lists settings
    instead. ``config`` and ``overrides`` give the structure, as in `Variant`."""

    name: str
    grid: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    settings: tuple[Mapping[str, float], ...] = ()
    config: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.grid) == bool(self.settings):
            raise ValueError(f"sweep {self.name!r} needs exactly one of grid= and settings=")
        fields = set(self.grid) | {k for setting in self.settings for k in setting}
        for field in sorted(fields):
            if field not in NUMERIC_FIELDS:
                raise ValueError(f"sweep {self.name!r}: {field!r} is not a numeric hyperparameter that one compiled "
                                 f"program can sweep (one of {', '.join(NUMERIC_FIELDS)}); structural changes are "
                                 "variants")
        for field, values in self.grid.items():
            if not values:
                raise ValueError(f"sweep {self.name!r}: no values for {field!r}")
        for setting in self.expanded():
            for field, value in setting.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"sweep {self.name!r}: {field} = {value!r} is not a finite number")
        if len({tuple(sorted(s.items())) for s in self.expanded()}) != len(self.expanded()):
            raise ValueError(f"sweep {self.name!r} lists a setting twice")

    def expanded(self) -> list[dict[str, float]]:
        """The settings: the grid's every combination (in the order its values are listed), or ``settings``."""
        if self.settings:
            return [dict(s) for s in self.settings]
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def variants(self) -> list[Variant]:
        """One variant per setting, named ``SWEEP/setting-K`` (its runs in ``runs/SWEEP/setting-K/seed-S``)."""
        return [Variant(f"{self.name}/setting-{k}", self.config, {**self.overrides, **setting})
                for k, setting in enumerate(self.expanded())]


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    variants: tuple[Variant, ...]
    train: Data
    tests: Mapping[str, Data]
    seeds: tuple[int, ...] = (0, 1, 2)
    sweeps: tuple[Sweep, ...] = ()
    """Rows chosen from settings of numeric hyperparameters by validation loss (`Sweep`)."""
    base: str | None = None
    """The variant every other is compared with (default: the first)."""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Dotted fields set in every variant (before the variant's own), e.g. a short training for a smoke study."""
    baselines: tuple[str, ...] = BASELINES
    """Baseline rows fitted on the same training data and test sets (text baselines need archives)."""
    baseline_max_prefixes: int | None = 300_000
    """At most about this many training prefixes for the baselines fitted on prefixes: past it each training
    conversation contributes a random subset of its prefixes (`salesrl_jax.baselines.prefixes.build_prefixes`).
    The baselines' memory: 100k synthetic conversations hold 900k prefixes, whose tables and fits took more than
    24 GB. None: every prefix. The 20k studies are under it (every prefix)."""
    embedder: EmbedderConfig = EmbedderConfig()
    """How the study embeds its synthetic data sets."""
    seeds_together: bool = True
    """Train the runs whose configs differ only in their seed and numeric hyperparameters (a variant's seeds, a
    sweep's settings, variants such as a learning-rate change) together, in one compiled program vmapped over them
    (each in its own run directory, the same parameters as alone to float rounding); False trains them one after
    another (the memory of one run: for models or minibatches too large to hold once per run)."""
    max_together: int = 16
    """At most this many runs in one program (its memory grows with it: parameters, optimizer state and one
    minibatch per run)."""
    tensorboard: bool = False
    """Every run writes TensorBoard scalars (``tensorboard --logdir WORKDIR/runs`` compares variants and seeds)."""

    def __post_init__(self) -> None:
        names = self.rows
        if not self.variants or len(set(names)) != len(names) or any("/" in n for n in names):
            raise ValueError(f"a study needs variants (and sweeps) with distinct names without '/', got {names}")
        if self.baseline_max_prefixes is not None and self.baseline_max_prefixes < 1:
            raise ValueError(f"baseline_max_prefixes must be >= 1 or None, got {self.baseline_max_prefixes}")
        if self.max_together < 1:
            raise ValueError(f"max_together must be >= 1, got {self.max_together}")
        if self.base is not None and self.base not in names:
            raise ValueError(f"base variant {self.base!r} is not one of {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a study needs distinct seeds, got {self.seeds}")
        if not self.tests:
            raise ValueError("a study needs at least one test set")
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {list(BASELINES)}")

    @property
    def base_variant(self) -> str:
        return self.base or self.variants[0].name

    @property
    def rows(self) -> list[str]:
        """The table's model rows: the variants, then the sweeps."""
        return [v.name for v in self.variants] + [s.name for s in self.sweeps]

    def runs(self) -> list[Variant]:
        """Every trained variant: the study's, then each sweep's settings."""
        return [*self.variants, *(v for sweep in self.sweeps for v in sweep.variants())]


def load_study(path: str | Path) -> Study:
    """``get_study()`` of a study file; any problem in it (an unknown field, a bad value) names the file."""
    return call_in_file(path, "get_study", Study, "study file")


def variant_config(study: Study, variant: Variant, seed: int, train_arrays: Path, where: Path | str) -> TrainConfig:
    """The config of one run: the variant's config file (relative to the study file, the working directory
    or the installed configs), the study's overrides, the variant's, the seed, the training arrays and the
    study's embedder. Any unknown field is an error naming the study file and the variant."""
    try:
        config = load_config(_config_path(variant.config, Path(where))) if variant.config else load_config(None)
        config = with_overrides(config, {**study.overrides, **variant.overrides})
        config = with_overrides(config, {"seed": seed, "data.train": str(train_arrays)})
        return dataclasses.replace(config, name=variant.name, embedder=study.embedder,
                                   tensorboard=config.tensorboard or study.tensorboard)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{where}: variant {variant.name!r}: {err}") from None


def _config_path(name: str, study_file: Path) -> Path:
    """A variant's config file: beside the study file, from the working directory, or (``configs/...``) in the
    installed configs package."""
    candidates = [study_file.parent / name, Path(name)]
    if Path(name).parts[:1] == ("configs",):
        candidates.append(_installed_configs().joinpath(*Path(name).parts[1:]))
    return next((c for c in candidates if c.is_file()), Path(name))  # load_config names a missing one


def _installed_configs() -> Path:
    spec = importlib.util.find_spec("salesrl_jax.configs")  # located, not imported: configs sit above this layer
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else Path(".")

"""Configs: files that import the default and override it, command-line overrides, clear validation errors."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from salesrl_jax.cli import main
from salesrl_jax.run.config import PPOConfig, PretrainConfig, TrainConfig, config_from_dict, load_config, with_overrides

CONFIGS = Path(__file__).parents[2] / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.py")
                 if p.name != "__init__.py" and p.parent.name not in ("studies", "guidance"))
GUIDANCE = sorted((CONFIGS / "guidance").glob("[!_]*.py"))
STUDIES = sorted((CONFIGS / "studies").glob("[!_]*.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_loads_and_round_trips(path):
    path_before = list(sys.path)
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    assert config_from_dict(json.loads(config.to_json())) == config
    assert sys.path == path_before and "configs" not in sys.modules  # imported as salesrl_jax.configs, no path edits


@pytest.mark.parametrize("path", GUIDANCE, ids=lambda p: p.name)
def test_every_shipped_guidance_config_loads_and_round_trips(path):
    from salesrl_jax.guidance.config import GuidanceConfig, load_guidance_config

    config = load_guidance_config(path)
    assert isinstance(config, GuidanceConfig) and GuidanceConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_shipped_study_loads_and_builds_every_config(path):
    from salesrl_jax.run.study import load_study, variant_config

    study = load_study(path)
    configs = [variant_config(study, v, s, Path("arrays"), path) for v in study.variants for s in study.seeds]
    assert len(configs) == len(study.variants) * len(study.seeds)
    assert all(c.seed in study.seeds and c.embedder == study.embedder for c in configs)


def test_ablation_files_are_named_after_themselves_and_load_from_anywhere(tmp_path):
    assert load_config(CONFIGS / "ablations" / "no_features.py").name == "no_features"
    copy = tmp_path / "my_ablation.py"  # a user's own file outside the project imports the shipped base
    copy.write_text((CONFIGS / "ablations" / "no_features.py").read_text())
    assert load_config(copy).name == "my_ablation" and not load_config(copy).model.use_features


def test_saved_configs_are_read_by_their_field_types():
    config = with_overrides(TrainConfig(), {"data.train": "runs/x", "model.decay_half_lives": [2.0, 8.0]})
    assert config.data.train == Path("runs/x") and config.model.decay_half_lives == (2.0, 8.0)
    raw = json.loads(config.to_json())
    assert config_from_dict(raw) == config
    with pytest.raises(ValueError, match="hidden_dimm"):
        config_from_dict({**raw, "model": {**raw["model"], "hidden_dimm": 3}})


def test_overrides_name_the_bad_field():
    with pytest.raises(ValueError, match="unknown config field 'model.histroy'"):
        with_overrides(TrainConfig(), {"model.histroy": "none"})
    with pytest.raises(ValueError, match="no section 'modle'"):
        with_overrides(TrainConfig(), {"modle.history": "none"})
    with pytest.raises(ValueError, match="pretrain.epochs must be > 0"):  # validation still runs
        with_overrides(TrainConfig(), {"pretrain.epochs": 0})
    with pytest.raises(ValueError, match="invalid saved config"):  # a value of the wrong type
        with_overrides(TrainConfig(), {"pretrain.epochs": "many"})
    for level in (0.0, 1.5):  # a test's level is a probability; 1 recalibrates whatever the split shows
        with pytest.raises(ValueError, match="recalibration_level must be in"):
            with_overrides(TrainConfig(), {"recalibration_level": level})
    assert with_overrides(TrainConfig(), {"recalibration_level": 1.0}).recalibration_level == 1.0


def test_ablations_change_only_what_they_say():
    default = load_config(CONFIGS / "default.py")
    no_history = load_config(CONFIGS / "ablations" / "no_history.py")
    assert no_history.model == dataclasses.replace(default.model, history="none")
    assert no_history.pretrain == default.pretrain and no_history.ppo == default.ppo
    assert not load_config(CONFIGS / "ablations" / "supervised_only.py").ppo.enabled


def test_command_line_overrides_a_config_file(tiny_arrays, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("salesrl_jax.cli.Train.run", lambda self: seen.setdefault("config", self.config))
    main(["train", "--config", str(CONFIGS / "ablations" / "no_history.py"), "--model.ensemble-size", "2",
          "--pretrain.epochs", "7", "--data.train", str(tiny_arrays), "--workdir", str(tmp_path)])
    config = seen["config"]
    assert config.model.history == "none" and config.model.ensemble_size == 2  # file, then override
    assert config.pretrain.epochs == 7 and config.data.train == tiny_arrays and config.name == "no_history"


@pytest.mark.parametrize("argv, message", [
    (["--pretrain.epochs", "0"], "pretrain.epochs must be > 0"),
    (["--ppo.rows-per-minibatch", "0"], "ppo.rows_per_minibatch must be > 0"),
    (["--pretrain.no-enabled", "--ppo.no-enabled"], "at least one of"),
    (["--model.decay-half-lives", "2", "-1"], "positive"),
    (["--data.valid-fraction", "1.5"], "valid_fraction"),
])
def test_invalid_settings_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    # tyro draws its error in a box: compare the words, not the line breaks.
    shown = " ".join((str(exit_info.value) + capsys.readouterr().err).replace("│", " ").split())
    assert message in shown


def test_missing_or_broken_config_files(tmp_path):
    with pytest.raises(SystemExit, match="no such config file"):
        main(["train", "--config", str(tmp_path / "absent.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\n")
    with pytest.raises(SystemExit, match="must define get_config"):
        main(["train", "--config", str(broken)])


def test_a_mismatched_embedding_space_is_refused(tiny_arrays, tmp_path):
    with pytest.raises(SystemExit, match="holds hashing:.*embeddings but the config says"):
        main(["train", "--data.train", str(tiny_arrays), "--embedder.dim", "64", "--workdir", str(tmp_path)])


def test_numeric_fields_are_validated_in_their_dataclasses():
    with pytest.raises(ValueError, match="learning_rate"):
        PretrainConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match=r"pretrain.ema_decay must be in \[0, 1\), got 1.0"):
        PretrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="minibatches"):
        PPOConfig(minibatches=0)


def test_the_regime_follows_the_amount_of_data():
    from salesrl_jax.run.config import SMALL_DATA_OVERRIDES, resolve_regime

    config = TrainConfig()
    small = resolve_regime(config, 800)
    assert small.regime == "small" and not small.ppo.enabled and small.data.valid_fraction == 0.2
    assert small.pretrain.schedule == "constant" and config.pretrain.schedule == "cosine"
    assert small.pretrain.ema_decay == 0.99 and config.pretrain.ema_decay == 0.0  # the average anneals for it
    ppo_only = resolve_regime(load_config(CONFIGS / "ablations" / "ppo_only.py"), 800)  # its only phase stays on
    assert ppo_only.ppo.enabled and not ppo_only.pretrain.enabled and ppo_only.regime == "small"
    assert with_overrides(small, {k: v for k, v in SMALL_DATA_OVERRIDES.items()}) == small
    large = resolve_regime(config, 10**6)
    assert large == dataclasses.replace(config, regime="large")
    pinned = resolve_regime(dataclasses.replace(config, regime="large"), 800)
    assert pinned.ppo.enabled and pinned.pretrain == config.pretrain
    assert resolve_regime(dataclasses.replace(config, regime="small"), 10**6).regime == "small"
    assert resolve_regime(small, 800) == small  # resolving twice changes nothing (resume compares configs)


def test_large_data_near_the_threshold_pretrains_longer():
    """Auto on large data reads at least MIN_CONVERSATION_READS training conversations (more epochs); a pinned
    large regime, and data large enough already, keep the epochs."""
    from salesrl_jax.run.config import MIN_CONVERSATION_READS, SMALL_DATA_CONVERSATIONS, resolution_note, resolve_regime

    config = TrainConfig()
    near = resolve_regime(config, SMALL_DATA_CONVERSATIONS)  # 18,000 training conversations after the 10% split
    assert near.regime == "large" and near.pretrain.epochs == 12
    assert near == dataclasses.replace(config, regime="large",
                                       pretrain=dataclasses.replace(config.pretrain, epochs=12))
    assert resolve_regime(near, SMALL_DATA_CONVERSATIONS) == near  # resolving twice changes nothing
    training = 50_000 * (1 - config.data.valid_fraction)
    assert resolve_regime(config, 50_000).pretrain.epochs == -(-MIN_CONVERSATION_READS // int(training)) == 5
    assert resolve_regime(config, 100_000).pretrain.epochs == config.pretrain.epochs == 4
    longer = with_overrides(config, {"pretrain.epochs": 20})
    assert resolve_regime(longer, SMALL_DATA_CONVERSATIONS).pretrain.epochs == 20  # never fewer than asked for
    pinned = dataclasses.replace(config, regime="large")
    assert resolve_regime(pinned, SMALL_DATA_CONVERSATIONS).pretrain.epochs == 4
    note = resolution_note(config, near, SMALL_DATA_CONVERSATIONS)
    assert note == "20,000 labelled conversations: regime large (auto given); pretrain.epochs 4 -> 12"
    assert resolution_note(pinned, resolve_regime(pinned, 10**6), 10**6).endswith("every field as given")

"""``train_guidance(config, workdir)``: PPO for the rep's next act, then a simulated A/B test against the scripted
rep, a rule table and the ceiling; and the policies an A/B test can name.

``WORKDIR`` holds ``config.json``, ``metrics.jsonl`` (one line per update and seed), ``policy/`` (the trained
parameters of every seed, an orbax checkpoint, with their digest in ``result.json``), ``result.json`` (with the
observation's size and, for the view "model", the conversion model's parameter digest, which a `Scorer` checks)
and ``ab/`` (`salesrl_jax.guidance.ab`'s report); for an API embedder, the bank's embedding cache. The training
is one jitted program (PureJaxRL's shape), so a killed
run starts again from the beginning; a trained one is not trained again, and a finished one (its A/B test
written) only reports what it measured.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from salesrl_jax.env.environment import EnvParams, make_params
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.guidance.ab import ABResult, compare, write_report
from salesrl_jax.guidance.bank import build_bank, model_embedder
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.policies import Policy, ceiling, learned, rule_table, scripted
from salesrl_jax.guidance.ppo import UpdateMetrics, init_params, make_apply, make_train, network, seed_inputs
from salesrl_jax.guidance.rollout import run_episodes
from salesrl_jax.guidance.views import ActsView, model_view
from salesrl_jax.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from salesrl_jax.io.digest import check_tree, tree_digest
from salesrl_jax.io.lock import claim_output

BUILT_IN = {"scripted": scripted, "rule": rule_table, "ceiling": ceiling, "ceiling_acts": lambda: ceiling(False)}


@dataclasses.dataclass
class GuidanceResult:
    workdir: Path
    seconds: float
    env_steps_per_s: float
    ab: ABResult

    def summary(self) -> str:
        lines = [f"run {self.workdir}: {self.seconds:.1f} s of training ({self.env_steps_per_s:,.0f} env steps/s, "
                 "compilation included)"]
        for name, row in self.ab.arms.items():
            c = row["conversion"]
            line = f"  {name:<14} conversion {c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]  exchanges " \
                   f"{row['exchanges']['mean']:.2f}"
            if "uplift" in row:
                u = row["uplift"]
                line += f"  uplift {u['mean']:+.3f} [{u['lo']:+.3f}, {u['hi']:+.3f}]"
            lines.append(line)
        lines.append(f"report: {self.workdir / 'ab' / 'report.md'}")
        return "\n".join(lines)


def env_params(config: GuidanceConfig) -> EnvParams:
    return make_params(config.simulator, time_cost=config.time_cost)


BANK_SEED = 0  # the bank is part of the environment: one rendering for every seed and run


def build_view(config: GuidanceConfig, params: EnvParams, cache: Path | None = None):
    """``(view, model)``: the config's observation view and, for the view "model", the conversion model it reads
    (`salesrl_jax.run.trained_model.TrainedModel`; None for the acts view). ``cache``: the bank's embedding cache
    (API embedders)."""
    if config.observation == "acts":
        return ActsView(params), None
    from salesrl_jax.run.trained_model import TrainedModel

    model = TrainedModel.load(config.model)
    embedder = model_embedder(model.config.embedder, cache)
    model.require_compatible(embedder.identity, FEATURE_NAMES, "the embedder of its config")
    bank = build_bank(config.simulator, embedder, config.bank_variants, seed=BANK_SEED)
    return model_view(model, bank, params), model


def train_guidance(config: GuidanceConfig, workdir: str | Path, *, progress: bool = True) -> GuidanceResult:
    """Train ``config``'s seeds together (one jitted, vmapped program), save them, and A/B-test the first seed's
    greedy policy against the scripted rep, the rule table and the ceiling on ``config.eval_conversations``
    conversations (common random numbers)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with claim_output(workdir):
        saved = workdir / "config.json"
        if saved.exists() and GuidanceConfig.from_json(saved.read_text()) != config:
            raise ValueError(f"{workdir} holds a guidance run with a different config; use a new workdir")
        write_text_atomic(saved, config.to_json())
        result_path, ab_path = workdir / "result.json", workdir / "ab" / "ab.json"
        if result_path.exists() and ab_path.exists():  # finished: report what it measured
            done = json.loads(result_path.read_text())
            return GuidanceResult(workdir, done["seconds"], done["env_steps_per_s"],
                                  ABResult(**json.loads(ab_path.read_text())))
        params = env_params(config)
        view, model = build_view(config, params, workdir / "bank-embeddings.sqlite")
        if result_path.exists():  # trained, stopped before its A/B test
            done = json.loads(result_path.read_text())
            seconds, rate = done["seconds"], done["env_steps_per_s"]
        else:
            train = jax.jit(jax.vmap(make_train(config, params, view)))
            start = time.perf_counter()
            runner, metrics = jax.block_until_ready(train(*seed_inputs(config, config.seeds, view.dim)))
            seconds = time.perf_counter() - start
            rate = len(config.seeds) * config.num_updates * config.num_envs * config.num_steps / seconds
            _write_metrics(workdir / "metrics.jsonl", config, metrics)
            digest = _save_policy(workdir / "policy", runner.params)
            write_json_atomic(result_path, {"seconds": seconds, "env_steps_per_s": rate, "policy_sha256": digest,
                                            "obs_dim": view.dim, "model_params_sha256": model and model.params_digest,
                                            "final": _final(config, metrics)})
        ab = ab_of_run(workdir, config, params, view)
        write_report(ab, workdir / "ab")
        return GuidanceResult(workdir, seconds, rate, ab)


def ab_of_run(workdir: Path, config: GuidanceConfig, params: EnvParams, view=None) -> ABResult:
    """The run's A/B test: the scripted rep (control), the rule table, its first seed's greedy policy and the
    ceiling, on ``config.eval_conversations`` conversations drawn from the seed ``10_000 + seeds[0]``."""
    policy = load_learned(workdir, view=view)
    return run_ab({"scripted": scripted(), "rule": rule_table(), policy.name: policy, "ceiling": ceiling()},
                  params, config.eval_conversations, seed=10_000 + config.seeds[0])


def _final(config: GuidanceConfig, metrics: UpdateMetrics) -> dict:
    last = jax.tree.map(lambda x: np.asarray(x)[:, -1], metrics)
    return {f"seed_{s}": {k: float(v[i]) for k, v in last._asdict().items()} for i, s in enumerate(config.seeds)}


def _write_metrics(path: Path, config: GuidanceConfig, metrics: UpdateMetrics) -> None:
    host = {k: np.asarray(v) for k, v in metrics._asdict().items()}  # [seeds, updates]
    per_update = config.num_envs * config.num_steps
    lines = []
    for i, seed in enumerate(config.seeds):
        for u in range(config.num_updates):
            lines.append(json.dumps({"seed": seed, "update": u, "env_steps": (u + 1) * per_update,
                                     **{k: float(v[i, u]) for k, v in host.items()}}))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _save_policy(path: Path, params) -> str:
    import orbax.checkpoint as ocp

    host = jax.tree.map(np.asarray, params)
    with atomic_path(path) as tmp:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp.absolute() / "params", host)
        checkpointer.wait_until_finished()
    return tree_digest(host)


@dataclasses.dataclass
class TrainedPolicy:
    """One seed's trained actor-critic of a guidance run: ``apply(params, obs) -> PolicyOutput``."""

    workdir: Path
    config: GuidanceConfig
    graphdef: object
    params: object
    obs_dim: int
    model_params_sha256: str | None  # the conversion model the view "model" read while training


def load_policy(workdir: str | Path, seed_index: int = 0) -> TrainedPolicy:
    """The trained parameters of seed ``seed_index`` (its position in the config's seeds) of a guidance run."""
    import orbax.checkpoint as ocp

    workdir = Path(workdir)
    if not (workdir / "result.json").exists():
        raise FileNotFoundError(f"{workdir}: no finished guidance run here (no result.json); train one with "
                                "`salesrl guidance train`")
    config = GuidanceConfig.from_json((workdir / "config.json").read_text())
    result = json.loads((workdir / "result.json").read_text())
    if "obs_dim" not in result:
        raise ValueError(f"{workdir}: a guidance run from an earlier version (no obs_dim in result.json, no action "
                         "values); train it again")
    if not 0 <= seed_index < len(config.seeds):
        raise ValueError(f"{workdir}: seed index {seed_index} out of range (seeds {list(config.seeds)})")
    obs_dim = int(result["obs_dim"])
    # Shapes only: nothing initialised.
    one = jax.eval_shape(lambda: init_params(config, obs_dim, jax.random.PRNGKey(0)))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(config.seeds), *x.shape), x.dtype), one)
    stacked = ocp.StandardCheckpointer().restore((workdir / "policy" / "params").absolute(), abstract)
    check_tree(stacked, result["policy_sha256"], f"guidance policy {workdir / 'policy'}")
    params = jax.tree.map(lambda x: jnp.asarray(x[seed_index]), stacked)
    return TrainedPolicy(workdir, config, network(config, obs_dim), params, obs_dim,
                         result.get("model_params_sha256"))


def split_run_spec(spec: str | Path) -> tuple[str, int]:
    """``DIR`` or ``DIR@K`` (the K-th seed of a guidance run) -> ``(DIR, K)``; a K that is not a number is refused."""
    path, at, index = str(spec).partition("@")
    if at and not index.isdigit():
        raise ValueError(f"guidance run {spec!r}: after @ comes a seed index (DIR@K, K = 0, 1, ...), got {index!r}")
    return path, int(index) if at else 0


def load_policy_spec(spec: str | Path) -> TrainedPolicy:
    """`load_policy` of ``DIR`` or ``DIR@K``."""
    return load_policy(*split_run_spec(spec))


def load_learned(workdir: str | Path, seed_index: int = 0, view=None) -> Policy:
    """The greedy policy of seed ``seed_index`` of a guidance run, with its observation view (built from the run's
    config unless given: for the view "model", the conversion model must still be where it was, unchanged)."""
    trained = load_policy(workdir, seed_index)
    config, workdir = trained.config, trained.workdir
    if view is None:
        view, model = build_view(config, env_params(config), workdir / "bank-embeddings.sqlite")
        if model is not None and model.params_digest != trained.model_params_sha256:
            raise ValueError(f"{workdir}: the policy was trained on the encoder state of another version of "
                             f"{config.model} (parameter digests differ); train the guidance run again")
    apply = make_apply(trained.graphdef)
    params = trained.params
    return learned(lambda obs: apply(params, obs), name=f"learned:{workdir.name}"
                   + (f"@{seed_index}" if seed_index else ""), view=view)


def resolve_policy(spec: str) -> Policy:
    """``scripted``, ``rule``, ``ceiling``, ``ceiling_acts``, or a guidance run directory (``DIR`` or ``DIR@K`` for
    the K-th seed)."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]()
    path, index = split_run_spec(spec)
    if not Path(path).is_dir():
        raise ValueError(f"unknown policy {spec!r}: one of {', '.join(BUILT_IN)}, or a guidance run directory")
    return load_learned(path, index)


def run_ab(policies: dict[str, Policy], params: EnvParams, conversations: int, seed: int = 0) -> ABResult:
    """Every policy on the same ``conversations`` (one key: common random numbers); the first is the control."""
    key = jax.random.PRNGKey(seed)
    episodes = {name: run_episodes(policy, key, conversations, params) for name, policy in policies.items()}
    return compare(episodes, params.industries, float(params.time_cost))

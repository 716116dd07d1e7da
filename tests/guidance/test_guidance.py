"""Guidance end to end: PPO in PureJaxRL's shape learns to beat the scripted rep (seeds vmapped in one program),
the A/B statistics against hand-computed cases, the CLI's train and ab commands, and bad policy names."""

import json

import jax
import numpy as np
import pytest

from salesrl_jax.cli import main
from salesrl_jax.env.environment import OBS_DIM, make_params
from salesrl_jax.guidance.ab import compare, mean_ci, rate_ci
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.policies import scripted
from salesrl_jax.guidance.ppo import gae, make_train, seed_inputs
from salesrl_jax.guidance.rollout import Episodes, run_episodes
from salesrl_jax.guidance.train import load_learned, train_guidance
from salesrl_jax.sim.config import SimulatorConfig

SMALL = GuidanceConfig(total_steps=100_000, num_envs=128, num_steps=16, seeds=(0, 1), eval_conversations=3000,
                       simulator=SimulatorConfig(industries=("saas", "insurance", "retail_pos")))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """SMALL, trained by the CLI from a config file with two fields overridden on the command line."""
    root = tmp_path_factory.mktemp("guidance")
    (root / "g.py").write_text("from salesrl_jax.guidance.config import GuidanceConfig\n"
                               "from salesrl_jax.sim.config import SimulatorConfig\n"
                               "def get_config():\n    return GuidanceConfig(total_steps=100_000, num_envs=128, "
                               "seeds=(0, 1), simulator=SimulatorConfig(industries=('saas', 'insurance', "
                               "'retail_pos')))\n")
    main(["guidance", "train", "--config", str(root / "g.py"), "--workdir", str(root / "run"), "--num-steps", "16",
          "--eval-conversations", "3000"])
    saved = GuidanceConfig.from_json((root / "run" / "config.json").read_text())
    assert saved == SMALL  # the file, then the command line's fields
    return train_guidance(SMALL, root / "run"), root / "run"  # finished: reports without training again


def test_ppo_learns_to_beat_the_scripted_rep_and_stays_under_the_ceiling(run):
    result, workdir = run
    arms = result.ab.arms
    learned = next(name for name in arms if name.startswith("learned"))
    # 100k exchanges per seed (seconds on 2 cores): far above the scripted rep, below the exact ceiling.
    assert arms[learned]["uplift"]["lo"] > 0.03, arms[learned]["uplift"]
    assert arms[learned]["sale_prob"]["mean"] <= arms["ceiling"]["sale_prob"]["mean"] + 0.01
    assert 0.3 < arms[learned]["share_of_ceiling_gap"] <= 1.05
    # Both seeds trained, in one program; the metrics log has every update of each.
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {line["seed"] for line in lines} == {0, 1} and len(lines) == 2 * SMALL.num_updates
    first, last = (np.mean([x["conversion"] for x in lines if x["update"] == u]) for u in (0, SMALL.num_updates - 1))
    assert last > first + 0.05
    for name in ("report.md", "ab.json", "ab.png"):
        assert (workdir / "ab" / name).stat().st_size > 200
    assert "Learned in simulation" in (workdir / "ab" / "report.md").read_text()


def test_a_finished_run_is_a_no_op_and_its_policy_reloads(run):
    result, workdir = run
    before = (workdir / "result.json").read_text()
    again = train_guidance(SMALL, workdir)
    assert (workdir / "result.json").read_text() == before and again.seconds == result.seconds
    assert again.ab.arms == result.ab.arms  # read back from ab/ab.json
    # Measured again from the saved policy: the same customers and the same policy give the same report.
    from salesrl_jax.guidance.train import ab_of_run, env_params

    assert ab_of_run(workdir, SMALL, env_params(SMALL)).arms == result.ab.arms
    assert json.loads((workdir / "ab" / "ab.json").read_text())["arms"].keys() == result.ab.arms.keys()
    second = load_learned(workdir, 1)
    assert second.name.endswith("@1")
    with pytest.raises(ValueError, match="different config"):
        train_guidance(GuidanceConfig(total_steps=1000, num_envs=64), workdir)


def test_seeds_vmapped_equal_each_seed_alone():
    config = GuidanceConfig(total_steps=4096, num_envs=64, num_steps=16, seeds=(3, 4),
                            simulator=SimulatorConfig(industries=("saas",)))
    params = make_params(config.simulator)
    train = make_train(config, params)
    keys, initial = seed_inputs(config, config.seeds, OBS_DIM)
    together = jax.jit(jax.vmap(train))(keys, initial)[1]
    for i in range(2):
        alone = jax.jit(train)(keys[i], jax.tree.map(lambda x: x[i], initial))[1]
        np.testing.assert_allclose(np.asarray(together.conversion[i]), np.asarray(alone.conversion), atol=1e-4)


def test_gae_by_hand():
    import jax.numpy as jnp

    from salesrl_jax.guidance.ppo import Transition

    z = jnp.zeros((3, 1))
    traj = Transition(obs=jnp.zeros((3, 1, 2)), action=z, reward=jnp.array([[0.0], [1.0], [0.5]]),
                      done=jnp.array([[False], [True], [False]]), value=jnp.array([[0.2], [0.4], [0.3]]),
                      log_prob=z, episode_return=z, episode_sale_prob=z, episode_exchanges=z)
    adv, ret = gae(traj, jnp.array([0.6]), gamma=1.0, lam=0.5)
    # t=2: 0.5 + 0.6 - 0.3 = 0.8; t=1 (done): 1.0 - 0.4 = 0.6; t=0: 0 + 0.4 - 0.2 + 0.5 * 0.6 = 0.5
    np.testing.assert_allclose(np.asarray(adv)[:, 0], [0.5, 0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, 0], [0.7, 1.0, 1.1], atol=1e-6)


def test_ab_statistics_by_hand():
    assert rate_ci(np.array([1, 0, 1, 1]))["mean"] == 0.75
    ci = mean_ci(np.array([1.0, 2.0, 3.0]))  # s = 1: half width 1.959964 / sqrt(3) = 1.131586
    assert ci["lo"] == pytest.approx(2 - 1.131586, abs=1e-5) and ci["hi"] == pytest.approx(2 + 1.131586, abs=1e-5)

    def arm(sale, exchanges):
        n = len(sale)
        return Episodes(np.asarray(sale, bool), np.asarray(sale, float), np.asarray(exchanges), np.zeros(n, int),
                        np.zeros(n, int), np.zeros((n, 11)), np.zeros((n, 12)), np.asarray(sale, float))

    a, b = arm([0, 1, 0, 1], [4, 4, 4, 4]), arm([1, 1, 0, 1], [3, 5, 4, 2])
    result = compare({"a": a, "b": b}, ("saas",))
    up = result.arms["b"]["uplift"]  # paired differences 1, 0, 0, 0: mean 0.25, s = 0.5
    assert up["mean"] == 0.25 and up["hi"] - up["mean"] == pytest.approx(1.959964 * 0.5 / 2, abs=1e-6)
    assert result.arms["b"]["exchanges_difference"]["mean"] == -0.5
    assert result.arms["b"]["relative_uplift"]["mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same conversations"):
        compare({"a": a, "b": arm([1, 1, 1], [1, 1, 1])}, ("saas",))


def test_policy_against_itself_has_zero_uplift_exactly():
    params = make_params(SimulatorConfig(industries=("saas",)))
    key = jax.random.PRNGKey(0)
    same = compare({"a": run_episodes(scripted(), key, 500, params), "b": run_episodes(scripted(), key, 500, params)},
                   params.industries)
    assert same.arms["b"]["uplift"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 500}


def test_cli_ab_with_a_trained_policy_and_bad_arms(run, tmp_path, capsys):
    _, workdir = run
    out = tmp_path / "ab"
    main(["guidance", "ab", "--policy", "scripted", "--policy", str(workdir), "--policy", "ceiling_acts",
          "--conversations", "1500", "--out", str(out), "--simulator.industries", "saas", "insurance"])
    printed = capsys.readouterr().out
    assert "learned:run" in printed and (out / "ab.png").exists()
    saved = json.loads((out / "ab.json").read_text())
    assert saved["conversations"] == 1500 and saved["industries"] == ["saas", "insurance"]
    with pytest.raises(SystemExit, match="unknown policy 'nope'"):
        main(["guidance", "ab", "--policy", "scripted", "--policy", "nope", "--out", str(out)])
    with pytest.raises(SystemExit, match="at least two"):
        main(["guidance", "ab", "--policy", "scripted", "--out", str(out)])

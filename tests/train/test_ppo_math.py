"""The PPO maths against hand-computed values and a Python-loop reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.train.ppo import clipped_surrogate, gae, scoring_reward


def gae_reference(rewards, values, dones, gamma, lam):
    advantages = np.zeros(len(rewards))
    next_advantage, next_value = 0.0, 0.0
    for t in reversed(range(len(rewards))):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * not_done * next_value - values[t]
        next_advantage = delta + gamma * lam * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


@pytest.mark.parametrize("gamma, lam", [(0.0, 0.95), (0.9, 0.95), (0.99, 1.0), (0.5, 0.0)])
def test_gae_matches_a_python_loop(gamma, lam):
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=9), rng.normal(size=9)
    dones = np.zeros(9)
    dones[5] = 1.0  # the episode ends at step 5; steps 6-8 are padding and must not reach back
    want_adv, want_ret = gae_reference(rewards, values, dones, gamma, lam)
    adv, ret = jax.jit(gae)(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32),
                            jnp.asarray(dones, jnp.float32), gamma, lam)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-5)
    # Changing the padding after the end changes nothing up to the end.
    adv2, _ = gae(jnp.asarray(rewards.copy() + np.r_[np.zeros(6), 5, 5, 5], jnp.float32),
                  jnp.asarray(values, jnp.float32), jnp.asarray(dones, jnp.float32), gamma, lam)
    np.testing.assert_allclose(adv2[:6], adv[:6], rtol=1e-6, atol=1e-6)


def test_gae_by_hand():
    # r = [1, 0, 2], V = [0.5, 0.2, 1.0], done at the last step, gamma = 0.5, lambda = 0.5:
    # delta_2 = 2 - 1 = 1;                       A_2 = 1
    # delta_1 = 0 + 0.5 * 1.0 - 0.2 = 0.3;       A_1 = 0.3 + 0.25 * 1 = 0.55
    # delta_0 = 1 + 0.5 * 0.2 - 0.5 = 0.6;       A_0 = 0.6 + 0.25 * 0.55 = 0.7375
    adv, ret = gae(jnp.array([1.0, 0.0, 2.0]), jnp.array([0.5, 0.2, 1.0]), jnp.array([0.0, 0.0, 1.0]), 0.5, 0.5)
    np.testing.assert_allclose(adv, [0.7375, 0.55, 1.0], rtol=1e-6)
    np.testing.assert_allclose(ret, [1.2375, 0.75, 2.0], rtol=1e-6)


def test_clipped_surrogate_by_hand():
    eps = 0.2
    log_old = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    log_new = jnp.log(jnp.array([0.75, 0.75, 0.25, 0.55]))  # ratios 1.5, 1.5, 0.5, 1.1
    advantage = jnp.array([2.0, -2.0, -1.0, 1.0])
    # A > 0, ratio 1.5: min(3.0, 1.2 * 2) = 2.4          -> loss -2.4
    # A < 0, ratio 1.5: min(-3.0, 1.2 * -2 = -2.4) = -3  -> loss 3.0
    # A < 0, ratio 0.5: min(-0.5, 0.8 * -1 = -0.8) = -0.8 -> loss 0.8
    # A > 0, ratio 1.1 (inside the clip): 1.1            -> loss -1.1
    np.testing.assert_allclose(clipped_surrogate(log_new, log_old, advantage, eps), [-2.4, 3.0, 0.8, -1.1], rtol=1e-5)


def test_scoring_rewards_by_hand_and_proper():
    a, y = jnp.array([0.8, 0.8, 0.0]), jnp.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(scoring_reward(a, y, "brier"), [1 - 0.04, 1 - 0.64, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scoring_reward(a, y, "log"), [np.log(0.8), np.log(0.2), np.log(1e-3)], rtol=1e-5)
    # Proper: for a true probability p, the expected score peaks at a = p.
    grid = jnp.linspace(0.01, 0.99, 99)
    for kind in ("brier", "log"):
        for p in (0.1, 0.37, 0.8):
            expected = p * scoring_reward(grid, 1.0, kind) + (1 - p) * scoring_reward(grid, 0.0, kind)
            assert abs(float(grid[jnp.argmax(expected)]) - p) < 0.011
    with pytest.raises(ValueError):
        scoring_reward(a, y, "hinge")


def test_constant_schedule_does_not_depend_on_the_planned_epochs():
    from salesrl_jax.train.state import pretrain_schedule

    per_epoch = 40
    short, long = (pretrain_schedule(1e-3, per_epoch * e, "constant", per_epoch) for e in (3, 20))
    steps = np.arange(0, 3 * per_epoch)
    np.testing.assert_allclose([short(s) for s in steps], [long(s) for s in steps])
    assert float(short(0)) == 0.0 and float(short(per_epoch)) == pytest.approx(1e-3)
    cosine_short, cosine_long = (pretrain_schedule(1e-3, per_epoch * e, "cosine") for e in (3, 20))
    assert float(cosine_short(2 * per_epoch)) < float(cosine_long(2 * per_epoch))  # why "constant" exists

"""Ablation: PPO with the log-score reward instead of the Brier-based one."""

from salesrl_jax.configs.ablations import ablation

get_config = ablation(__name__, {"ppo.reward": 'log'})

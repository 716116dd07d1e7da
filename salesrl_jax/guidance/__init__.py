"""Guidance: next-best-action policies in the simulator environment (`salesrl_jax.env`), trained end to end with
PPO, compared with the scripted rep, a rule table and the exact ceiling in simulated A/B tests."""

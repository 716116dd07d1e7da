"""Training: supervised pretraining and PPO as pure jitted updates, and the driver that runs them.

`loop.train_and_evaluate(config, workdir)` is the entry point; `phases` holds the one runner both phases
share, `supervised` and `ppo` the jitted updates (losses as pure functions of
``(params, graphdef, batch, hp, key)``), `state` the `TrainState` pytree and optimizers, `hyperparams`
the numeric hyperparameters as arrays, `position` / `metrics_log` / `validation` the driver's parts.
"""

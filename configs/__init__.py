"""Run configurations, installed as the package ``salesrl_jax.configs`` (see pyproject.toml).

Each file defines ``get_config() -> TrainConfig`` and is run with ``salesrl train --config FILE``; a
variant imports its base (``from salesrl_jax.configs.default import get_config``) and overrides fields.
"""

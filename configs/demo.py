"""The quickstart's small, fast run (what `salesrl demo` trains): about a minute on 2 cores."""

from salesrl_jax.train import presets


def get_config():
    return presets.demo()

"""The public API re-exported from `salesrl_jax`."""

import salesrl_jax


def test_every_public_name_resolves():
    for name in salesrl_jax.__all__:
        assert getattr(salesrl_jax, name) is not None

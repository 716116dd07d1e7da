"""Per-turn loss weights: which rows end a conversation, and the share of the loss they carry."""

import jax.numpy as jnp
import numpy as np
import pytest

from salesrl_jax.train.supervised import last_turns, masked_mean, turn_weights

# Two conversations of 3 and 2 turns, then padding; a second batch whose last row is a real last turn.
STARTS = jnp.array([True, False, False, True, False, False, False])
VALID = jnp.array([True, True, True, True, True, False, False])


def test_last_turns_are_the_rows_before_a_start_or_padding():
    np.testing.assert_array_equal(last_turns(STARTS, VALID), [False, False, True, False, True, False, False])
    full = jnp.array([True, False, True, False])
    np.testing.assert_array_equal(last_turns(full, jnp.ones(4, bool)), [False, True, False, True])


@pytest.mark.parametrize("share", [0.0, 0.3, 0.9])
def test_the_weighted_mean_mixes_all_turns_and_last_turns(share):
    values = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 100.0])
    got = masked_mean(values, turn_weights(STARTS, VALID, jnp.asarray(share)))
    expected = (1 - share) * np.mean([1, 2, 3, 4, 5]) + share * np.mean([3, 5])
    assert float(got) == pytest.approx(expected, rel=1e-6)

"""The ensemble heads' bootstrap weights: Exp(1), independent across heads, fixed per conversation for the run."""

import numpy as np

from salesrl_jax.arrays import batches as batch_lib
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.train.bootstrap import bootstrap_weights, conversation_first_rows
from salesrl_jax.train.phases import supervised_batch


def test_weights_are_independent_exponentials():
    w = bootstrap_weights(7, 0, np.arange(0, 400_000, 10), heads=5)  # 40,000 conversations
    assert w.shape == (40_000, 5) and w.dtype == np.float32
    assert abs(w.mean() - 1.0) < 0.01 and abs(w.var() - 1.0) < 0.03
    assert abs(np.mean(w > 1.0) - np.exp(-1.0)) < 0.005  # the Exp(1) tail
    correlation = np.corrcoef(w.T)[np.triu_indices(5, 1)]
    assert np.abs(correlation).max() < 0.02


def test_a_conversation_keeps_its_weights_and_runs_differ():
    rows = np.array([0, 12, 40, 12])
    w = bootstrap_weights(3, 1, rows, heads=4)
    np.testing.assert_array_equal(w[1], w[3])  # the same conversation, wherever it is packed
    assert not np.allclose(w[0], w[1])
    assert not np.allclose(w, bootstrap_weights(4, 1, rows, heads=4))  # another seed
    assert not np.allclose(w, bootstrap_weights(3, 2, rows, heads=4))  # the same rows of another part
    np.testing.assert_array_equal(bootstrap_weights(3, 1, rows, heads=2), w[:, :2])  # head k does not depend on K


def test_first_rows_of_packed_conversations():
    index = np.array([[5, 6, 7, 20, 21, -1, -1]])
    starts = np.array([[True, False, False, True, False, False, False]])
    np.testing.assert_array_equal(conversation_first_rows(index, starts), [[5, 5, 5, 20, 20, -1, -1]])
    w = bootstrap_weights(0, 0, conversation_first_rows(index, starts), heads=3)
    assert np.all(w[0, 5:] == 0) and np.all(w[0, :5] > 0)


def test_every_epoch_weighs_a_conversation_alike(tiny_arrays):
    """Two epochs pack conversations in different orders; each conversation's weights are the same in both."""
    arrays = TurnArrays.open(tiny_arrays)
    seen = []
    for epoch in (0, 1):
        weights = {}
        for chunk in batch_lib.epoch_plan(arrays, "train", 0.2, 0, 0, epoch, 256, 4):
            host = batch_lib.gather_packed(arrays.part(chunk.part), chunk.minibatches, 256, 4)
            batch = supervised_batch(host, chunk.part, seed=9, heads=5)
            starts = host.starts & host.valid
            for key, w in zip(zip(np.full(starts.sum(), chunk.part), host.index[starts]),
                              np.asarray(batch.bootstrap)[starts]):
                weights[key] = w
        seen.append(weights)
    assert len(seen[0]) > 100 and seen[0].keys() == seen[1].keys()
    for key, w in seen[0].items():
        np.testing.assert_array_equal(w, seen[1][key])
    orders = [list(s) for s in seen]
    assert orders[0] != orders[1]  # the epochs really packed them differently

"""scripts/ngram_bag_probe.py: the idf is the training conversations' only, and turn t reads turns 1..t only."""

from pathlib import Path

import jax
import numpy as np

from tests.conftest import load_script as load_script_named


def load_script():
    return load_script_named("ngram_bag_probe")


def test_an_ngram_only_held_out_dialogues_contain_has_no_weight():
    probe = load_script()
    buckets = 1 << 12
    seen = probe.hashed_grams("please donate today", buckets)
    unseen = probe.hashed_grams("zyxxy quorble", buckets)
    assert not set(unseen) & set(seen)
    train = np.zeros((3, 1, 8), np.int32)
    for c in range(3):
        train[c, 0, :len(seen)] = seen
    idf = probe.fit_idf(train, buckets, min_df=2)
    assert (idf[seen] > 0).all()
    assert (idf[unseen] == 0).all() and idf[0] == 0
    rare = probe.fit_idf(train[:1], buckets, min_df=2)  # in one conversation only: below min_df
    assert (rare[seen] == 0).all()


def test_turn_t_reads_turns_1_to_t_only():
    probe = load_script()
    config = probe.ProbeConfig(Path("unused"), dim=4, buckets=1 << 10)
    params = probe.init_params(jax.random.PRNGKey(0), config)
    params["skip"] = jax.random.normal(jax.random.PRNGKey(1), params["skip"].shape)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 1 << 10, size=(2, 6, 5)).astype(np.int32)
    counts = rng.integers(1, 3, size=(2, 6, 5)).astype(np.float32)
    customer = (rng.random((2, 6)) < 0.5).astype(np.float32)
    valid = np.ones((2, 6), bool)
    idf = np.ones(1 << 10, np.float32)
    before = np.asarray(probe.logits(params, idf, ids, counts, customer, valid))
    changed_ids, changed_customer = ids.copy(), customer.copy()
    changed_ids[:, 3:] = rng.integers(1, 1 << 10, size=(2, 3, 5))
    changed_customer[:, 3:] = 1 - changed_customer[:, 3:]
    after = np.asarray(probe.logits(params, idf, changed_ids, counts, changed_customer, valid))
    np.testing.assert_allclose(before[:, :3], after[:, :3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(before[:, 3:], after[:, 3:])

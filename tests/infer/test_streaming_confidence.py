"""The streaming combination in scalar Python equals the specification (`combine`, numpy and jitted), ties with
calibration turns included, for both interval kinds."""

import numpy as np
import pytest

from salesrl_jax.infer.streaming_confidence import TurnConfidence, blas_one_thread
from salesrl_jax.models.confidence import (
    VALUE_FIELDS,
    TurnSignals,
    combine,
    confidence_outputs,
    running_text_novelty,
)
from tests.models.test_confidence import _fitted, _synthetic_calibration


@pytest.mark.parametrize("oracle", [True, False])
def test_one_turn_in_python_equals_combine(oracle):
    seed, conversations = 3, 600
    params, fit = _fitted(np.random.default_rng(seed), oracle=oracle, conversations=conversations)
    assert fit["interval"] == ("conformal" if oracle else "venn-abers")
    # the calibration turns themselves (their novelty keys tie the stored ones exactly), then fresh ones, some far
    # outside (gate closed)
    calibration = _synthetic_calibration(np.random.default_rng(seed), conversations)
    fresh = _synthetic_calibration(np.random.default_rng(seed + 100), 300)
    p, spread, t = (np.concatenate([calibration[k], fresh[k]]) for k in (0, 1, 3))
    far = np.where(np.arange(len(fresh[0])) % 7, 1.0, 30.0)  # every seventh fresh turn far from every state
    distance = np.concatenate([calibration[2].distance, fresh[2].distance * far]).astype(np.float32)
    novelty = np.concatenate([calibration[2].text_novelty, fresh[2].text_novelty])
    so_far = running_text_novelty(novelty, t)
    batch = confidence_outputs(params, p, spread, TurnSignals(distance, novelty), t)
    on_host = combine(params, p, spread, distance, so_far, t, xp=np)
    turn = TurnConfidence(params)
    scalar = [turn.combine(float(p[i]), float(spread[i]), float(distance[i]), float(so_far[i]), int(t[i]))
              for i in range(len(p))]
    for name in VALUE_FIELDS:
        values = np.array([getattr(s, name) for s in scalar])
        np.testing.assert_allclose(values, getattr(on_host, name), atol=2e-6, err_msg=name)
        np.testing.assert_allclose(values, getattr(batch, name), atol=2e-5, err_msg=name)
    assert [s.low_confidence for s in scalar] == np.asarray(on_host.low_confidence).tolist()
    familiarity = np.array([s.familiarity for s in scalar])
    assert familiarity.min() < 0.01 < 0.5 < familiarity.max()  # both ends of the gate are exercised


def test_blas_one_thread_restores_the_setting():
    from threadpoolctl import threadpool_info

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    with blas_one_thread():
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_one_turns_dense_text_novelty_equals_the_batch_form():
    import jax
    import jax.numpy as jnp

    from salesrl_jax.infer.streaming_confidence import DenseTextNovelty
    from salesrl_jax.models.confidence import ConfidenceParams, dense_text_novelty

    rng = np.random.default_rng(0)
    dim, width = 96, 16
    projection = (rng.normal(size=(dim, width)) / np.sqrt(width)).astype(np.float32)
    seen = rng.normal(size=(40, dim)).astype(np.float32)
    bank = seen @ projection
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    # turns the bank holds (novelty 0), fresh turns, and one opposite two of the bank's turns
    turns = np.concatenate([seen[:5], rng.normal(size=(20, dim)).astype(np.float32),
                            -(seen[:1] + seen[1:2])]).astype(np.float32)
    params = ConfidenceParams.__new__(ConfidenceParams)
    object.__setattr__(params, "text_projection", projection)
    object.__setattr__(params, "text_bank", bank)
    one = DenseTextNovelty(params)
    streamed = np.array([one(turn) for turn in turns])
    on_host = dense_text_novelty(projection, bank, turns, xp=np)
    jitted = np.asarray(jax.jit(dense_text_novelty)(jnp.asarray(projection), jnp.asarray(bank), jnp.asarray(turns)))
    np.testing.assert_allclose(streamed, on_host, atol=1e-6)
    np.testing.assert_allclose(streamed, jitted, atol=1e-6)
    assert np.all(streamed[:5] < 1e-5) and streamed[5:].min() > 1e-3 and 0 <= streamed.min() <= streamed.max() <= 2

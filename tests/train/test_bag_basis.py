"""The n-gram bag's LSA basis: the top right singular vectors of the training split's tf-idf turns, read from the
training split only, and kept fixed in training where the model says so."""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from flax import nnx

from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.store import TurnArrays, part_digest
from salesrl_jax.models.bag import GramBag
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.run.config import PPOConfig, TrainConfig, resolve_regime
from salesrl_jax.train.bag_basis import lsa_basis, tfidf_matrix, truncated_svd
from salesrl_jax.train.statistics import training_idf
from tests.conftest import NGRAMS, tiny_config, tiny_model


@pytest.mark.parametrize("shape", [(300, 80), (12, 40), (40, 9)], ids=["arpack", "few-rows", "few-columns"])
def test_the_truncated_svd_is_the_top_of_the_full_one_with_a_fixed_sign(shape):
    rng = np.random.default_rng(0)
    matrix = sp.random(*shape, density=0.2, random_state=1, format="csr") + sp.eye(*shape, format="csr")
    v, s = truncated_svd(matrix, 10)
    assert v.shape == (shape[1], 10) and s.shape == (10,)
    _, full, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
    rank = min(shape)
    np.testing.assert_allclose(s[:rank], full[:10][:rank], rtol=1e-6)
    assert np.all(s[rank:] == 0) and np.all(v[:, rank:] == 0)  # past the rank: zero columns, not noise
    for j in range(min(rank, 10)):  # each column the full decomposition's, up to the sign the convention fixes
        reference = vt[j] * np.sign(vt[j][np.argmax(np.abs(vt[j]))])
        np.testing.assert_allclose(v[:, j], reference, atol=1e-6)
        assert v[np.argmax(np.abs(v[:, j])), j] > 0
    kept = v[:, :min(rank, 10)]
    np.testing.assert_allclose(kept.T @ kept, np.eye(kept.shape[1]), atol=1e-6)
    again, _ = truncated_svd(matrix[rng.permutation(shape[0])], 10)  # the rows' order changes nothing
    np.testing.assert_allclose(again, v, atol=1e-6)


def test_the_matrix_rows_are_what_the_bag_reads():
    """``X E`` is the bag's output less its bias, for any kernel E: the basis is a basis of what the bag sees (grams
    hashed into one bucket summed, padding and unweighted grams zero)."""
    rng = np.random.default_rng(3)
    buckets, k = 64, 6
    ids = rng.integers(0, buckets, (20, k)).astype(np.int32)
    ids[:, -1] = ids[:, 0]  # a bucket twice in a turn
    ids[3] = 0  # an empty turn
    counts = np.where(ids > 0, rng.integers(1, 4, ids.shape), 0).astype(np.uint16)
    idf = rng.uniform(0.5, 3.0, buckets).astype(np.float32)
    idf[[0, 7]] = 0.0
    bag = GramBag(buckets, 5, rngs=nnx.Rngs(0))
    bag.idf.value = jnp.asarray(idf)
    bag.bias.value = jnp.ones(5)
    out = np.asarray(bag(GramBags(jnp.asarray(ids), jnp.asarray(counts)))) - 1.0
    expected = tfidf_matrix(ids, counts, idf, buckets) @ np.asarray(bag.kernel[...])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert np.all(out[3] == 0)


def _with_changed_text(ngram_arrays, tmp_path, split: str) -> TurnArrays:
    """A copy of the arrays in which every turn of the first ``split`` conversation of each part reads other grams."""
    arrays = tmp_path / split
    shutil.copytree(ngram_arrays, arrays)
    config = tiny_config(arrays)
    manifest = json.loads((arrays / "manifest.json").read_text())
    for number, entry in enumerate(manifest["parts"]):
        part = TurnArrays.open(ngram_arrays).part(number)
        c = split_conversations(part, split, config.data.valid_fraction, config.data.split_seed)[0]
        ids = np.load(arrays / entry["name"] / "gram_ids.npy")
        rows = slice(part.offsets[c], part.offsets[c + 1])
        ids[rows] = np.where(ids[rows] > 0, (ids[rows] * 7 + 3) % (NGRAMS.dim - 1) + 1, 0)
        np.save(arrays / entry["name"] / "gram_ids.npy", ids)
        entry["sha256"] = part_digest(arrays / entry["name"])
    (arrays / "manifest.json").write_text(json.dumps(manifest))
    return TurnArrays.open(arrays)


def test_the_basis_reads_the_training_split_only(ngram_arrays, tmp_path):
    config = tiny_config(ngram_arrays)
    fraction, seed = config.data.valid_fraction, config.data.split_seed

    def basis_of(arrays):
        return lsa_basis(arrays, training_idf(arrays, fraction, seed), fraction, seed, 8)

    base = basis_of(TurnArrays.open(ngram_arrays))
    assert base.kernel.shape == (NGRAMS.dim, 8) and base.kernel.dtype == np.float32
    assert np.all(np.diff(base.singular_values) <= 0) and base.singular_values[-1] > 0
    np.testing.assert_allclose(base.kernel.T @ base.kernel, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(basis_of(TurnArrays.open(ngram_arrays)).kernel, base.kernel)  # deterministic
    assert np.array_equal(basis_of(_with_changed_text(ngram_arrays, tmp_path, "valid")).kernel, base.kernel)
    assert not np.allclose(basis_of(_with_changed_text(ngram_arrays, tmp_path, "train")).kernel, base.kernel,
                           atol=1e-4)


def _run(ngram_arrays, workdir, **model):
    config = tiny_config(ngram_arrays, embedder=NGRAMS, model=tiny_model(**model), ppo=PPOConfig(updates=1, epochs=1))
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=2))
    from salesrl_jax.run.trained_model import TrainedModel
    from salesrl_jax.train.loop import train_and_evaluate

    train_and_evaluate(config, workdir, progress=False)
    return config, TrainedModel.load(workdir / "checkpoints" / "best")


def test_a_fixed_lsa_bag_ends_where_it_started_and_the_rest_trains(ngram_arrays, tmp_path):
    config, fixed = _run(ngram_arrays, tmp_path / "fixed", bag_basis="lsa", bag_trainable=False)
    arrays = TurnArrays.open(ngram_arrays)
    fraction, seed = config.data.valid_fraction, config.data.split_seed
    basis = lsa_basis(arrays, training_idf(arrays, fraction, seed), fraction, seed, config.model.bag_dim)
    project = nnx.to_pure_dict(fixed.params)["encoder"]["project"]
    np.testing.assert_array_equal(np.asarray(project["kernel"]), basis.kernel)  # through pretraining and PPO
    recorded = fixed.meta["bag_basis"]
    assert recorded["turns"] == basis.turns and len(recorded["singular_values"]) == config.model.bag_dim
    _, trained = _run(ngram_arrays, tmp_path / "trained", bag_basis="lsa")
    moved = np.asarray(nnx.to_pure_dict(trained.params)["encoder"]["project"]["kernel"])
    assert not np.array_equal(moved, basis.kernel) and np.allclose(moved, basis.kernel, atol=0.05)  # from it
    # The rest of the fixed run trained: its bias and hidden layer left their initial values.
    assert np.any(np.asarray(project["bias"]) != 0)


def test_the_fixed_kernel_gets_no_optimizer_state_and_a_dense_projection_always_trains(ngram_arrays):
    from salesrl_jax.models.agent import create_agent
    from salesrl_jax.train.state import BAG_KERNEL, adam_linear, fixed_parameters, freeze_statistics

    model = tiny_model(bag_trainable=False)
    _, sparse = create_agent(model, NGRAMS.dim, 0, sparse_text=True)
    _, dense = create_agent(model, 32, 0)
    assert fixed_parameters(model, sparse) == (BAG_KERNEL,) and fixed_parameters(model, dense) == ()
    assert fixed_parameters(tiny_model(), sparse) == ()
    optimizer = freeze_statistics(adam_linear(1e-3, 10, 1.0), sparse, fixed_parameters(model, sparse))
    state = optimizer.init(sparse)
    sizes = sum(x.size for x in jax.tree.leaves(state))
    trainable = sum(x.size for x in jax.tree.leaves(sparse)) - NGRAMS.dim * model.bag_dim
    assert sizes < 3 * trainable  # Adam's two moments for what trains; none for the 2^12 x bag_dim kernel
    grads = jax.tree.map(jnp.ones_like, sparse)
    updates, _ = optimizer.update(grads, state, sparse)
    assert np.all(np.asarray(updates["encoder"]["project"]["kernel"][...]) == 0)
    assert np.any(np.asarray(updates["encoder"]["project"]["bias"][...]) != 0)


def test_the_regime_leaves_the_bag_as_the_config_says(ngram_arrays):
    """A random, trained bag by default in both regimes (the option measured below the default on one corpus); a
    run that asks for the fixed LSA bag keeps it through the small regime's overrides."""
    given = TrainConfig(embedder=NGRAMS)
    for labelled in (800, 50_000):
        resolved = resolve_regime(given, labelled)
        assert resolved.model.bag_basis == "random" and resolved.model.bag_trainable is True
    fixed = dataclasses.replace(given, model=dataclasses.replace(given.model, bag_basis="lsa", bag_trainable=False))
    small = resolve_regime(fixed, 800)
    assert small.regime == "small" and small.model.bag_basis == "lsa" and small.model.bag_trainable is False


def test_a_warm_start_ignores_how_the_bag_starts_and_whether_it_trains():
    """Neither field changes the parameters' structure (a warm start takes the source's kernel anyway); a structural
    field is still named."""
    from salesrl_jax.models.config import ModelConfig
    from salesrl_jax.train.warm_start import model_difference

    fixed = ModelConfig(bag_basis="lsa", bag_trainable=False)
    assert model_difference(ModelConfig(), fixed) == []
    assert model_difference(ModelConfig(), dataclasses.replace(fixed, bag_dim=32)) == ["bag_dim"]

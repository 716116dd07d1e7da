"""The learned n-gram text path end to end: hashing, sparse arrays, an idf from the training split only, the
embedding bag in batch, streaming, archive and int8 forms, and causality."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.arrays.batches import gather_packed
from salesrl_jax.arrays.split import split_conversations
from salesrl_jax.arrays.subset import write_subset
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed.config import EmbedderConfig
from salesrl_jax.embed.ngrams import NgramHasher
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.infer.quantize import (
    activation_ranges,
    calibration_batches,
    quantize_bag,
    quantize_model,
    quantize_params,
    saved_int8,
)
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.models.agent import SalesAgent
from salesrl_jax.models.bag import tfidf_weights
from salesrl_jax.models.inputs import GramBags, TurnInputs
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.trained_model import TrainedModel
from tests.conftest import NGRAM_BUCKETS, NGRAM_MAX_GRAMS, NGRAMS, scored_turns, tiny_config, tiny_model

BUCKETS, MAX_GRAMS = NGRAM_BUCKETS, NGRAM_MAX_GRAMS


def test_hashing_is_deterministic_padded_and_keeps_the_most_frequent_grams():
    hasher = NgramHasher(buckets=1 << 12, max_grams=4)
    rows = hasher.grams(["Price price PRICE, deal deal now", "a", ""])
    again = NgramHasher(buckets=1 << 12, max_grams=4).grams(["Price price PRICE, deal deal now", "a", ""])
    np.testing.assert_array_equal(rows.ids, again.ids)
    assert (rows.counts[0] > 0).all()  # 3 words + 3 distinct bigrams: cut to the 4 columns
    price = hasher.bucket_ids("price")[0]
    deal = hasher.bucket_ids("deal")[0]
    kept = dict(zip(rows.ids[0].tolist(), rows.counts[0].tolist()))
    assert kept[price] == 3 and kept[deal] == 2  # the two most frequent grams survive the cut
    assert (rows.ids[1:] == 0).all() and (rows.counts[1:] == 0).all()  # "a": no token of 2+ letters
    assert rows.ids.min() >= 0 and rows.ids.max() < 1 << 12


def test_arrays_hold_sparse_rows_and_subsets_keep_them(ngram_arrays, tmp_path):
    arrays = TurnArrays.open(ngram_arrays)
    assert arrays.sparse and arrays.dim == BUCKETS and arrays.max_grams == MAX_GRAMS
    part = arrays.part(0)
    width = part.gram_ids.shape[1]  # stored as wide as the part's widest turn
    assert part.embeddings.shape == (part.num_turns, 0) and width < MAX_GRAMS
    assert (np.asarray(part.gram_counts)[:, width - 1] > 0).any()
    assert (np.asarray(part.gram_counts)[:, 0] > 0).mean() > 0.9  # almost every turn has some gram
    # Batches pad every part to max_grams columns (one compiled shape), with nothing lost or invented.
    batch = gather_packed(part, [np.array([0, 1])], 64, 1)
    assert batch.gram_ids.shape == (1, 64, MAX_GRAMS)
    rows = batch.index[0] >= 0
    np.testing.assert_array_equal(batch.gram_ids[0][rows][:, :width], np.asarray(part.gram_ids)[batch.index[0][rows]])
    assert (batch.gram_counts[0][:, width:] == 0).all()
    subset = write_subset(arrays, lambda p: np.arange(p.num_conversations) % 2 == 0, tmp_path / "s")
    expected = part.select(np.arange(0, part.num_conversations, 2))
    np.testing.assert_array_equal(subset.part(0).gram_ids, expected.gram_ids)
    np.testing.assert_array_equal(subset.part(0).gram_counts, expected.gram_counts)


def test_idf_is_fitted_on_the_training_split_only_and_frozen_in_training(ngram_trained, ngram_arrays):
    model = TrainedModel.load(ngram_trained)
    idf = np.asarray(model.params["encoder"]["project"]["idf"][...])
    arrays = TurnArrays.open(ngram_arrays)
    data = model.config.data
    seen = {"train": set(), "valid": set()}
    df = np.zeros(BUCKETS, int)
    for part in arrays.iter_parts():
        offsets = np.asarray(part.offsets)
        for split in seen:
            for c in split_conversations(part, split, data.valid_fraction, data.split_seed):
                grams = set(np.unique(np.asarray(part.gram_ids)[offsets[c]:offsets[c + 1]]).tolist()) - {0}
                seen[split] |= grams
                if split == "train":
                    df[list(grams)] += 1
    held_out_only = sorted(seen["valid"] - seen["train"])
    assert held_out_only, "the fixture should have grams that only validation conversations show"
    assert (idf[held_out_only] == 0).all()  # a gram the training split never showed weighs nothing
    bags = GramBags(jnp.asarray([held_out_only[:3] + [0]]), jnp.ones((1, 4), jnp.uint16))
    assert float(jnp.abs(tfidf_weights(bags, jnp.asarray(idf))).sum()) == 0.0
    # The idf is the training split's smooth idf (min_df 2), exactly: training (pretraining and PPO) never moved it.
    train_conversations = sum(len(split_conversations(p, "train", data.valid_fraction, data.split_seed))
                              for p in arrays.iter_parts())
    expected = np.where(df >= 2, np.log((1 + train_conversations) / (1 + df)) + 1, 0.0)
    expected[0] = 0.0
    np.testing.assert_allclose(idf, expected, rtol=1e-6)


def test_the_wide_term_is_fitted_on_the_training_split_and_frozen_in_training(ngram_trained, ngram_arrays):
    from salesrl_jax.train.wide_fit import fit_wide

    model = TrainedModel.load(ngram_trained / "checkpoints" / "best")  # as training left it (not recalibrated)
    project = model.params["encoder"]["project"]
    data = model.config.data
    assert model.config.model.wide_text
    fit = fit_wide(TurnArrays.open(ngram_arrays), np.asarray(project["idf"][...]), data.valid_fraction,
                   data.split_seed)
    assert model.meta["wide_fit"]["l2"] == fit.l2  # what the run records of its fit
    assert model.meta["wide_fit"]["cv_log_loss"] == {str(k): v for k, v in fit.cv_log_loss.items()}
    assert model.meta["wide_fit"]["wide_map"] == list(fit.wide_map)
    np.testing.assert_allclose(np.asarray(project["wide_map"][...]), fit.wide_map, rtol=1e-6)
    # Pretraining and PPO (the fixture runs both) never moved it.
    np.testing.assert_allclose(np.asarray(project["wide"][...]), fit.weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(project["wide_customer"][...]), fit.customer_weights, rtol=1e-6, atol=1e-7)
    assert np.abs(fit.weights).max() > 0 and np.abs(fit.customer_weights).max() > 0


def test_batch_streaming_and_archive_scoring_agree(ngram_trained, ngram_arrays, tiny_archive, tmp_path):
    conversations = list(read_conversations(tiny_archive))[:8]
    write_conversations(tmp_path / "calls.jsonl", conversations)
    scored = score_archive(ngram_trained, tmp_path / "calls.jsonl", tmp_path / "scores.jsonl", workers=1)
    rows = scored_turns(scored)
    model = TrainedModel.load(ngram_trained)
    cached = predict_arrays(make_predict(model.graphdef), model.params, TurnArrays.open(ngram_arrays), rows=512,
                            max_conversations=8)
    scorer = Scorer.load(ngram_trained, cache=tmp_path / "unused.sqlite")  # hashing grams needs no cache
    assert isinstance(scorer.embedder, NgramHasher) and not (tmp_path / "unused.sqlite").exists()
    for i, conv in enumerate(conversations):
        session = scorer.session()
        streamed = np.array([session.add_turn(t.speaker, t.text, t.start_time, t.duration).probability
                             for t in conv.turns])
        archive = np.array([r["probability"] for r in rows if r["conversation_id"] == conv.id])
        np.testing.assert_allclose(streamed, archive, atol=2e-6)  # outputs are rounded to 6 decimals
        np.testing.assert_allclose(streamed, cached.prediction[cached.conversation == i], atol=1e-5)


def test_int8_keeps_the_bag_close(ngram_trained, tiny_archive, tmp_path):
    table = jax.random.normal(jax.random.PRNGKey(0), (64, 8)) * jnp.linspace(0.01, 3, 64)[:, None]
    q, scale = quantize_bag(table)
    assert q.dtype == jnp.int8 and scale.shape == (64,)
    assert bool(jnp.all(jnp.abs(table - q * scale[:, None]) <= scale[:, None] / 2 + 1e-7))  # per-row bound
    conv = next(iter(read_conversations(tiny_archive)))
    exact, quant = Scorer.load(ngram_trained).session(), Scorer.load(ngram_trained, quantized=True).session()
    for turn in conv.turns:
        a = exact.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        b = quant.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        assert abs(a.probability - b.probability) < 0.02
    write_conversations(tmp_path / "calls.jsonl", list(read_conversations(tiny_archive))[:6])
    floats = score_archive(ngram_trained, tmp_path / "calls.jsonl", tmp_path / "f.jsonl", workers=1)
    int8 = score_archive(ngram_trained, tmp_path / "calls.jsonl", tmp_path / "q.jsonl", workers=1, quantized=True)
    f = [json.loads(line)["probability"] for line in floats.outputs["turns"].read_text().splitlines()]
    g = [json.loads(line)["probability"] for line in int8.outputs["turns"].read_text().splitlines()]
    assert np.abs(np.array(f) - np.array(g)).max() < 0.02
    # Saved by `salesrl quantize` and loaded back: the same int8 parameters, idf included.
    saved = quantize_model(ngram_trained)
    model = TrainedModel.load(ngram_trained)
    _, loaded, how = saved_int8(model)
    assert "saved int8" in how
    _, fresh = quantize_params(model.params, model.config.model, model.identity.dim,
                               activation_ranges(model.graphdef, model.params, calibration_batches(
                                   TurnArrays.open(model.config.data.train), saved.calibration_turns)))
    for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(loaded)), jax.tree.leaves(nnx.to_pure_dict(fresh))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_prediction_reads_only_the_turns_so_far():
    rng = np.random.default_rng(0)
    n, k = 10, 6
    agent = SalesAgent(tiny_model(), BUCKETS, rngs=nnx.Rngs(0), sparse_text=True)
    agent.encoder.project.kernel.value = jax.random.normal(jax.random.PRNGKey(1), (BUCKETS, 16))  # not tiny

    def predict(ids, counts):
        inputs = TurnInputs(GramBags(jnp.asarray(ids), jnp.asarray(counts)),
                            jnp.asarray(rng_features), jnp.zeros(n, bool).at[0].set(True), jnp.ones(n, bool))
        return np.asarray(agent.predict(inputs).prediction)

    rng_features = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    ids = rng.integers(1, BUCKETS, (n, k)).astype(np.int32)
    counts = rng.integers(1, 3, (n, k)).astype(np.uint16)
    base = predict(ids, counts)
    for t in range(n - 1):
        changed_ids, changed_counts = ids.copy(), counts.copy()
        changed_ids[t + 1:] = rng.integers(1, BUCKETS, (n - t - 1, k))
        changed_counts[t + 1:] = 5
        after = predict(changed_ids, changed_counts)
        np.testing.assert_array_equal(after[:t + 1], base[:t + 1])
        assert not np.allclose(after[t + 1:], base[t + 1:])


def test_training_names_the_n_gram_path_on_small_real_data_only(tiny_arrays, ngram_arrays, tmp_path):
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.data.persuasionforgood import read_persuasionforgood
    from salesrl_jax.run.config import TrainConfig, resolve_regime
    from salesrl_jax.train.loop import dense_text_on_small_real_data
    from tests.conftest import FIXTURES, TINY_DIM

    write_conversations(tmp_path / "p4g.jsonl", list(read_persuasionforgood(FIXTURES / "persuasionforgood")))
    real = embed_archive(tmp_path / "p4g.jsonl", tmp_path / "arrays", EmbedderConfig(kind="hashing", dim=TINY_DIM),
                         workers=1).arrays
    small = resolve_regime(TrainConfig(), 5)
    assert dense_text_on_small_real_data(small, real)  # real (no oracle), small, hashed: say so
    assert not dense_text_on_small_real_data(resolve_regime(TrainConfig(), 50_000), real)  # large data
    assert not dense_text_on_small_real_data(small, TurnArrays.open(tiny_arrays))  # synthetic, with an oracle
    assert not dense_text_on_small_real_data(small, TurnArrays.open(ngram_arrays))  # already n-grams


def test_auto_reads_small_real_archives_as_n_grams_and_the_rest_as_hashed_embeddings(tiny_archive, tmp_path,
                                                                                       monkeypatch):
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.data.persuasionforgood import read_persuasionforgood
    from salesrl_jax.embed import config as embed_config
    from salesrl_jax.embed.config import resolve_embedder
    from salesrl_jax.train.loop import train_and_evaluate
    from tests.conftest import FIXTURES

    real = tmp_path / "p4g.jsonl"
    write_conversations(real, list(read_persuasionforgood(FIXTURES / "persuasionforgood")))
    auto = EmbedderConfig()
    assert auto.kind == "auto"
    assert resolve_embedder(auto, tiny_archive) == EmbedderConfig(kind="hashing")  # the simulator's (oracle)
    assert resolve_embedder(auto, real) == EmbedderConfig(kind="ngrams", dim=2 ** 18)  # 5 real dialogues
    assert resolve_embedder(NGRAMS, tiny_archive) == NGRAMS  # an explicit kind is kept
    monkeypatch.setattr(embed_config, "SMALL_DATA_CONVERSATIONS", 3)
    assert resolve_embedder(auto, real).kind == "hashing"  # a large real archive (not measured: kept dense)
    monkeypatch.undo()
    # Embedding and training with the default (auto) config: the run saves the space its arrays hold.
    arrays = embed_archive(real, tmp_path / "arrays", workers=1).arrays
    assert arrays.identity.kind == "ngrams" and arrays.dim == 2 ** 18
    config = tiny_config(arrays.path, embedder=EmbedderConfig(),
                         data=dataclasses.replace(tiny_config(arrays.path).data, valid_fraction=0.4, split_seed=3))
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=1),
                                 ppo=dataclasses.replace(config.ppo, enabled=False))
    with pytest.warns(UserWarning):  # 5 dialogues: few validation conversations, no better than the base rate
        train_and_evaluate(config, tmp_path / "run", progress=False)
    model = TrainedModel.load(tmp_path / "run")
    assert model.config.embedder == EmbedderConfig(kind="ngrams", dim=2 ** 18) and model.sparse_text
    # Too few conversations for a wide term: the run says why in its meta, and its term adds nothing.
    assert "labelled training conversations" in model.meta["wide_fit"]["skipped"]
    assert np.all(np.asarray(model.params["encoder"]["project"]["wide"][...]) == 0)
    session = Scorer.load(tmp_path / "run").session()
    assert 0.0 < session.add_turn("customer", "Would you donate to Save the Children?").probability < 1.0


def test_a_features_only_model_trains_and_scores_on_n_gram_arrays(ngram_arrays, tiny_archive, tmp_path):
    from salesrl_jax.train.loop import train_and_evaluate

    config = tiny_config(ngram_arrays, embedder=NGRAMS, model=tiny_model(use_text=False))
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=1),
                                 ppo=dataclasses.replace(config.ppo, enabled=False))
    train_and_evaluate(config, tmp_path / "run", progress=False)
    model = TrainedModel.load(tmp_path / "run")
    assert "idf" not in nnx.to_pure_dict(model.params)["encoder"]["project"]  # no bag, nothing fitted
    write_conversations(tmp_path / "calls.jsonl", list(read_conversations(tiny_archive))[:4])
    floats = score_archive(tmp_path / "run", tmp_path / "calls.jsonl", tmp_path / "f.jsonl", workers=1)
    int8 = score_archive(tmp_path / "run", tmp_path / "calls.jsonl", tmp_path / "q.jsonl", workers=1, quantized=True)
    f = [json.loads(line)["probability"] for line in floats.outputs["turns"].read_text().splitlines()]
    g = [json.loads(line)["probability"] for line in int8.outputs["turns"].read_text().splitlines()]
    assert np.abs(np.array(f) - np.array(g)).max() < 0.02


def test_confidence_on_the_n_gram_path_streams_as_it_scores_archives(ngram_trained, tiny_archive, tmp_path):
    """The sparse form of text novelty (unseen-gram mass): streaming on the host equals archive scoring."""
    import shutil

    from salesrl_jax.eval.confidence_fit import fit_confidence

    run = tmp_path / "run"
    shutil.copytree(ngram_trained, run)
    fit = fit_confidence(run)
    assert fit.params.text == "sparse" and fit.params.gram_seen.shape == (BUCKETS,)
    conversations = list(read_conversations(tiny_archive))[:6]
    write_conversations(tmp_path / "calls.jsonl", conversations)
    scored = score_archive(run, tmp_path / "calls.jsonl", tmp_path / "scores.jsonl", workers=1)
    rows = scored_turns(scored)
    scorer = Scorer.load(run)
    for conv in conversations:
        session = scorer.session()
        streamed = [session.add_turn(t.speaker, t.text, t.start_time, t.duration) for t in conv.turns]
        archive = [r for r in rows if r["conversation_id"] == conv.id]
        for name in ("confidence", "familiarity", "p_low", "p_high"):
            np.testing.assert_allclose([getattr(s, name) for s in streamed], [r[name] for r in archive], atol=2e-5,
                                       err_msg=name)


def test_a_warm_started_run_takes_the_source_parameters_and_fits_its_own_statistics(ngram_trained, ngram_arrays,
                                                                             tiny_arrays, tmp_path):
    """``init_from``: every trainable parameter starts at the source run's best checkpoint, the idf and the wide term
    are fitted on the new run's training split; another model structure or embedding space is refused, naming what
    differs."""
    from salesrl_jax.train.loop import train_and_evaluate
    from salesrl_jax.train.statistics import training_idf
    from salesrl_jax.train.wide_fit import fit_wide

    # The new run trains on other conversations (odd ones), so its idf differs from the source's.
    other = write_subset(TurnArrays.open(ngram_arrays), lambda p: np.arange(p.num_conversations) % 2 == 1,
                         tmp_path / "odd")
    source = TrainedModel.load(ngram_trained / "checkpoints" / "best")  # the best as trained, not recalibrated
    config = dataclasses.replace(source.config, data=dataclasses.replace(source.config.data, train=other.path),
                                 init_from=ngram_trained, ppo=dataclasses.replace(source.config.ppo, enabled=False))
    # A step far below float32's resolution of the parameters: the run ends where it started.
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, epochs=1, learning_rate=1e-12,
                                                                      input_dropout=0.0))
    train_and_evaluate(config, tmp_path / "warm", progress=False)
    warm = TrainedModel.load(tmp_path / "warm")
    assert warm.meta["init_from"] == {"path": str(source.directory), "params_sha256": source.params_digest}
    fresh_idf = training_idf(other, config.data.valid_fraction, config.data.split_seed)
    np.testing.assert_allclose(np.asarray(warm.params["encoder"]["project"]["idf"].value), fresh_idf, rtol=1e-6)
    assert not np.allclose(np.asarray(source.params["encoder"]["project"]["idf"].value), fresh_idf)
    fresh_wide = fit_wide(other, fresh_idf, config.data.valid_fraction, config.data.split_seed).weights
    np.testing.assert_allclose(np.asarray(warm.params["encoder"]["project"]["wide"].value), fresh_wide, rtol=1e-6,
                               atol=1e-7)
    source_leaves = dict(jax.tree_util.tree_leaves_with_path(source.params))
    compared = 0
    for path, value in jax.tree_util.tree_leaves_with_path(warm.params):
        if not any(name in jax.tree_util.keystr(path) for name in ("idf", "wide")):  # the fitted statistics
            np.testing.assert_allclose(np.asarray(value), np.asarray(source_leaves[path]), atol=1e-6,
                                       err_msg=jax.tree_util.keystr(path))
            compared += 1
    assert compared > 10  # the bag's kernel, the encoder, every head

    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_dim=64))
    with pytest.raises(ValueError, match="model.hidden_dim"):
        train_and_evaluate(wider, tmp_path / "wider", progress=False)
    dense = dataclasses.replace(tiny_config(tiny_arrays), init_from=ngram_trained)
    with pytest.raises(ValueError, match="embeddings"):
        train_and_evaluate(dense, tmp_path / "dense", progress=False)

"""Prefix TF-IDF from each turn's gram counts and their running sums: equal to re-reading each joined prefix."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.baselines.fit import fit_baselines, subsample_prefixes
from salesrl_jax.baselines.prefix_tfidf import PrefixTfidf
from salesrl_jax.baselines.prefixes import PrefixTable, build_prefixes
from salesrl_jax.data.readers import read_conversations

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def table(tiny_archive, tiny_arrays):
    return build_prefixes(read_conversations(tiny_archive), TurnArrays.open(tiny_arrays), tiny_archive)


def _awkward_table() -> PrefixTable:
    """Turns without a word the tokenizer keeps ("ok?" is one letter short; "" and "!!" have none), words only the
    held-out conversation has, and bigrams across turns ("price works" spans two in every conversation, in the third
    across a turn without words)."""
    texts = [["Hi, the price", "works for us", "ok?", "", "great great price works"],
             ["!!", "the price", "works too high", "a", "price works"],
             ["Price works fine", "zyxwv the price", "", "works", "hi"]]
    speakers = [["rep", "rep", "customer", "customer", "rep"], ["customer", "rep", "rep", "customer", "rep"],
                ["rep", "rep", "customer", "rep", "customer"]]
    conversation = np.repeat(np.arange(3), 5).astype(np.int32)
    turn = np.tile(np.arange(5), 3).astype(np.int32)
    return PrefixTable([f"c{i}" for i in range(3)], texts, speakers, conversation, turn, np.full(15, 5, np.int32),
                       np.array([1, 0, 1]).repeat(5).astype(np.int8), np.zeros((15, 0), np.float32),
                       np.zeros((15, 0), np.float32))


@pytest.mark.parametrize("tagged", [False, True])
def test_equals_the_vectorizer_on_every_joined_prefix_in_any_row_order_with_an_extra_column(table, tagged):
    from sklearn.feature_extraction.text import TfidfVectorizer

    awkward = _awkward_table()
    for source, train in ((table, np.arange(0, len(table.ids), 2)), (awkward, np.array([0, 1]))):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        vectorizer.fit(source.whole_texts(train, tagged))
        if source is awkward:  # a bigram that spans turns is among what is compared
            assert ("r_price r_works" if tagged else "price works") in vectorizer.vocabulary_
        prefixes = PrefixTfidf(source, vectorizer.vocabulary_, vectorizer.idf_, tagged)
        rows = np.random.default_rng(0).permutation(len(source.turn_index))
        extra = np.linspace(0.0, 1.0, len(rows))
        expected = sp.hstack([vectorizer.transform(source.prefix_texts(rows, tagged)), extra[:, None]]).tocsr()
        got = prefixes.transform(rows, extra)
        assert got.shape == expected.shape and got.has_sorted_indices
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-12, atol=1e-15)
        chunks = list(prefixes.transform_chunks(rows, extra, chunk=4))
        np.testing.assert_array_equal(np.concatenate([r for r, _ in chunks]), rows)
        np.testing.assert_allclose(sp.vstack([m for _, m in chunks]).toarray(), expected.toarray(), rtol=1e-12,
                                   atol=1e-15)
    assert prefixes.transform(np.array([], np.int64)).shape == (0, len(vectorizer.idf_))


def test_a_prefix_reads_turns_one_to_t_only():
    table = _awkward_table()
    changed = dataclasses.replace(table, texts=[list(t) for t in table.texts])
    changed.texts[2][3:] = ["price works price works", "great great"]
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(table.whole_texts([0, 1], False))
    rows = np.flatnonzero(table.conversation == 2)
    before = PrefixTfidf(table, vectorizer.vocabulary_, vectorizer.idf_, False).transform(rows).toarray()
    after = PrefixTfidf(changed, vectorizer.vocabulary_, vectorizer.idf_, False).transform(rows).toarray()
    np.testing.assert_array_equal(before[:3], after[:3])
    assert not np.array_equal(before[3:], after[3:])


def test_subsampling_keeps_about_max_rows_every_conversation_and_the_same_subset_for_a_seed(table):
    rows = np.flatnonzero(table.rows_of(np.arange(100, len(table.ids))))
    assert subsample_prefixes(table, rows, None, 0) is rows or np.array_equal(subsample_prefixes(table, rows, None, 0),
                                                                              rows)
    np.testing.assert_array_equal(subsample_prefixes(table, rows, len(rows), 0), rows)
    kept = subsample_prefixes(table, rows, len(rows) // 4, seed=5)
    assert abs(len(kept) - len(rows) // 4) < 0.1 * len(rows)
    assert np.all(np.isin(kept, rows)) and np.all(np.diff(kept) > 0)
    assert set(table.conversation[kept]) == set(table.conversation[rows])  # at least one prefix of each
    assert set(table.turn_index[kept]) != {0}  # not the first prefixes only: a random subset of each
    np.testing.assert_array_equal(kept, subsample_prefixes(table, rows, len(rows) // 4, seed=5))
    assert not np.array_equal(kept, subsample_prefixes(table, rows, len(rows) // 4, seed=6))


def test_the_prefix_fits_read_the_capped_subset_and_every_held_out_prefix_is_predicted(table):
    train, test = np.arange(150, len(table.ids)), np.arange(150)
    capped = fit_baselines(table, train, test, methods=("tfidf_plain_prefix", "tfidf_plain_whole"),
                           max_prefix_rows=1500)
    full = fit_baselines(table, train, test, methods=("tfidf_plain_prefix", "tfidf_plain_whole"))
    assert full.prefix_rows == full.of == capped.of == int(table.rows_of(train).sum())
    assert abs(capped.prefix_rows - 1500) < 100
    np.testing.assert_array_equal(capped.rows, full.rows)  # every held-out prefix, capped or not
    np.testing.assert_array_equal(capped.probs["tfidf_plain_whole"], full.probs["tfidf_plain_whole"])
    assert not np.array_equal(capped.probs["tfidf_plain_prefix"], full.probs["tfidf_plain_prefix"])


def test_the_command_line_bound_is_the_librarys():
    from salesrl_jax.baselines.fit import MAX_PREFIX_ROWS
    from salesrl_jax.cli import Crossval

    assert Crossval.__dataclass_fields__["baseline_max_prefixes"].default == MAX_PREFIX_ROWS

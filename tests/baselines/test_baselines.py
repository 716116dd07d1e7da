"""Baselines: causal prefixes, idf from the training conversations only, every method fitted and scored."""

import dataclasses

import numpy as np
import pytest

from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.baselines.fit import METHODS, fit_baselines
from salesrl_jax.baselines.prefixes import build_prefixes, join_turns
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.records import Turn

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def table(tiny_archive, tiny_arrays):
    return build_prefixes(read_conversations(tiny_archive), TurnArrays.open(tiny_arrays), tiny_archive)


def test_every_method_predicts_every_held_out_prefix_better_than_chance(table):
    n = len(table.ids)
    train, test = np.arange(150, n), np.arange(150)
    fitted = fit_baselines(table, train, test)
    assert set(fitted.probs) == set(METHODS)
    assert len(fitted.rows) == int(table.rows_of(test).sum())
    last = table.turn_index[fitted.rows] == table.length[fitted.rows] - 1
    from salesrl_jax.metrics import roc_auc

    for name, probs in fitted.probs.items():
        assert np.all((probs > 0) & (probs < 1)), name
        assert roc_auc(probs[last], table.outcome[fitted.rows][last]) > 0.55, name


def test_a_prefix_reads_turns_one_to_t_only(table):
    """Rewriting a conversation's later turns changes none of its earlier prefixes' inputs or predictions."""
    c = int(np.argmax([len(t) for t in table.texts]))
    rows = np.flatnonzero(table.conversation == c)
    before = table.prefix_texts(rows, tagged=True)
    changed = dataclasses.replace(table, texts=list(table.texts))
    changed.texts[c] = table.texts[c][:3] + ["absolutely yes sign me up today"] * (len(table.texts[c]) - 3)
    after = changed.prefix_texts(rows, tagged=True)
    assert before[:3] == after[:3] and before[3:] != after[3:]
    train = np.array([i for i in range(len(table.ids)) if i != c])[:200]
    p1 = fit_baselines(table, train, np.array([c]), methods=("tfidf_plain_prefix", "tfidf_tagged_whole"))
    p2 = fit_baselines(changed, train, np.array([c]), methods=("tfidf_plain_prefix", "tfidf_tagged_whole"))
    for name in p1.probs:
        np.testing.assert_array_equal(p1.probs[name][:3], p2.probs[name][:3])
        assert not np.array_equal(p1.probs[name][3:], p2.probs[name][3:])


def test_idf_comes_from_the_training_conversations_only(table):
    """An n-gram that only the held-out conversations contain has no weight: their predictions ignore it."""
    n = len(table.ids)
    train, test = np.arange(0, 200), np.arange(200, 260)
    changed = dataclasses.replace(table, texts=[list(t) for t in table.texts])
    for c in test:  # appended at the very end, so no n-gram the training data know is broken up
        changed.texts[c][-1] = changed.texts[c][-1] + " zyxwv qwertz"
    a = fit_baselines(table, train, test, methods=("tfidf_plain_prefix",))
    b = fit_baselines(changed, train, test, methods=("tfidf_plain_prefix",))
    np.testing.assert_allclose(a.probs["tfidf_plain_prefix"], b.probs["tfidf_plain_prefix"], rtol=1e-6)
    assert n > 260


def test_tagging_marks_each_word_with_its_speaker():
    assert join_turns(["Hi there", "Too expensive!"], ["rep", "customer"], tagged=True) == \
        "r_hi r_there c_too c_expensive"
    assert join_turns(["Hi", "no"], ["rep", "customer"], tagged=False) == "Hi no"


def test_a_missing_conversation_is_named(tiny_archive, tiny_arrays):
    conversations = list(read_conversations(tiny_archive))
    with pytest.raises(ValueError, match=repr(conversations[0].id)):
        build_prefixes(conversations[1:], TurnArrays.open(tiny_arrays), "the archive")
    short = dataclasses.replace(conversations[0], turns=conversations[0].turns[:-1] or (Turn("rep", "x"),))
    with pytest.raises(ValueError, match="turns long"):
        build_prefixes([short, *conversations[1:]], TurnArrays.open(tiny_arrays), "the archive")


def test_max_rows_keeps_a_seeded_subset_of_each_conversations_prefixes_and_every_conversation(table, tiny_archive,
                                                                                              tiny_arrays):
    full_rows = len(table.turn_index)
    sampled = build_prefixes(read_conversations(tiny_archive), TurnArrays.open(tiny_arrays), tiny_archive,
                             max_rows=full_rows // 4, seed=3)
    assert sampled.prefixes == table.prefixes == full_rows
    assert abs(len(sampled.turn_index) - full_rows // 4) < 0.1 * full_rows  # about max_rows
    assert sampled.ids == table.ids and set(sampled.conversation) == set(range(len(table.ids)))  # none dropped
    assert sampled.texts == table.texts  # whole conversations: the whole-dialogue baselines read them all
    # Each kept row is the full table's row for the same prefix (turns 1..t of that conversation, not a neighbour's).
    full_row = {(c, t): r for r, (c, t) in enumerate(zip(table.conversation, table.turn_index))}
    rows = np.array([full_row[c, t] for c, t in zip(sampled.conversation, sampled.turn_index)])
    np.testing.assert_array_equal(sampled.embedding_means, table.embedding_means[rows])
    np.testing.assert_array_equal(sampled.feature_summary, table.feature_summary[rows])
    np.testing.assert_array_equal(sampled.length, table.length[rows])
    again = build_prefixes(read_conversations(tiny_archive), TurnArrays.open(tiny_arrays), tiny_archive,
                           max_rows=full_rows // 4, seed=3)
    np.testing.assert_array_equal(again.turn_index, sampled.turn_index)  # the same subset for the same seed
    unbounded = build_prefixes(read_conversations(tiny_archive), TurnArrays.open(tiny_arrays), tiny_archive,
                               max_rows=full_rows)
    np.testing.assert_array_equal(unbounded.turn_index, table.turn_index)  # at or under the bound: every prefix
    fitted = fit_baselines(sampled, np.arange(150, len(sampled.ids)), np.arange(150))  # every method still fits
    assert set(fitted.probs) == set(METHODS)

"""Development and test files for a nested protocol: stratified, stable, and trainable with the defaults."""

import numpy as np

from salesrl_jax.cli import main
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.split import split_archive, stratified_test_ids


def test_the_test_set_is_stratified_and_stable():
    ids = [f"c{i}" for i in range(200)]
    labels = [i % 4 == 0 for i in range(200)]
    chosen = stratified_test_ids(ids, labels, 0.2, seed=0)
    assert len(chosen) == 40 and sum(labels[int(i[1:])] for i in chosen) == 10
    assert chosen == stratified_test_ids(ids[::-1], labels[::-1], 0.2, seed=0)
    assert chosen != stratified_test_ids(ids, labels, 0.2, seed=1)


def test_split_files_hold_every_conversation_once_and_keep_an_inner_validation_split(tiny_archive, tmp_path, capsys):
    from salesrl_jax.arrays.split import validation_mask

    main(["split", "--data", str(tiny_archive), "--out", str(tmp_path), "--test-fraction", "0.25"])
    assert "development" in capsys.readouterr().out
    dev = list(read_conversations(tmp_path / "development.jsonl"))
    test = list(read_conversations(tmp_path / "test.jsonl"))
    every = list(read_conversations(tiny_archive))
    assert sorted(c.id for c in dev + test) == sorted(c.id for c in every) and 150 <= len(test) <= 151  # ceil per label
    assert abs(np.mean([c.outcome for c in test]) - np.mean([c.outcome for c in every])) < 0.01
    # The defaults that once led into "holds out no labelled conversation" now work on a development file.
    assert validation_mask([c.id for c in dev], 0.1, 0).sum() > 20
    again = split_archive(tiny_archive, tmp_path / "again", test_fraction=0.25)
    assert (tmp_path / "again" / "test.jsonl").read_bytes() == (tmp_path / "test.jsonl").read_bytes()
    assert again.counts["test"]["conversations"] == len(test)

"""scripts/linear_baselines.py: prefixes read turns 1..t only, the held-out split is the model's, and
the baselines learn (on the simulator's archive, whose outcome the text predicts)."""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from salesrl_jax.arrays.split import validation_mask  # noqa: E402
from salesrl_jax.data.readers import read_conversations  # noqa: E402
from tests.conftest import load_script as load_script_named  # noqa: E402


def load_script():
    return load_script_named("linear_baselines")


def test_prefixes_hold_turns_1_to_t_only(tiny_archive, tiny_arrays, tmp_path):
    baselines = load_script()
    prefixes, ids, _ = baselines.load_prefixes(baselines.BaselineConfig(tiny_archive, tiny_arrays, tmp_path))
    conversations = {conv.id: conv for conv in read_conversations(tiny_archive)}
    from salesrl_jax.arrays.store import TurnArrays

    part = TurnArrays.open(tiny_arrays).part(0)
    c = 3
    conv = conversations[ids[c]]
    rows = np.flatnonzero(prefixes.conversation == c)
    assert len(rows) == len(conv.turns) and list(prefixes.turn_index[rows]) == list(range(len(conv.turns)))
    start = int(part.offsets[part.ids.index(ids[c])])
    for t, row in enumerate(rows):
        assert prefixes.text[row] == " ".join(turn.text for turn in conv.turns[:t + 1])
        seen = np.asarray(part.embeddings[start:start + t + 1], np.float32)
        customer = np.asarray(part.is_customer[start:start + t + 1], bool)
        d = seen.shape[1]
        np.testing.assert_allclose(prefixes.embedding_means[row, :d], seen.mean(0), rtol=1e-5, atol=1e-6)
        want = seen[customer].mean(0) if customer.any() else np.zeros(d)
        np.testing.assert_allclose(prefixes.embedding_means[row, d:2 * d], want, rtol=1e-5, atol=1e-6)


def test_baselines_report_on_the_held_out_split(tiny_archive, tiny_arrays, tmp_path, capsys):
    baselines = load_script()
    config = baselines.BaselineConfig(tiny_archive, tiny_arrays, tmp_path / "out", valid_fraction=0.3, folds=3)
    baselines.main(config)
    _, ids, _ = baselines.load_prefixes(config)
    held_out = int(validation_mask(ids, 0.3, 0).sum())
    # The simulator's words carry its outcome, so a real fit beats chance at the last turn (184 held-out
    # conversations here; the data and the fits are deterministic).
    for name, floor in (("tfidf", 0.62), ("embedding-mean", 0.55)):
        tables = json.loads((tmp_path / "out" / name / "metrics.json").read_text())
        assert tables["conversations"] == held_out
        assert tables["last_turn"]["model"]["auc"] > floor
    assert "chosen by 3-fold CV" in capsys.readouterr().out


def test_a_conversation_missing_from_the_text_archive_is_named(tiny_archive, tiny_arrays, tmp_path):
    baselines = load_script()
    lines = [json.dumps({"id": conv.id, "outcome": conv.outcome,
                         "turns": [{"speaker": t.speaker, "text": t.text} for t in conv.turns]})
             for conv in read_conversations(tiny_archive)]
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(SystemExit, match="partial.jsonl: conversation .* is missing"):
        baselines.load_prefixes(baselines.BaselineConfig(partial, tiny_arrays, tmp_path / "out"))

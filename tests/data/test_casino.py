"""CaSiNo: the decider is the customer, satisfaction is the label, deal actions never become turns."""

import json

import pytest

from salesrl_jax.cli import main
from salesrl_jax.data.casino import ACTIONS, read_casino
from salesrl_jax.data.readers import RejectSink, read_conversations
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "casino" / "casino_sample.json"


def test_roles_label_and_actions_follow_the_convention():
    raw = {d["dialogue_id"]: d for d in json.loads(SAMPLE.read_text())}
    conversations = list(read_casino(SAMPLE))
    assert len(conversations) == 5
    for conv in conversations:
        dialogue = raw[int(conv.id.removeprefix("casino-"))]
        final = [m for m in dialogue["chat_logs"] if m["text"] in ("Accept-Deal", "Walk-Away")][-1]
        decider = dialogue["participant_info"][final["id"]]
        assert conv.outcome == int(decider["outcomes"]["satisfaction"] == "Extremely satisfied")
        assert conv.metadata["customer"]["participant"] == final["id"]
        assert conv.metadata["deal_reached"] == (final["text"] == "Accept-Deal")
        texts = [m for m in dialogue["chat_logs"] if m["text"] not in ACTIONS]
        assert [t.text for t in conv.turns] == [m["text"] for m in texts]  # only free text, in order
        assert [t.speaker for t in conv.turns] == ["customer" if m["id"] == final["id"] else "rep" for m in texts]
        assert not any(t.text in ACTIONS for t in conv.turns)
        assert conv.metadata["actions"][-1]["after_turns"] == conv.num_turns
    assert any(not c.metadata["deal_reached"] for c in conversations)  # the walk-away is kept


def test_bad_dialogues_are_set_aside_with_file_record_and_field(tmp_path):
    good = json.loads(SAMPLE.read_text())[0]
    no_decision = {**good, "dialogue_id": 1, "chat_logs": [m for m in good["chat_logs"]
                                                           if m["text"] not in ("Accept-Deal", "Walk-Away")]}
    stranger = {**good, "dialogue_id": 2, "chat_logs": [{"text": "hi", "id": "mturk_agent_9"}, *good["chat_logs"]]}
    only_actions = {**good, "dialogue_id": 3, "chat_logs": [m for m in good["chat_logs"] if m["text"] in ACTIONS]}
    path = tmp_path / "casino.json"
    path.write_text(json.dumps([good, no_decision, stranger, "not a dialogue", only_actions]))
    (tmp_path / "broken.json").write_text("[{")
    sink = RejectSink()
    assert [c.id for c in read_casino(path, rejects=sink)] == [f"casino-{good['dialogue_id']}"]
    reasons = {(p.location, p.record_id, p.field): p.reason for p in sink.first}
    assert "no final decision" in reasons[("dialogue 1", "casino-1", "chat_logs")]
    assert "not one of the participants" in reasons[("dialogue 2", "casino-2", "chat_logs[0].id")]
    assert "must be an object" in reasons[("dialogue 3", None, "dialogue")]
    assert "no free-text messages" in reasons[("dialogue 4", "casino-3", "chat_logs")]
    list(read_casino(tmp_path / "broken.json", rejects=sink))
    assert "not valid JSON" in str(sink.first[-1]) and str(tmp_path / "broken.json") in str(sink.first[-1])
    with pytest.raises(FileNotFoundError, match="no CaSiNo files"):
        list(read_casino(tmp_path / "empty"))


def test_convert_casino_command(tmp_path, capsys):
    out = tmp_path / "casino.parquet"
    main(["convert", "casino", "--data", str(SAMPLE), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "5 conversations" in printed and "rejected          0" in printed
    back = list(read_conversations(out))
    assert len(back) == 5 and back[0].metadata["source"] == "casino"

"""The streaming scorer: equal to batch scoring, incremental, refuses foreign embedding spaces."""


import numpy as np
import pytest

from salesrl_jax.arrays import TurnArrays
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.data.writers import write_conversations
from salesrl_jax.embed import EmbeddingSpaceMismatch, HashingEmbedder
from salesrl_jax.infer.archive import score_archive
from salesrl_jax.infer.scorer import Scorer, streaming_step
from salesrl_jax.models.predict import make_predict, predict_arrays
from salesrl_jax.run.trained_model import TrainedModel
from tests.conftest import scored_turns


def test_streaming_equals_batch_scoring(tiny_trained, tiny_arrays, tiny_archive, tmp_path):
    conversations = list(read_conversations(tiny_archive))[:12]
    write_conversations(tmp_path / "calls.jsonl", conversations)
    scored = score_archive(tiny_trained, tmp_path / "calls.jsonl", tmp_path / "scores.jsonl", workers=1)
    rows = scored_turns(scored)
    # The cached arrays hold float16 embeddings: the same model on them agrees to float16 rounding.
    model = TrainedModel.load(tiny_trained)
    cached = predict_arrays(make_predict(model.graphdef), model.params, TurnArrays.open(tiny_arrays), rows=512,
                            max_conversations=12)
    scorer = Scorer.load(tiny_trained)
    # Interleave the conversations' turns, as a server with many live calls would see them.
    sessions = [scorer.session() for _ in conversations]
    streamed = {i: [] for i in range(len(conversations))}
    for t in range(max(c.num_turns for c in conversations)):
        for i, conv in enumerate(conversations):
            if t < conv.num_turns:
                turn = conv.turns[t]
                score = sessions[i].add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
                assert score.turn_index == t
                streamed[i].append((score.probability, score.uncertainty))
    for i, conv in enumerate(conversations):
        got = np.array(streamed[i])
        batch = np.array([(r["probability"], r["uncertainty"]) for r in rows if r["conversation_id"] == conv.id])
        np.testing.assert_allclose(got, batch, rtol=1e-5, atol=2e-6)  # outputs are rounded to 6 decimals
        np.testing.assert_allclose(got[:, 0], cached.prediction[cached.conversation == i], atol=5e-4)


def test_quantized_streaming_stays_close_to_float(tiny_trained, tiny_archive):
    conv = next(iter(read_conversations(tiny_archive)))
    streaming_step.cache_clear()  # programs counted from none (other tests' scorers share the step)
    scorers = Scorer.load(tiny_trained), Scorer.load(tiny_trained, quantized=True)
    exact, quant = (scorer.session() for scorer in scorers)
    for turn in conv.turns:
        a = exact.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        b = quant.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        assert abs(a.probability - b.probability) < 0.02
    # one compiled step for both scorers: the second turn does not compile again (a 0.3 s stall in a live call)
    assert scorers[0]._step is scorers[1]._step and scorers[0]._step._cache_size() == 1


def test_a_foreign_embedding_space_is_refused(tiny_trained):
    with pytest.raises(EmbeddingSpaceMismatch, match="was built with embeddings 'hashing:.*:32:"):
        Scorer.load(tiny_trained, embedder=HashingEmbedder(dim=64))


def test_bad_turns_are_clear_errors_and_leave_the_session_unchanged(tiny_trained):
    session = Scorer.load(tiny_trained).session()
    session.add_turn("rep", "Hi, thanks for taking the call.")
    with pytest.raises(ValueError, match="neither the rep nor the customer"):
        session.add_turn("narrator", "meanwhile")
    with pytest.raises(ValueError, match="non-empty"):
        session.add_turn("customer", "   ")
    assert session.add_turn("customer", "Sure, what is this about?").turn_index == 1


def test_a_session_names_its_own_speakers(tiny_trained):
    """A diarized live call names its speakers for that call: the same turns under SPEAKER_00 / SPEAKER_01 score as
    under rep / customer; another session does not know them."""
    scorer = Scorer.load(tiny_trained)
    turns = [("rep", "Hi, thanks for taking the call."), ("customer", "What does it cost?"), ("rep", "Ten a seat.")]
    plain = scorer.session()
    diarized = scorer.session(speakers={"SPEAKER_00": "rep", "speaker 01": "customer"})
    listed = scorer.session(speakers=["SPEAKER_00=rep", "SPEAKER_01=customer"])
    names = {"rep": "SPEAKER_00", "customer": "SPEAKER_01"}
    for role, text in turns:
        expected = plain.add_turn(role, text).probability
        assert diarized.add_turn(names[role], text).probability == expected
        assert listed.add_turn(names[role], text).probability == expected
    with pytest.raises(ValueError, match="session.speakers=.'SPEAKER_00': 'rep'"):
        scorer.session().add_turn("SPEAKER_00", "hello")
    with pytest.raises(ValueError, match="expected NAME=rep or NAME=customer"):
        scorer.session(speakers={"SPEAKER_00": "boss"})


def test_cached_embeddings_are_reused(tiny_trained, tmp_path):
    scorer = Scorer.load(tiny_trained, cache=tmp_path / "cache.sqlite")
    for _ in range(2):
        session = scorer.session()
        session.add_turn("rep", "Hello there")
        session.add_turn("customer", "Hi, what's the price?")
    assert scorer.embedder.stats.hits == 2 and scorer.embedder.stats.misses == 2

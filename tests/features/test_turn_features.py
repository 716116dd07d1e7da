"""Turn features: hand-checked values, and no feature ever reads a future turn."""

import math

import numpy as np

from salesrl_jax.data.records import Turn
from salesrl_jax.features import FEATURE_NAMES, FeatureState, conversation_features, step
from salesrl_jax.sim.config import SimulatorConfig
from salesrl_jax.sim.generate import simulate

TURNS = (
    Turn("rep", "Hi! How are you? Ready to talk pricing?", 0.0, 4.0),
    Turn("customer", "Hmm, that sounds expensive. I'm not sure.", 5.0, 3.0),
    Turn("customer", "How soon could we start?", 10.0, 2.0),
)


def test_hand_checked_values():
    f = conversation_features(TURNS)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    assert f.shape == (3, len(FEATURE_NAMES))
    assert f[0, col["is_customer"]] == 0 and f[1, col["is_customer"]] == 1
    assert f[0, col["question_density"]] == np.float32(2 / 3)  # 3 sentences, 2 questions
    assert f[1, col["response_time"]] == np.float32(math.log1p(1.0) / math.log1p(30))  # 5.0 - (0 + 4)
    assert f[1, col["objection_cue"]] == 1 and f[2, col["buying_cue"]] == 1
    assert f[2, col["objections_so_far"]] == np.float32(math.tanh(0.5))
    assert f[1, col["sentiment"]] != 0
    # rep 8 words, customer 7 + 5 words after turn 3
    assert f[2, col["customer_rep_length_ratio"]] == np.float32(math.tanh(math.log(13 / 9)))
    assert np.all(np.abs(f) <= 1.0 + 1e-6)


def test_missing_timestamps_give_zero_timing_features():
    f = conversation_features([Turn("rep", "hello"), Turn("customer", "hi")])
    assert not f[:, FEATURE_NAMES.index("has_timing")].any()
    assert not f[:, FEATURE_NAMES.index("response_time")].any()


def test_streaming_equals_batch():
    state, rows = FeatureState(), []
    for turn in TURNS:
        state, row = step(state, turn)
        rows.append(row)
    np.testing.assert_array_equal(np.stack(rows), conversation_features(TURNS))


def test_changing_a_future_turn_never_changes_past_features():
    import random

    convs = list(simulate(SimulatorConfig(), 1.0, np.random.default_rng(0), random.Random(0), 0, 30))
    for conv in convs:
        base = conversation_features(conv.turns)
        for t in range(conv.num_turns - 1):
            changed = list(conv.turns)
            changed[t + 1] = Turn("customer", "This is WAY too expensive?! No way.", 999.0, 60.0)
            np.testing.assert_array_equal(conversation_features(changed)[: t + 1], base[: t + 1])


def test_feature_definitions_survive_stripped_docstrings():
    """``python -OO`` drops docstrings: the definitions the manifests record must not come from one."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-OO", "-c", "from salesrl_jax.features.turn_features import "
                          "FEATURE_DEFINITIONS, FEATURE_NAMES; print(len(FEATURE_DEFINITIONS), len(FEATURE_NAMES))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["15", "15"]


def test_cue_patterns_match_as_their_plain_alternations():
    import re

    import pytest

    from salesrl_jax.features.turn_features import BUYING_PATTERN, OBJECTION_PATTERN, cue_pattern

    texts = ["That's too expensive for us", "SOUNDS GOOD, let's do it", "Let’s move", "I'd have to check with my boss",
             "ſounds good", "İ like it", "not a priority", "nothing", "costs more", "intereſted", "inexpensive",
             "next steps?", "We can sign off.", "prepaid", "—not sure—", ""]
    for pattern in (OBJECTION_PATTERN, BUYING_PATTERN):
        plain = re.compile(pattern.pattern.replace(pattern.pattern[2:pattern.pattern.index(")") + 1], ""),
                           re.IGNORECASE)
        assert plain.pattern.startswith(r"\b(") and "(?=" not in plain.pattern
        for text in texts:
            assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in plain.finditer(text)], text
    assert OBJECTION_PATTERN.search("way too expensive") and not OBJECTION_PATTERN.search("inexpensive")
    with pytest.raises(ValueError, match="begin with a letter"):
        cue_pattern(("ok", "(?:maybe)"))

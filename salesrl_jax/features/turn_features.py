"""Turn features, computed causally: the features of turn t read turns 1..t only.

The batch form (`conversation_features`) is a left fold of the streaming form (`step`) over the
turns, so the two agree exactly and no feature can see the future by construction.

Every feature is scaled by a fixed, documented transform (no statistics fitted on data, so
nothing leaks between training and test sets) into roughly [-1, 1]; `FEATURE_DEFINITIONS` below
names and defines each one (the cache manifests copy it, so docs and data never disagree).

Sentiment uses VADER (Hutto & Gilbert, ICWSM 2014), a maintained, validated lexicon-and-rules
model for short conversational text that runs offline.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

from salesrl_jax.data.records import Turn

FEATURE_DEFINITIONS: dict[str, str] = {
    "is_customer": "1 if the customer speaks this turn, else 0",
    "position": "log1p(t) / log1p(27), t = 0-based turn index",
    "words": "log1p(words in the turn) / log1p(60)",
    "speaking_time": "log1p(duration seconds) / log1p(30); 0 if unknown",
    "has_timing": "1 if the turn has a start time and duration",
    "response_time": "log1p(gap since the previous turn ended, s) / log1p(30); 0 if unknown",
    "question_density": 'questions ("?") per sentence in the turn, capped at 1',
    "sentiment": "VADER compound score of the turn, in [-1, 1]",
    "customer_sentiment_mean": "mean VADER compound over the customer's turns so far",
    "customer_rep_length_ratio": "tanh(log((customer words so far + 1) / (rep words so far + 1)))",
    "customer_questions": "tanh(customer questions so far / 3)",
    "objection_cue": "1 if the turn matches an objection pattern (price, timing, authority, rival)",
    "buying_cue": "1 if the turn matches a buying-interest pattern",
    "objections_so_far": "tanh(customer turns with objection cues so far / 2)",
    "buying_so_far": "tanh(customer turns with buying cues so far / 2)",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DEFINITIONS)  # the column order of the feature arrays
# Which features each encoder switch controls (model.use_position / use_features / use_engagement).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "position": ("is_customer", "position"),
    "turn": ("words", "speaking_time", "has_timing", "question_density", "sentiment", "objection_cue", "buying_cue"),
    "engagement": ("response_time", "customer_sentiment_mean", "customer_rep_length_ratio", "customer_questions",
                   "objections_so_far", "buying_so_far"),
}
assert sorted(sum(FEATURE_GROUPS.values(), ())) == sorted(FEATURE_NAMES)


def cue_pattern(alternatives: tuple[str, ...]) -> re.Pattern:
    """``\\b(a_1|...|a_n)\\b``, case-insensitive, each ``a_i`` a regular expression that begins with a letter.

    A lookahead on the alternatives' first letters comes first: it holds wherever one of them matches, so the
    matches are the same, and Python's ``re`` then tries the alternation only at word starts with one of those
    letters (both cue patterns: 12 us a turn without it, 6 with it, on simulator and PersuasionForGood turns)."""
    if not all(a[:1].isalpha() for a in alternatives):
        raise ValueError(f"every cue alternative must begin with a letter: {alternatives}")
    first = "".join(sorted({a[0].lower() for a in alternatives}))
    return re.compile(rf"\b(?=[{first}])({'|'.join(alternatives)})\b", re.IGNORECASE)


# Cue patterns: what sales teams flag in call review. Matched case-insensitively on word boundaries.
OBJECTION_PATTERN = cue_pattern((
    "expensive", "pricey", "budget", "afford", "too much", "cost[s]? more", "not (?:a )?priority", "timing",
    "next quarter", "later", "swamped", "not my decision", "sign[s]? off", "run this by", "check with", "approve",
    "competitor", "quoted", "switching", "not sure", "on the fence", "think about it"))
BUYING_PATTERN = cue_pattern((
    "sounds good", "sounds (?:really )?useful", "exactly what", "how soon", "next steps?",
    "let'?s (?:do it|get started|move)", "i like", "interested", "send it over", "book it", "sign me up", "convinced",
    "save us"))
_SENTENCE = re.compile(r"[.!?]+")

_ANALYZER = None


def _sentiment(text: str) -> float:
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return float(_ANALYZER.polarity_scores(text)["compound"])


@dataclasses.dataclass(frozen=True)
class FeatureState:
    """What the features carry from turns 1..t-1 to turn t."""

    turn_index: int = 0
    last_end: float | None = None
    customer_words: int = 0
    rep_words: int = 0
    customer_turns: int = 0
    customer_sentiment_sum: float = 0.0
    customer_questions: int = 0
    objections: int = 0
    buying: int = 0


def _log_scale(x: float, top: float) -> float:
    return math.log1p(max(x, 0.0)) / math.log1p(top)


@dataclasses.dataclass(frozen=True)
class TextStats:
    """What the features read of a turn's text alone (the rest is its speaker, its timing and the turns before)."""

    words: int
    questions: int
    sentences: int  # at least 1
    sentiment: float
    objection: bool
    buying: bool


def text_stats(text: str) -> TextStats:
    return TextStats(words=len(text.split()), questions=text.count("?"),
                     sentences=max(len([s for s in _SENTENCE.split(text) if s.strip()]), 1),
                     sentiment=_sentiment(text), objection=bool(OBJECTION_PATTERN.search(text)),
                     buying=bool(BUYING_PATTERN.search(text)))


def step(state: FeatureState, turn: Turn) -> tuple[FeatureState, np.ndarray]:
    """Features of one new turn given the carried state; returns ``(new_state, [F] float32)``."""
    stats = text_stats(turn.text)
    customer = turn.speaker == "customer"
    words, questions, sentences = stats.words, stats.questions, stats.sentences
    sentiment, objection, buying = stats.sentiment, stats.objection, stats.buying
    has_timing = turn.start_time is not None and turn.duration is not None
    gap = turn.start_time - state.last_end if turn.start_time is not None and state.last_end is not None else None
    new = dataclasses.replace(
        state,
        turn_index=state.turn_index + 1,
        last_end=turn.start_time + turn.duration if has_timing else None,
        customer_words=state.customer_words + (words if customer else 0),
        rep_words=state.rep_words + (0 if customer else words),
        customer_turns=state.customer_turns + int(customer),
        customer_sentiment_sum=state.customer_sentiment_sum + (sentiment if customer else 0.0),
        customer_questions=state.customer_questions + (questions if customer else 0),
        objections=state.objections + int(customer and objection),
        buying=state.buying + int(customer and buying),
    )
    features = np.array([
        float(customer),
        _log_scale(state.turn_index, 27),
        _log_scale(words, 60),
        _log_scale(turn.duration, 30) if turn.duration is not None else 0.0,
        float(has_timing),
        _log_scale(gap, 30) if gap is not None else 0.0,
        min(questions / sentences, 1.0),
        sentiment,
        new.customer_sentiment_sum / new.customer_turns if new.customer_turns else 0.0,
        math.tanh(math.log((new.customer_words + 1) / (new.rep_words + 1))),
        math.tanh(new.customer_questions / 3),
        float(objection),
        float(buying),
        math.tanh(new.objections / 2),
        math.tanh(new.buying / 2),
    ], dtype=np.float32)
    return new, features


def conversation_features(turns: Sequence[Turn]) -> np.ndarray:
    """``[T, F]`` features of every turn: the fold of `step` over the turns."""
    state = FeatureState()
    out = np.empty((len(turns), len(FEATURE_NAMES)), dtype=np.float32)
    for i, turn in enumerate(turns):
        state, out[i] = step(state, turn)
    return out

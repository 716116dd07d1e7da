"""The real-time API: one session per live conversation, one call per new turn.

    scorer = Scorer.load("runs/demo/model", quantized=True)
    session = scorer.session()
    score = session.add_turn("customer", "That sounds useful, how soon could we start?")
    score.probability, score.uncertainty, score.turn_index
    score.confidence, score.p_low, score.p_high, score.low_confidence   # when the model has a confidence fit

    scorer = Scorer.load("runs/demo/model", guidance="runs/guidance-model")  # a guidance run on this model's state
    score.guidance.next_act, score.guidance.sale_if                     # learned in simulation (docs/guidance.md)

A session carries the feature state and the encoder's pooled history (`EncoderCarry`) and updates
both incrementally: the history is never re-encoded, and a turn reads turns 1..t only. Its
outputs, confidence included (its running text novelty is carried too), equal batch scoring of the same
conversation to float tolerance (tested), and so does the guidance (`salesrl_jax.guidance.inference`). Sessions are
independent objects, so one process serves many conversations at once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.data.records import Turn, normalize_speaker, parse_speaker_names
from salesrl_jax.embed.base import Embedder
from salesrl_jax.embed.ngrams import NgramHasher
from salesrl_jax.features import turn_features
from salesrl_jax.guidance.inference import Guidance, as_guidance, check_guidance_for, guidance_arrays
from salesrl_jax.infer.quantize import dequantize_params, quantize_params, saved_int8
from salesrl_jax.infer.streaming_confidence import DenseTextNovelty, TurnConfidence, blas_one_thread
from salesrl_jax.models.confidence import VALUE_FIELDS, StreamingNovelty, state_distance, text_novelty
from salesrl_jax.models.encoder import EncoderCarry
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.run.trained_model import TrainedModel


@dataclasses.dataclass(frozen=True)
class TurnScore:
    turn_index: int  # 0-based index of the turn just added
    probability: float  # P(sale | turns 1..t)
    uncertainty: float  # ensemble disagreement (std of the heads' probabilities)
    # The confidence module's outputs (`salesrl_jax.models.confidence`); None for a model without a fit.
    confidence: float | None = None  # in [0, 1]: 1 - the estimated RMS error of the probability, x familiarity gate
    expected_error: float | None = None  # estimated (outcome - probability)^2
    familiarity: float | None = None  # a p-value: uniform for states like the calibration data's, ~0 unlike any
    p_low: float | None = None  # the calibrated interval around the probability
    p_high: float | None = None
    low_confidence: bool | None = None  # confidence below the fit's low_threshold (default 0.55)
    # The rep's next act as a policy learned in simulation recommends it; None without a guidance run.
    guidance: Guidance | None = None


@functools.lru_cache(maxsize=16)
def streaming_step(graphdef: nnx.GraphDef, treedef, feed_prediction: bool, policy: tuple | None) -> Callable:
    """The jitted one-turn step of every `Scorer` of one model structure (``graphdef``, and ``treedef`` of its
    parameters; ``policy``: a guidance policy's (graphdef, parameter treedef), or None), so that scorers that differ
    only in their parameters (a model and its recalibrated copy, a service reloading a model) share its compiled
    programs instead of each compiling its own.

    ``step(leaves, carry, embedding, features, prev, bank) -> (carry, values)``: ``leaves`` the model's parameter
    leaves (then the policy's); ``values`` the probability, the uncertainty, the encoder state, the guidance (with a
    policy) and, with a ``bank`` (the confidence module's reference bank and its norms), the state's distance to it,
    in one array (one device-to-host copy per turn)."""
    n_model = treedef.num_leaves

    @jax.jit
    def step(leaves, carry: EncoderCarry, embedding, features, prev, bank):
        agent = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves[:n_model]))
        carry, out = agent.step(carry, embedding, features, prev if feed_prediction else None)
        parts = [jnp.stack([out.prediction, out.uncertainty]), out.state]
        if policy is not None:
            policy_params = jax.tree.unflatten(policy[1], leaves[n_model:])
            parts.append(guidance_arrays(policy[0], policy_params, out.state))
        if bank is not None:
            parts.append(state_distance(bank[0], bank[1], out.state[None]))
        return carry, jnp.concatenate(parts)

    return step


class Scorer:
    """A trained model plus the embedder it was trained with, ready to score turns one at a time."""

    def __init__(self, model: TrainedModel, embedder: Embedder, *, quantized: bool = False,
                 confidence: bool = True, guidance=None):
        """``guidance``: a `salesrl_jax.guidance.train.TrainedPolicy` trained on this model's encoder state."""
        model.require_compatible(embedder.identity, turn_features.FEATURE_NAMES, "the embedder in use")
        if guidance is not None:
            check_guidance_for(guidance, model)
        self.guidance = guidance
        self.model = model
        self.embedder = embedder
        self.quantized = quantized
        params = model.params
        if quantized:
            # Batch-1 streaming runs the float graph on weights dequantized once, here: on XLA:CPU a
            # per-call activation quantization costs more than an int8 matmul saves at batch 1.
            saved = saved_int8(model)
            if saved is not None:
                q_params = saved[1]
            else:
                _, q_params = quantize_params(params, model.config.model, model.identity.dim)
            params = dequantize_params(q_params, params)  # on the float parameters' device: one compiled step
        self.params = params
        graphdef = model.graphdef
        self.feed_prediction = model.config.model.feed_prediction
        self.confidence = model.confidence if confidence else None  # ConfidenceParams, or None
        self._turn_confidence = TurnConfidence(self.confidence) if self.confidence is not None else None
        self._dense_novelty = (DenseTextNovelty(self.confidence)
                               if self.confidence is not None and self.confidence.text == "dense" else None)
        # The step takes the parameters as a flat list of arrays: flattening nnx's state on every call cost about
        # 35 us of a 0.2 ms turn; a list of arrays flattens in C++.
        self._param_leaves, treedef = jax.tree.flatten(params)
        self.state_dim = model.config.model.state_dim
        policy = None
        if guidance is not None:
            self._param_leaves = self._param_leaves + jax.tree.leaves(guidance.params)
            policy = (guidance.graphdef, jax.tree.structure(guidance.params))

        # With confidence the step also returns the state's distance to the reference bank (the bank's arrays are
        # arguments, not constants baked into the program). In numpy the distance alone is cheaper (7.5 us on one
        # BLAS thread against 45 us more step), but it has to wait for the step's state, while inside the step it runs
        # as the host computes the text novelty: moved to the host, the turn took 0.42-0.43 ms against 0.37-0.40
        # (session 43, docs/benchmarks.md).
        self._bank = None if self.confidence is None else (jax.device_put(np.asarray(self.confidence.bank)),
                                                            jax.device_put(np.asarray(self.confidence.bank_norms)))
        self._step = streaming_step(graphdef, treedef, self.feed_prediction, policy)
        # Committed to the device, as the carries the step returns are (a restored model's parameters are
        # committed): an uncommitted first carry compiled the step again at every process's second turn (0.3 s).
        self._initial_carry = jax.device_put(nnx.merge(graphdef, params).encoder.init_carry(), jax.local_devices()[0])

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str], *, quantized: bool = False, embedder: Embedder | None = None,
             cache: str | os.PathLike[str] | None = None, confidence: bool = True,
             guidance: str | os.PathLike[str] | None = None) -> "Scorer":
        """Load a run directory or checkpoint; the embedder defaults to the one in the model's config,
        behind a SQLite embedding cache if ``cache`` is given. ``guidance``: a `salesrl guidance train` run
        (observation model) on this model, whose policy recommends the rep's next act after every turn (``DIR`` or
        ``DIR@K`` for its K-th seed)."""
        model = TrainedModel.load(checkpoint)
        policy = None
        if guidance is not None:
            from salesrl_jax.guidance.train import load_policy_spec

            policy = load_policy_spec(guidance)
        if embedder is None:
            embedder = model.config.embedder.build()
        if cache is not None and not isinstance(embedder, NgramHasher):  # hashing grams needs no cache
            from salesrl_jax.embed.cache import CachedEmbedder, EmbeddingCache

            embedder = CachedEmbedder(embedder, EmbeddingCache(cache))
        return cls(model, embedder, quantized=quantized, confidence=confidence, guidance=policy)

    def session(self, speakers: Mapping[str, str] | Iterable[str] | None = None) -> "ScoringSession":
        """A live conversation, one `ScoringSession.add_turn` per turn. ``speakers`` names roles the usual aliases do
        not know, for this conversation only (a diarizer's labels differ from call to call): ``{"SPEAKER_00":
        "rep"}`` or ``["SPEAKER_00=rep", "SPEAKER_01=customer"]``."""
        return ScoringSession(self, speakers)

    def opening_guidance(self) -> Guidance | None:
        """The recommendation before any turn (the policy's first observation: a zero state, as in training)."""
        if self.guidance is None:
            return None
        zeros = jnp.zeros((self.state_dim,), jnp.float32)
        return as_guidance(np.asarray(guidance_arrays(self.guidance.graphdef, self.guidance.params, zeros)))

    def embed_turn(self, text: str) -> np.ndarray | GramBags:
        """A turn's text as the model reads it: its embedding, or its n-gram bag for a sparse-text model."""
        if isinstance(self.embedder, NgramHasher):
            rows = self.embedder.grams([text])
            return GramBags(rows.ids[0], rows.counts[0])
        return self.embedder.embed([text])[0]

    def score_embedded(self, session: "ScoringSession", embedding: np.ndarray | GramBags, features: np.ndarray
                       ) -> TurnScore:
        """Advance ``session`` by one turn whose embedding (or n-gram bag) and features are already computed."""
        # Dispatch is asynchronous: the step runs on XLA's thread while this one computes the text signal.
        carry, values = self._step(self._param_leaves, session.carry, embedding, features, session.prev_prediction,
                                   self._bank)
        conf = self.confidence
        if conf is None:
            values = np.asarray(values)
            prob, unc = float(values[0]), float(values[1])
            session.carry, session.prev_prediction, session.state = carry, prob, values[2:2 + self.state_dim]
            session.turn_index += 1
            return TurnScore(session.turn_index - 1, prob, unc, guidance=self._guidance(values))
        # The text signal on the host while XLA runs the step, in numpy (XLA:CPU spends several times longer on one
        # turn's small products): a dense turn by `DenseTextNovelty` (tested equal to the batch form), n-gram mass by
        # the batch function; on one BLAS thread (a second one spins on the core XLA's step runs on: 0.27 ms a turn
        # instead of 0.21). The state distance came with the step; then the combination in scalar Python
        # (`TurnConfidence`).
        with blas_one_thread():
            if self._dense_novelty is not None:
                novelty = self._dense_novelty(embedding)
            else:  # n-gram mass (or no text signal): the batch function on one turn
                text = jax.tree.map(lambda x: np.asarray(x)[None], embedding)
                novelty = text_novelty(conf, text, rows=1, xp=np)[0]
        values = np.asarray(values)
        prob, unc, distance = float(values[0]), float(values[1]), float(values[-1])
        session.carry, session.prev_prediction, session.state = carry, prob, values[2:2 + self.state_dim]
        session.turn_index += 1
        session.novelty, so_far = session.novelty.add(novelty)
        scored = self._turn_confidence.combine(prob, unc, distance, so_far, session.turn_index - 1)
        return TurnScore(session.turn_index - 1, prob, unc, low_confidence=bool(scored.low_confidence),
                         guidance=self._guidance(values),
                         **{name: float(getattr(scored, name)) for name in VALUE_FIELDS})

    def _guidance(self, values: np.ndarray) -> Guidance | None:
        if self.guidance is None:
            return None
        end = -1 if self._bank is not None else None  # the state distance is the last value with confidence
        return as_guidance(values[2 + self.state_dim:end])


class ScoringSession:
    """The state of one live conversation."""

    def __init__(self, scorer: Scorer, speakers: Mapping[str, str] | Iterable[str] | None = None):
        self.scorer = scorer
        self.speakers = parse_speaker_names(speakers or ())
        self.features = turn_features.FeatureState()
        self.carry: EncoderCarry = scorer._initial_carry
        self.prev_prediction = 0.5
        self.state: np.ndarray | None = None  # [S] the encoder state after the last turn (None before any)
        self.novelty = StreamingNovelty()
        self.turn_index = 0

    def add_turn(self, speaker: str, text: str, start_time: float | None = None,
                 duration: float | None = None) -> TurnScore:
        role = normalize_speaker(speaker, self.speakers)
        if role is None:
            raise ValueError(f"speaker {speaker!r} is neither the rep nor the customer (name its role with "
                             f"`scorer.session(speakers={{{speaker!r}: 'rep'}})` or 'customer')")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        self.features, features = turn_features.step(self.features, Turn(role, text, start_time, duration))
        return self.scorer.score_embedded(self, self.scorer.embed_turn(text), features)

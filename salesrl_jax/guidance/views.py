"""What a guidance policy observes of a conversation in the environment: two views, one interface.

    obs, vstate = view.reset(key, state)                                   # after `salesrl_jax.env.reset`
    obs, vstate = view.step(key, vstate, before, after, action, info)      # after `salesrl_jax.env.step`

* `ActsView` (``observation="acts"``): the dialogue acts so far and the position (`salesrl_jax.env.observe`).
* `ModelView` (``observation="model"``): the conversion model's encoder state, exactly as a `Scorer` session holds
  it at inference. Each exchange the view renders the rep's act and the customer's answer as text (one of the
  bank's variants of each act, `salesrl_jax.guidance.bank`, the customer's at the interest before the exchange, as
  the simulator renders them), times the two turns as the simulator does (words per second drawn per
  conversation, lognormal gaps that grow as the customer's interest falls), computes their turn features (the
  jnp form of `salesrl_jax.features.turn_features.step`) and advances the encoder by two turns
  (`StateEncoder.step_projected`; the bank's turn projections ``u`` are computed once). The observation is the
  state after the customer's turn; before the first exchange it is zeros (a session with no turns has no state).
  The timing draws and the variant choices use the view's own keys, so the latent dynamics keep their common
  random numbers across policies.

A view is a pytree (closed over or passed to jit); its state is a pytree with a batch axis under ``vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from salesrl_jax.env.environment import OBS_DIM, EnvParams, EnvState, observe
from salesrl_jax.features.turn_features import FEATURE_NAMES
from salesrl_jax.guidance.bank import STAT_FIELDS, UtteranceBank
from salesrl_jax.models.encoder import EncoderCarry
from salesrl_jax.models.inputs import GramBags
from salesrl_jax.sim import dynamics as sim

_W, _Q, _S, _SENT, _OBJ, _BUY = (STAT_FIELDS.index(f) for f in ("words", "questions", "sentences", "sentiment",
                                                                 "objection", "buying"))


@struct.dataclass
class ActsView:
    """View "acts": counts of each act so far, the customer's last act, the position (`OBS_DIM` numbers)."""

    params: EnvParams
    dim: int = struct.field(pytree_node=False, default=OBS_DIM)

    def reset(self, key, state: EnvState):
        return observe(state, self.params), jnp.zeros(())

    def step(self, key, vstate, before: EnvState, after: EnvState, action, info: dict):
        return observe(after, self.params), vstate


@struct.dataclass
class FeatureCarry:
    """`salesrl_jax.features.turn_features.FeatureState` as float32 scalars (``last_end`` read once a turn exists)."""

    turn_index: jnp.ndarray
    last_end: jnp.ndarray
    customer_words: jnp.ndarray
    rep_words: jnp.ndarray
    customer_turns: jnp.ndarray
    customer_sentiment_sum: jnp.ndarray
    customer_questions: jnp.ndarray
    objections: jnp.ndarray
    buying: jnp.ndarray

    @classmethod
    def zeros(cls) -> "FeatureCarry":
        return cls(*(jnp.zeros((), jnp.float32) for _ in range(9)))


def _log_scale(x, top: float):
    return jnp.log1p(jnp.maximum(x, 0.0)) / math.log1p(top)


def turn_features(fc: FeatureCarry, stats: jnp.ndarray, customer: jnp.ndarray, start: jnp.ndarray,
                  duration: jnp.ndarray) -> tuple[FeatureCarry, jnp.ndarray]:
    """The jnp form of `turn_features.step` for a timed turn: ``stats [len(STAT_FIELDS)]`` of its text (the bank's),
    ``customer`` (bool), ``start`` and ``duration`` in seconds -> ``(carry, features [F])``."""
    c = customer.astype(jnp.float32)
    words, questions, sentences = stats[_W], stats[_Q], stats[_S]
    sentiment, objection, buying = stats[_SENT], stats[_OBJ], stats[_BUY]
    new = FeatureCarry(
        turn_index=fc.turn_index + 1, last_end=start + duration,
        customer_words=fc.customer_words + c * words, rep_words=fc.rep_words + (1 - c) * words,
        customer_turns=fc.customer_turns + c, customer_sentiment_sum=fc.customer_sentiment_sum + c * sentiment,
        customer_questions=fc.customer_questions + c * questions, objections=fc.objections + c * objection,
        buying=fc.buying + c * buying)
    gap = start - fc.last_end
    values = {
        "is_customer": c,
        "position": _log_scale(fc.turn_index, 27),
        "words": _log_scale(words, 60),
        "speaking_time": _log_scale(duration, 30),
        "has_timing": jnp.ones(()),
        "response_time": jnp.where(fc.turn_index > 0, _log_scale(gap, 30), 0.0),
        "question_density": jnp.minimum(questions / jnp.maximum(sentences, 1.0), 1.0),
        "sentiment": sentiment,
        "customer_sentiment_mean": jnp.where(new.customer_turns > 0, new.customer_sentiment_sum
                                             / jnp.maximum(new.customer_turns, 1.0), 0.0),
        "customer_rep_length_ratio": jnp.tanh(jnp.log((new.customer_words + 1) / (new.rep_words + 1))),
        "customer_questions": jnp.tanh(new.customer_questions / 3),
        "objection_cue": objection,
        "buying_cue": buying,
        "objections_so_far": jnp.tanh(new.objections / 2),
        "buying_so_far": jnp.tanh(new.buying / 2),
    }
    return new, jnp.stack([values[name] for name in FEATURE_NAMES]).astype(jnp.float32)


@struct.dataclass
class ViewState:
    """One conversation's view "model": the encoder's and the features' carries, the clock, the speaking rates."""

    carry: EncoderCarry
    features: FeatureCarry
    clock: jnp.ndarray  # [] seconds since the call started (unrounded, as the simulator's)
    rates: jnp.ndarray  # [2] words per second of the rep and of the customer
    obs: jnp.ndarray  # [S] the state after the last turn (zeros before any)


@struct.dataclass
class TurnsPlayed:
    """What one exchange rendered (for tests and inspection): the bank rows and the rounded timing of its two
    turns, rep then customer."""

    rows: jnp.ndarray  # [2] int32
    start: jnp.ndarray  # [2] seconds, rounded to 1/100 as the simulator writes them
    duration: jnp.ndarray  # [2]


def _round2(x):
    return jnp.round(x * 100.0) / 100.0


@struct.dataclass
class ModelView:
    """View "model" (see the module docstring), built by `model_view`."""

    params: nnx.State  # the conversion model's parameters
    u: jnp.ndarray  # [N, H] each bank utterance's projected turn (unused by a features-only model)
    stats: jnp.ndarray  # [N, len(STAT_FIELDS)]
    rep_rows: jnp.ndarray  # [industries, R, V]
    customer_rows: jnp.ndarray  # [industries, C, LEVELS, V]
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    dim: int = struct.field(pytree_node=False)
    use_text: bool = struct.field(pytree_node=False)
    industries: tuple[str, ...] = struct.field(pytree_node=False)  # the bank's, in the environment's order

    def encoder(self):
        return nnx.merge(self.graphdef, self.params).encoder

    def reset(self, key, state: EnvState):
        k_rep, k_customer = jax.random.split(key)
        rates = jnp.stack([jax.random.uniform(k_rep, (), minval=2.2, maxval=3.0),
                           jax.random.uniform(k_customer, (), minval=1.9, maxval=2.8)])
        obs = jnp.zeros((self.dim,), jnp.float32)
        return obs, ViewState(self.encoder().init_carry(), FeatureCarry.zeros(), jnp.zeros(()), rates, obs)

    def _turn(self, key, vs: ViewState, row, customer: bool, level):
        """One turn: its timing, features and the encoder's step -> ``(view state, context, start, duration)``."""
        k_gap, k_duration = jax.random.split(key)
        mean_gap = (0.9 + 0.45 * (3 - level.astype(jnp.float32))) if customer else jnp.asarray(0.7)
        gap = jnp.exp(jnp.log(jnp.maximum(mean_gap, 0.2)) + 0.45 * jax.random.normal(k_gap))
        clock = vs.clock + jnp.where(vs.features.turn_index > 0, gap, 0.0)
        stats = self.stats[row]
        duration = stats[_W] / vs.rates[int(customer)] * jnp.exp(0.15 * jax.random.normal(k_duration))
        start, shown = _round2(clock), _round2(duration)
        features, f = turn_features(vs.features, stats, jnp.asarray(customer), start, shown)
        encoder = self.encoder()
        u = self.u[row] if self.use_text else encoder.project_turn(None, f)
        carry, context = encoder.step_projected(vs.carry, u, f)
        return vs.replace(carry=carry, features=features, clock=clock + duration), context, start, shown

    def exchange(self, key, vs: ViewState, industry, level, rep_act, customer_act
                 ) -> tuple[jnp.ndarray, ViewState, TurnsPlayed]:
        """The rep's act and the customer's answer as two turns -> ``(obs, view state, what was rendered)``."""
        k_rep, k_customer, k_rep_turn, k_customer_turn = jax.random.split(key, 4)
        variants = self.rep_rows.shape[-1]
        rep_row = self.rep_rows[industry, rep_act, jax.random.randint(k_rep, (), 0, variants)]
        customer_row = self.customer_rows[industry, customer_act, level,
                                          jax.random.randint(k_customer, (), 0, variants)]
        vs, _, rep_start, rep_duration = self._turn(k_rep_turn, vs, rep_row, False, level)
        vs, context, start, duration = self._turn(k_customer_turn, vs, customer_row, True, level)
        obs = self.encoder().deep_state(context)
        played = TurnsPlayed(jnp.stack([rep_row, customer_row]), jnp.stack([rep_start, start]),
                             jnp.stack([rep_duration, duration]))
        return obs, vs.replace(obs=obs), played

    def step(self, key, vs: ViewState, before: EnvState, after: EnvState, action, info: dict):
        obs, new, _ = self.exchange(key, vs, before.industry, before.level, jnp.minimum(action, sim.R - 1),
                                    info["customer_act"])
        new = jax.tree.map(lambda a, b: jnp.where(info["played"], a, b), new, vs)
        return new.obs, new


def model_view(model, bank: UtteranceBank, params: EnvParams) -> ModelView:
    """The view "model" of a trained conversion model (`salesrl_jax.run.trained_model.TrainedModel`) over ``bank``
    (rendered for ``params``' industries, in their order)."""
    config = model.config.model
    if config.feed_prediction:
        raise ValueError(f"{model.directory}: a model with model.feed_prediction reads its own previous prediction, "
                         "which the guidance view does not compute; train the conversion model without it")
    if bank.industries != params.industries:
        raise ValueError(f"the utterance bank's industries {bank.industries} are not the environment's "
                         f"{params.industries}")
    if model.sparse_text != (bank.gram_ids is not None):
        raise ValueError(f"{model.directory}: the bank was embedded "
                         + ("as n-gram bags" if bank.gram_ids is not None else "densely")
                         + ", not as this model reads text")
    graphdef, weights = model.graphdef, model.params

    @jax.jit
    def project(text):
        encoder = nnx.merge(graphdef, weights).encoder
        return encoder.project_turn(text, jnp.zeros((text.shape[0], len(FEATURE_NAMES)), jnp.float32))

    n = len(bank.texts)
    if not config.use_text:
        u = np.zeros((n, 1), np.float32)
    elif bank.gram_ids is not None:
        u = np.asarray(project(GramBags(jnp.asarray(bank.gram_ids), jnp.asarray(bank.gram_counts))))
    else:
        u = np.asarray(project(jnp.asarray(bank.embeddings)))
    return ModelView(weights, jnp.asarray(u), jnp.asarray(bank.stats), jnp.asarray(bank.rep_rows),
                     jnp.asarray(bank.customer_rows), graphdef=graphdef, dim=config.state_dim,
                     use_text=config.use_text, industries=bank.industries)

"""The SalesRLAgent model: state encoder plus policy, value and ensemble heads."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx, struct

from salesrl_jax.models.config import ModelConfig
from salesrl_jax.models.encoder import EncoderCarry, StateEncoder
from salesrl_jax.models.heads import EnsembleHeads, MLPHead, PolicyHead, beta_policy
from salesrl_jax.models.inputs import TurnInputs
from salesrl_jax.models.layers import Int8Spec


@struct.dataclass
class AgentOutput:
    """Per-turn outputs; every field has the batch shape ``[...]`` except the ensemble's ``[K, ...]``."""

    logit: jnp.ndarray  # policy mean logit: the prediction is sigmoid(logit)
    concentration: jnp.ndarray  # policy Beta concentration alpha + beta
    value: jnp.ndarray  # expected return from this state
    ensemble_logits: jnp.ndarray  # [K, ...] probability logits of the ensemble heads
    state: jnp.ndarray  # [..., S] the encoder state the heads read (the confidence module's distance signal)

    @property
    def prediction(self) -> jnp.ndarray:
        """P(sale | turns 1..t): the policy's mean."""
        return jax.nn.sigmoid(self.logit)

    @property
    def uncertainty(self) -> jnp.ndarray:
        """Ensemble disagreement: standard deviation of the heads' probabilities (0 without an ensemble)."""
        if self.ensemble_logits.shape[0] < 2:
            return jnp.zeros_like(self.logit)
        return jnp.std(jax.nn.sigmoid(self.ensemble_logits), axis=0)

    def policy(self):
        return beta_policy(self.logit, self.concentration)


class SalesAgent(nnx.Module):
    """``quantized=Int8Spec(...)`` builds the int8 inference form (wide layers int8, narrow output layers float)."""

    def __init__(self, config: ModelConfig, embed_dim: int, *, rngs: nnx.Rngs, quantized: Int8Spec | None = None,
                 sparse_text: bool = False):
        self.config = config
        self.quantized = quantized
        self.encoder = StateEncoder(config, embed_dim, rngs=rngs, quantized=quantized, sparse_text=sparse_text)
        self.policy = PolicyHead(config.state_dim, config.min_concentration, rngs=rngs)
        self.value = MLPHead(config.state_dim, config.head_hidden, rngs=rngs, quantized=quantized)
        if config.ensemble_size:
            self.ensemble = EnsembleHeads(config.state_dim, config.head_hidden, config.ensemble_size, rngs=rngs,
                                          quantized=quantized)

    def split_state(self, state: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """An encoder state -> (the deep state ``[..., S]`` the heads read, the wide term's logit ``[...]``, 0
        without one): with `ModelConfig.wide_text` the encoder passes the wide logit on as the last column."""
        if not self.encoder.wide:
            return state, jnp.zeros(state.shape[:-1], state.dtype)
        return state[..., :-1], state[..., -1]

    def policy_head(self, state: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(mean logit, concentration) of the policy on an encoder state: the deep head plus the wide term."""
        deep, wide = self.split_state(state)
        logit, concentration = self.policy(deep)
        return logit + wide, concentration

    def value_head(self, state: jnp.ndarray) -> jnp.ndarray:
        """The value of an encoder state (the deep state only: the wide term is a probability logit)."""
        return self.value(self.split_state(state)[0])

    def ensemble_head(self, state: jnp.ndarray, state_q: jnp.ndarray | None = None) -> jnp.ndarray:
        """The ensemble's logits ``[K, ...]`` on an encoder state, each plus the wide term (the members share it)."""
        deep, wide = self.split_state(state)
        return self.ensemble(deep, state_q) + wide

    def heads(self, state: jnp.ndarray) -> AgentOutput:
        """Every head on the encoder's state ``[..., S (+ 1)]``; the output's ``state`` is the deep state."""
        logit, concentration = self.policy_head(state)
        deep, _ = self.split_state(state)
        # Calibrated int8: the value and ensemble heads all read the state, so calibration gives them one
        # input scale (`salesrl_jax.infer.quantize` checks it): quantize the state once, not once per head.
        state_q = (self.value.hidden.quantize_input(deep) if self.quantized and self.quantized.calibrated
                   else None)
        ensemble = (self.ensemble_head(state, state_q) if self.config.ensemble_size
                    else jnp.zeros((0,) + logit.shape, logit.dtype))
        return AgentOutput(logit, concentration, self.value(deep, state_q), ensemble, deep)

    def __call__(self, inputs: TurnInputs, prev_prediction: jnp.ndarray | None = None) -> AgentOutput:
        """Batch form over a flat batch of turns."""
        return self.heads(self.encoder(inputs, prev_prediction))

    def predict(self, inputs: TurnInputs) -> AgentOutput:
        """Batch form as deployed: with ``feed_prediction``, each turn reads the model's own previous
        prediction (`scan_with_feedback`); otherwise one parallel pass."""
        context = self.encoder.context(inputs)
        if not self.config.feed_prediction:
            return self.heads(self.encoder.state(context))

        def emit(agent: "SalesAgent", state: jnp.ndarray, prev: jnp.ndarray, offset: jnp.ndarray):
            out = agent.heads(state)  # deployed: the heads hold the wide term themselves (offset 0)
            return out.prediction, out

        out = self.scan_with_feedback(context, inputs.starts, emit, inputs.segments)
        # The scan stacks the ensemble axis second: [N, K] -> [K, N].
        return out.replace(ensemble_logits=jnp.moveaxis(out.ensemble_logits, 0, -1))

    def scan_with_feedback(self, context: jnp.ndarray, starts: jnp.ndarray, emit: Callable, segments: int = 1,
                           offset: jnp.ndarray | None = None):
        """The states of flat rows in order when each reads the previous row's prediction (``prior`` 0.5 at
        a conversation start): a `lax.scan` over rows. ``emit(agent, state, prev, offset) -> (prediction, out)``
        says what each row predicts (fed to the next row) and outputs, ``offset`` being the row's entry of
        ``offset [N]`` (0 when None): a logit a training loss adds to the heads' (the wide term's out-of-fold
        stand-in, `salesrl_jax.models.bag.without_wide_term`), so that what a row feeds forward is what the
        deployed model, wide term included, would. Returns the stacked outputs.
        ``segments > 1``: the rows are that many independent equal slices (`TurnInputs.segments`), scanned
        side by side (vmapped), so a mesh that shards them scans each device's slice locally."""
        # NNX modules cannot be closed over by a JAX transform: split, and merge inside the body.
        graphdef, params = nnx.split(self)
        offset = jnp.zeros(starts.shape, jnp.float32) if offset is None else offset

        def row(prev, step):
            agent = nnx.merge(graphdef, params)
            ctx, start, row_offset = step
            prev = jnp.where(start, 0.5, prev)
            return emit(agent, agent.encoder.state(ctx, prev), prev, row_offset)

        def scan(ctx, start, row_offset):
            return jax.lax.scan(row, jnp.asarray(0.5, jnp.float32), (ctx, start, row_offset))[1]

        if segments == 1:
            return scan(context, starts, offset)
        n = starts.shape[0]

        def sliced(x: jnp.ndarray) -> jnp.ndarray:
            return x.reshape((segments, n // segments) + x.shape[1:])

        out = jax.vmap(scan)(sliced(context), sliced(starts), sliced(offset))
        return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)

    def predict_block(self, inputs: TurnInputs, carry: EncoderCarry) -> tuple[AgentOutput, EncoderCarry]:
        """`predict` on one block of a larger flat batch whose first conversation may have begun in the
        previous block: ``carry`` holds the history pools after that block's last row (``init_carry()``
        for the first block); returns the outputs and the pools after this block's last row. Blocks
        in order give the one-pass result to float rounding (tested); `salesrl_jax.models.predict`
        runs large batches this way so that each block's working set stays in cache."""
        if self.config.feed_prediction:
            raise ValueError("model.feed_prediction is on: its predictions run as one scan over rows (predict)")
        context, carry = self.encoder.context_with_carry(inputs, carry)
        return self.heads(self.encoder.state(context)), carry

    def step(self, carry: EncoderCarry, embeddings: jnp.ndarray, features: jnp.ndarray,
             prev_prediction: jnp.ndarray | None = None) -> tuple[EncoderCarry, AgentOutput]:
        """Incremental form: one new turn per conversation (``embeddings [..., D]``, or `GramBags` ``[..., K]``)."""
        carry, context = self.encoder.step_context(carry, embeddings, features)
        return carry, self.heads(self.encoder.state(context, prev_prediction))


def previous_predictions(prediction: jnp.ndarray, starts: jnp.ndarray, prior: float = 0.5) -> jnp.ndarray:
    """Shift flat per-turn predictions down one row within each conversation (``prior`` at a start)."""
    shifted = jnp.concatenate([jnp.full((1,), prior, prediction.dtype), prediction[:-1]])
    return jnp.where(starts, prior, shifted)


def create_agent(config: ModelConfig, embed_dim: int, seed: int, sparse_text: bool = False, abstract: bool = False
                 ) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialise the agent and split it once into its static graph and its parameters (the functional form
    every jitted function takes: ``nnx.merge(graphdef, params)`` inside, never ``nnx.jit``). ``sparse_text``:
    the turns' text comes as n-gram bags (``embed_dim`` hash buckets), read by an embedding bag. ``abstract``:
    the parameters as shapes and dtypes only, the target to restore saved ones into (loading then skips running
    the initialisers, about 1.4 s)."""
    def make() -> SalesAgent:
        return SalesAgent(config, embed_dim, rngs=nnx.Rngs(seed), sparse_text=sparse_text)

    return nnx.split(nnx.eval_shape(make) if abstract else make())

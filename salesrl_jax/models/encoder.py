"""The state encoder: from turns 1..t to a state vector, in a batch form and an incremental form.

For turn ``n`` of a conversation with embedding ``e_n`` and features ``f_n``:

    u_n      = gelu(LayerNorm(W_p e_n))                                  projected turn, [H]
                                                                          (sparse n-gram text: u_n = the embedding
                                                                          bag, salesrl_jax.models.bag, linear)
    s_n      = c * tanh(w_s . [u_n, f_n])                                learned importance (|s_n| <= c)
    v_i      = [u_i, f_i]  (u_i alone without ``pool_features``)         what the pools average
    P_{k,g}  = sum_{i<=n} r_k^{n-i} exp(s_i) m_g(i) v_i                  history pools
    Z_{k,g}  = sum_{i<=n} r_k^{n-i} exp(s_i) m_g(i)
    h_{k,g}  = P_{k,g} / Z_{k,g}                                         recency x importance weighted mean
    state_n  = gelu(W_2 gelu(LayerNorm(W_1 [u_n, h_{.,.}, f_n (, a_{n-1})])))

with learned recency factors ``r_k = sigmoid(rho_k)`` (one per pool, initialised from half-lives),
speaker masks ``m_all = 1``, ``m_customer(i) = [turn i is the customer's]``, and, when
``feed_prediction`` is on, the previous turn's prediction ``a_{n-1}``. Every sum runs over
``i <= n``: the state at turn ``n`` reads turns 1..n only.

Why the pools carry the turn features too (``ModelConfig.pool_features``, every feature the config switches on):
without them the state after a rep's turn has lost the customer's last turn's features (sentiment, cues, questions,
length, response time), which only ``f_n`` held. On the 100k/20k simulator benchmark the n-gram model's AUC after the
rep's turns fell below its own prediction one turn earlier (turn 3: 0.600 against 0.662); a linear probe on the
context at turn 3 read 0.580, and 0.638 with the previous turn's features added. Pooling the turn-level group alone
(7 of the 15 features) left the hashed-embedding model where it was (docs/benchmarks.md, session 20).

With the wide term (`ModelConfig.wide_text`, sparse n-gram text only) the bag also gives each turn a scalar
``omega_n`` (`salesrl_jax.models.bag`), and the state gains one last column, the gained running mean

    wide_n   = max(alpha + beta log n, 0) ((1 / n) sum_{i<=n} omega_i + shift)

which the heads add to their logits (`SalesAgent.heads`): a whole-dialogue linear model on the turns' raw tf-idf
vectors beside the deep path (`GramBag.wide_logit`). Its carry is the running sum and count,
``(S, n)_n = (S, n)_{n-1} + (omega_n, 1)``.

The pools obey the linear recurrence ``(P, Z)_n = r (P, Z)_{n-1} + b_n`` (reset at a conversation
start), which gives both forms: the batch form evaluates it for a whole flat batch with
`jax.lax.associative_scan` (log-depth, no padding needed between conversations); the
incremental form applies it once per new turn to a carried ``EncoderCarry``. The two agree to
float rounding (tested).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from salesrl_jax.features.turn_features import FEATURE_GROUPS, FEATURE_NAMES
from salesrl_jax.models.bag import GramBag
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.models.inputs import GramBags, TurnInputs
from salesrl_jax.models.layers import Dense, Int8Spec
from salesrl_jax.models.scan import affine_scan, restarting_sums

IMPORTANCE_BOUND = 3.0  # c above: exp(s) stays within [e^-3, e^3], so no turn can swamp the pools
_CUSTOMER = FEATURE_NAMES.index("is_customer")


@struct.dataclass
class EncoderCarry:
    """What the incremental encoder carries between turns of one conversation (or a batch of them)."""

    pools: jnp.ndarray  # [..., K, G, V + 1]: numerators P (V = pool_width) and, in the last channel, denominators Z
    wide: jnp.ndarray | None = None  # [..., 2]: the wide term's running sum of omega and turn count (None: no wide)


def feature_selection(config: ModelConfig) -> np.ndarray:
    """Indices of the features the config switches on."""
    groups = [name for name, on in (("position", config.use_position), ("turn", config.use_features),
                                    ("engagement", config.use_engagement)) if on]
    chosen = {f for g in groups for f in FEATURE_GROUPS[g]}
    return np.array([i for i, name in enumerate(FEATURE_NAMES) if name in chosen], dtype=np.int32)


class StateEncoder(nnx.Module):
    """See the module docstring. ``embed_dim`` is the embedding size of the cached arrays; ``quantized``
    builds the int8 inference form of the wide layers (see `salesrl_jax.models.layers`)."""

    def __init__(self, config: ModelConfig, embed_dim: int, *, rngs: nnx.Rngs, quantized: Int8Spec | None = None,
                 sparse_text: bool = False):
        self.config = config
        self.embed_dim = embed_dim
        self.sparse_text = sparse_text
        self.feature_index = tuple(int(i) for i in feature_selection(config))  # static: part of the graph
        bag = sparse_text and config.use_text
        h = self.turn_width = config.bag_dim if bag else config.turn_dim
        self.wide = bag and config.wide_text
        if not config.use_text:  # features only: the turn vector is a projection of the turn's features
            self.project = Dense(len(FEATURE_NAMES), h, rngs=rngs,
                                 quantized=quantized and dataclasses.replace(quantized, calibrated=False))
        elif bag:  # embed_dim hash buckets of n-grams: an embedding bag over their tf-idf rows
            self.project = GramBag(embed_dim, h, rngs=rngs, quantized=quantized is not None, wide=self.wide,
                                   trainable=config.bag_trainable)
        else:
            # The projection reads raw embeddings (or int8 rows quantized upstream): per-row scales, never calibrated.
            project_spec = quantized and dataclasses.replace(quantized, calibrated=False)
            self.project = Dense(embed_dim, h, rngs=rngs, quantized=project_spec)
        if not bag:
            # Not for the bag: a LayerNorm would scale a turn of rare, barely trained grams up to full size, undoing
            # the shrinkage that weight decay gives a linear bag. (Measured once on PersuasionForGood at a 1e-3 step:
            # best inner-split log loss 0.693 with it, no better than the base rate, 0.676 without.)
            self.project_norm = nnx.LayerNorm(h, rngs=rngs)
        if config.history == "weighted":
            self.num_decays = len(config.decay_half_lives)
            # r = 0.5 ** (1 / half_life); store its logit so sigmoid keeps it in (0, 1) while learning.
            r = np.array([0.5 ** (1.0 / hl) for hl in config.decay_half_lives], dtype=np.float32)
            self.decay_logit = nnx.Param(jnp.asarray(np.log(r / (1.0 - r))))
        else:
            self.num_decays = 1 if config.history == "mean" else 0
        self.num_groups = 2 if config.speaker_pools else 1
        if config.history == "weighted" and config.learned_importance:
            self.importance = Dense(h + len(FEATURE_NAMES), 1, rngs=rngs, kernel_init=nnx.initializers.zeros_init())
        # What the pools average: the turn vector, and with pool_features the selected features after it.
        self.pooled_features = self.feature_index if config.pool_features else ()
        self.pool_width = h + len(self.pooled_features)
        context_dim = h + self.pool_width * self.num_decays * self.num_groups + len(self.feature_index)
        context_dim += int(config.feed_prediction)
        self.hidden = Dense(context_dim, config.hidden_dim, rngs=rngs, quantized=quantized)
        self.hidden_norm = nnx.LayerNorm(config.hidden_dim, rngs=rngs)
        self.out = Dense(config.hidden_dim, config.state_dim, rngs=rngs, quantized=quantized)

    # --- pieces shared by both forms -------------------------------------------------------

    def _turn_terms(self, embeddings: jnp.ndarray, features: jnp.ndarray, embedding_scale: jnp.ndarray | None = None):
        """Per-turn ``u`` [..., H] and pool increments ``b`` [..., K, G, H + 1]."""
        u = self.project_turn(embeddings, features, embedding_scale)
        return u, self.pool_increment(u, features)

    def project_turn(self, embeddings, features: jnp.ndarray, embedding_scale: jnp.ndarray | None = None
                     ) -> jnp.ndarray:
        """The projected turn ``u [..., H]`` (read from the text alone, or from the features of a features-only
        model); with the wide term ``[..., H + 1]``, the turn's ``omega`` last."""
        if self.config.use_text and isinstance(embeddings, GramBags) != self.sparse_text:
            raise ValueError("this model reads " + ("sparse n-gram bags" if self.sparse_text else "dense embeddings")
                             + f", got {type(embeddings).__name__}")
        if not self.config.use_text:  # features only: the text is never read
            u = jax.nn.gelu(self.project_norm(self.project(features)))
        elif self.sparse_text:
            u = self.project(embeddings)  # the bag is linear in the tf-idf row, as the linear baselines
            if self.wide:
                omega = self.project.wide_score(embeddings, features[..., _CUSTOMER])
                u = jnp.concatenate([u, omega[..., None]], axis=-1)
        else:
            if embeddings.dtype != jnp.int8:
                embeddings = embeddings.astype(jnp.float32)
            u = jax.nn.gelu(self.project_norm(self.project(embeddings, embedding_scale)))
        return u

    def pool_increment(self, u: jnp.ndarray, features: jnp.ndarray) -> jnp.ndarray | None:
        """The turn's increments ``b [..., K, G, V + 1]`` of the history pools (None without history): ``v = [u, f]``
        (``V = pool_width``) weighted, and the weight."""
        if self.num_decays == 0:
            return None
        u = u[..., :self.turn_width]  # without the wide term's omega
        weight = jnp.ones(u.shape[:-1], jnp.float32)
        if hasattr(self, "importance"):
            score = self.importance(jnp.concatenate([u, features], axis=-1))[..., 0]
            weight = jnp.exp(IMPORTANCE_BOUND * jnp.tanh(score))
        if self.pooled_features:
            u = jnp.concatenate([u, features[..., jnp.array(self.pooled_features, jnp.int32)]], axis=-1)
        groups = [jnp.ones_like(weight)]
        if self.num_groups == 2:
            groups.append(features[..., _CUSTOMER])
        mask = jnp.stack(groups, axis=-1) * weight[..., None]  # [..., G]
        increment = jnp.concatenate([u[..., None, :] * mask[..., None], mask[..., None]], axis=-1)  # [..., G, H+1]
        return jnp.broadcast_to(increment[..., None, :, :],
                                increment.shape[:-2] + (self.num_decays,) + increment.shape[-2:])

    def _decay(self) -> jnp.ndarray:
        """Recency factors ``r_k``, [K]."""
        if self.config.history == "weighted":
            return jax.nn.sigmoid(self.decay_logit[...])
        return jnp.ones((self.num_decays,), jnp.float32)

    def _context(self, u: jnp.ndarray, pools: jnp.ndarray | None, features: jnp.ndarray,
                 wide: jnp.ndarray | None = None) -> jnp.ndarray:
        """``[u, pooled history, features (, wide logit)]``; ``wide``: the `EncoderCarry.wide` sums at each row, read by
        `GramBag.wide_logit`."""
        parts = [u[..., :self.turn_width]]
        if pools is not None:
            numerator, denominator = pools[..., :-1], pools[..., -1:]
            # One reciprocal per pool, then a multiply per channel: a division per channel costs several
            # times more in this, the encoder's widest elementwise pass.
            inverse = jnp.where(denominator > 1e-12, 1.0 / jnp.maximum(denominator, 1e-12), 0.0)
            pooled = numerator * inverse
            parts.append(pooled.reshape(pooled.shape[:-3] + (-1,)))
        parts.append(features[..., jnp.array(self.feature_index, jnp.int32)])
        if self.wide:
            parts.append(self.project.wide_logit(wide))
        return jnp.concatenate(parts, axis=-1)

    def state_input(self, context: jnp.ndarray, prev_prediction: jnp.ndarray | None = None) -> jnp.ndarray:
        """What the state MLP reads: the context ``[..., C]`` (less the wide logit), plus the previous prediction
        ``[...]`` if fed."""
        if self.wide:
            context = context[..., :-1]
        if not self.config.feed_prediction:
            return context
        if prev_prediction is None:
            raise ValueError("model.feed_prediction is on: pass the previous turn's prediction")
        return jnp.concatenate([context, prev_prediction[..., None]], axis=-1)

    def hidden_activation(self, state_input: jnp.ndarray) -> jnp.ndarray:
        """The state MLP's hidden layer, ``[..., hidden_dim]``."""
        return jax.nn.gelu(self.hidden_norm(self.hidden(state_input)))

    def state_from_hidden(self, hidden: jnp.ndarray) -> jnp.ndarray:
        """The state MLP's output layer: the state ``[..., S]`` from `hidden_activation`."""
        return jax.nn.gelu(self.out(hidden))

    def state(self, context: jnp.ndarray, prev_prediction: jnp.ndarray | None = None) -> jnp.ndarray:
        """The state MLP on a context ``[..., C]`` (and the previous prediction ``[...]`` if fed); with the wide term
        the wide logit is passed on as the state's last column, ``[..., S + 1]`` (`SalesAgent.split_state`)."""
        state = self.deep_state(context, prev_prediction)
        return jnp.concatenate([state, context[..., -1:]], axis=-1) if self.wide else state

    def deep_state(self, context: jnp.ndarray, prev_prediction: jnp.ndarray | None = None) -> jnp.ndarray:
        """The state MLP's output ``[..., S]`` alone (`state` less a wide term's column)."""
        return self.state_from_hidden(self.hidden_activation(self.state_input(context, prev_prediction)))

    # --- batch form ----------------------------------------------------------------------------

    def context(self, inputs: TurnInputs) -> jnp.ndarray:
        """Everything the state reads except the previous prediction, for a flat batch: ``[N, C]``."""
        return self.context_with_carry(inputs)[0]

    def context_with_carry(self, inputs: TurnInputs, carry: EncoderCarry | None = None
                           ) -> tuple[jnp.ndarray, EncoderCarry | None]:
        """`context` of a block of rows whose first conversation may have begun in an earlier block:
        ``carry`` holds the pools after that block's last row; returns the pools after this block's.

        The associative scan gives, per row, the pools from this block alone and the product of the
        recency factors since the block started (0 once a conversation starts), so
        ``pools = block pools + product x carried pools``.
        """
        features = inputs.features.astype(jnp.float32)
        u, increment = self._turn_terms(inputs.embeddings, features, inputs.embedding_scale)
        if carry is not None and inputs.segments > 1:
            raise ValueError("a carried history continues one sequence of rows; these inputs are "
                             f"{inputs.segments} independent segments")
        wide = None
        if self.wide:  # running sum of omega and count: the pools' recurrence with a factor of 1
            valid = inputs.valid.astype(jnp.float32)
            gain, wide = restarting_sums(jnp.stack([u[:, -1] * valid, valid], axis=-1), inputs.starts,
                                         segments=inputs.segments)
            if carry is not None:
                wide = wide + gain * carry.wide[None]
        if increment is None:
            if carry is not None and wide is not None:
                carry = carry.replace(wide=wide[-1])
            return self._context(u, None, features, wide), carry
        increment = increment * inputs.valid[:, None, None, None]
        keep = jnp.where(inputs.starts, 0.0, 1.0)[:, None] * self._decay()[None, :]  # [N, K]
        gain, pools = affine_scan(keep[:, :, None, None], increment, segments=inputs.segments)
        if carry is not None:
            pools = pools + gain * carry.pools[None]
        return self._context(u, pools, features, wide), EncoderCarry(pools[-1], None if wide is None else wide[-1])

    def __call__(self, inputs: TurnInputs, prev_prediction: jnp.ndarray | None = None) -> jnp.ndarray:
        """States ``[N, S]`` of a flat batch."""
        return self.state(self.context(inputs), prev_prediction)

    # --- incremental form ----------------------------------------------------------------------

    def init_carry(self, batch_shape: tuple[int, ...] = ()) -> EncoderCarry:
        k = max(self.num_decays, 1)
        return EncoderCarry(jnp.zeros(batch_shape + (k, self.num_groups, self.pool_width + 1), jnp.float32),
                            jnp.zeros(batch_shape + (2,), jnp.float32) if self.wide else None)

    def step_context(self, carry: EncoderCarry, embeddings: jnp.ndarray, features: jnp.ndarray):
        """One new turn per conversation (``embeddings [..., D]`` or `GramBags` ``[..., K]``, ``features [..., F]``)
        -> ``(carry, context)``."""
        features = features.astype(jnp.float32)
        return self.step_projected(carry, self.project_turn(embeddings, features), features)

    def step_projected(self, carry: EncoderCarry, u: jnp.ndarray, features: jnp.ndarray):
        """`step_context` of a turn already projected (``u = project_turn(...)``: the guidance environment projects
        its bank of utterances once) -> ``(carry, context)``."""
        features = features.astype(jnp.float32)
        wide = None
        if self.wide:
            wide = carry.wide + jnp.stack([u[..., -1], jnp.ones_like(u[..., -1])], axis=-1)
        increment = self.pool_increment(u, features)
        if increment is None:
            return carry.replace(wide=wide), self._context(u, None, features, wide)
        pools = self._decay()[:, None, None] * carry.pools + increment
        return EncoderCarry(pools, wide), self._context(u, pools, features, wide)

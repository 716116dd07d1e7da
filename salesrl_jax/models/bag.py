"""The learned n-gram embedding bag: a turn's sparse gram counts -> a dense turn vector (fastText-style).

For a turn whose distinct grams ``j`` fall in buckets ``b_j`` with counts ``c_j``
(`salesrl_jax.embed.ngrams`):

    x_j = (1 + log c_j) idf[b_j]            sublinear tf times idf (0 for padding, c_j = 0)
    w_j = x_j / ||x||_2                     the row-normalised tf-idf weight
    v   = sum_j w_j E[b_j] + bias           the embedding bag, E: [buckets, H]

so ``v = E^T x_hat + bias`` is a dense layer applied to the L2-normalised tf-idf vector of the turn in
R^buckets (what the TF-IDF baselines read), computed from its nonzeros only and trained end to end
with the encoder. Its gradient touches only the rows of the grams in the batch.

``idf[b] = log((1 + n) / (1 + df_b)) + 1`` (scikit-learn's smooth idf) over the ``n`` training
conversations, and 0 where ``df_b < min_df``: a gram the training split does not show (often enough)
weighs nothing. Training computes it on the training split only
(`salesrl_jax.train.statistics.fit_statistics`); it is a `Statistic`, saved and loaded
with the parameters (so `score`, the `Scorer` and the int8 path weight exactly as training did) and
never moved by the optimizer (`salesrl_jax.train.state.freeze_statistics`).

``E`` starts as small random rows (`ModelConfig.bag_basis` random), or as the training split's LSA basis (lsa: the
top right singular vectors of its turns' ``x_hat`` rows, `salesrl_jax.train.bag_basis`); with
`ModelConfig.bag_trainable` off it stays there (``trainable=False``: no gradient reaches it, and the optimizer holds
no state for it): 3.3x faster to train, at a small cost on one of the two real development corpora
(docs/benchmarks.md, session 36), so an option, not the default.

The wide term (``wide=True``, `ModelConfig.wide_text`): a linear model on the same grams beside the deep model.
Two more weights per bucket (every turn's, and the customer's turns' own), read on the raw (not row-normalised)
tf-idf vector, and a gain that grows with the turns seen,

    omega_i = sum_j x_ij (w[b_j] + c_i u[b_j])             turn i's wide score (c_i = 1 if the customer speaks)
    m_t     = (1 / t) sum_{i<=t} omega_i                   its running mean (the encoder carries sum and count)
    wide_t  = max(alpha + beta log t, 0) (m_t + shift)     what the heads add to their logits

``(w, u)`` is a whole-dialogue logistic regression fitted on every labelled conversation, cross-fitted so that no
validation turn is read in-sample (`salesrl_jax.train.wide_fit`), and
``(alpha, beta, shift)`` (``wide_map``) how much its running mean is worth at turn ``t``, fitted on its out-of-fold
logits at every training turn: a mean over few turns is noisier than the whole dialogue it was fitted on. All are
`Statistic` s, fitted before training and never moved by it. The deep model trains with the term off
(`without_wide_term`), because on its own training turns ``(w, u)`` is more confident than anywhere else; in its place
the supervised loss adds each training turn's out-of-fold wide logit (`salesrl_jax.train.wide_fit`,
``WideFit.offsets``), so the deep heads learn what the linear model misses on conversations it did not fit. The sum
is what validation (its conversations read with the weights of the fold that held them out,
`salesrl_jax.models.predict.cross_fitted`), early stopping and every inference path read. Why raw: a linear probe on the library's own grams
(PersuasionForGood, last turn) reads AUC 0.698 on the mean of raw turn vectors and 0.551 on the mean of
row-normalised ones, which is what the deep path's pools average (docs/benchmarks.md, sessions 16-18).

Int8 (``quantized=True``): ``E`` is held as int8 with one scale per bucket row, ``E[b] ~ s_b E_q[b]``;
per-row scales keep the precision of rare grams' small rows, which one scale per column would not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.models.inputs import GramBags

MIN_DF = 2  # as the TF-IDF baselines: a gram in one training conversation only is noise, not signal


class Statistic(nnx.Variable):
    """A value fitted from data before training (not by gradients): saved with the parameters, frozen in training."""


def document_frequency(gram_ids: np.ndarray, conversation: np.ndarray, buckets: int) -> np.ndarray:
    """``df [buckets]``: in how many of the conversations each bucket occurs, from the ``[turns, K]`` bucket ids of
    their turns and the ``[turns]`` conversation each turn belongs to."""
    ids = np.asarray(gram_ids, np.int64)
    keys = np.repeat(np.asarray(conversation, np.int64), ids.shape[1]) * buckets + ids.reshape(-1)
    keys = np.unique(keys[ids.reshape(-1) > 0])  # one count per (conversation, bucket)
    return np.bincount(keys % buckets, minlength=buckets)


def smooth_idf(df: np.ndarray, conversations: int, min_df: int = MIN_DF) -> np.ndarray:
    """``idf[b] = log((1 + n) / (1 + df_b)) + 1`` over ``n = conversations``; 0 where ``df_b < min_df`` and for the
    padding bucket 0."""
    idf = np.log((1.0 + conversations) / (1.0 + np.asarray(df, np.float64))) + 1.0
    idf[np.asarray(df) < min_df] = 0.0
    idf[0] = 0.0
    return idf.astype(np.float32)


def sublinear_tfidf(bags: GramBags, idf: jnp.ndarray) -> jnp.ndarray:
    """``x [..., K]``: the sublinear tf-idf weight ``(1 + log c) idf[b]`` of each gram slot (0 for padding)."""
    counts = bags.counts.astype(jnp.float32)
    return jnp.where(counts > 0, (1.0 + jnp.log(jnp.maximum(counts, 1.0))) * idf[bags.ids], 0.0)


def tfidf_weights(bags: GramBags, idf: jnp.ndarray) -> jnp.ndarray:
    """``w [..., K]``: the row-normalised sublinear tf-idf weight of each gram slot (0 for padding)."""
    x = sublinear_tfidf(bags, idf)
    squared = jnp.sum(x * x, axis=-1, keepdims=True)
    # The double where keeps the gradient finite for a turn with no weighted gram (padding, or only unseen grams).
    return x * jnp.where(squared > 0, jax.lax.rsqrt(jnp.where(squared > 0, squared, 1.0)), 0.0)


class GramBag(nnx.Module):
    """See the module docstring: ``GramBags [..., K] -> [..., out_features]``."""

    def __init__(self, buckets: int, out_features: int, *, rngs: nnx.Rngs, quantized: bool = False,
                 wide: bool = False, trainable: bool = True):
        self.quantized = quantized
        self.trainable = trainable  # False: the kernel stays at its starting basis (no gradient reaches it)
        if wide:  # fitted before training (salesrl_jax.train.wide_fit), then frozen; float in the int8 form too
            self.wide = Statistic(jnp.zeros((buckets,), jnp.float32))
            self.wide_customer = Statistic(jnp.zeros((buckets,), jnp.float32))  # u: the customer's turns' own weights
            self.wide_map = Statistic(jnp.asarray(IDENTITY_WIDE_MAP, jnp.float32))
        # Until training fits it (salesrl_jax.train.statistics): plain sublinear tf (idf 1), the padding bucket 0.
        self.idf = Statistic(jnp.ones((buckets,), jnp.float32).at[0].set(0.0))
        if quantized:  # filled in by salesrl_jax.infer.quantize
            self.kernel = nnx.Param(jnp.zeros((buckets, out_features), jnp.int8))
            self.scale = nnx.Param(jnp.ones((buckets,), jnp.float32))
        else:
            # Small rows: a row-normalised bag of ~20 grams then has a norm near 0.01 x sqrt(H) at the start.
            self.kernel = nnx.Param(nnx.initializers.normal(0.01)(rngs.params(), (buckets, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, bags: GramBags) -> jnp.ndarray:
        weight = tfidf_weights(bags, jax.lax.stop_gradient(self.idf[...]))
        kernel = self.kernel[...] if self.trainable else jax.lax.stop_gradient(self.kernel[...])
        rows = kernel[bags.ids].astype(jnp.float32)  # [..., K, H]
        if self.quantized:
            weight = weight * self.scale[...][bags.ids]
        return jnp.einsum("...k,...kh->...h", weight, rows) + self.bias[...]

    def wide_score(self, bags: GramBags, customer: jnp.ndarray) -> jnp.ndarray:
        """The wide term's ``omega [...]`` of each turn (see the module docstring); ``customer [...]``: ``c_i``."""
        x = sublinear_tfidf(bags, jax.lax.stop_gradient(self.idf[...]))
        w = jax.lax.stop_gradient(self.wide[...])[bags.ids] + customer[..., None] * jax.lax.stop_gradient(
            self.wide_customer[...])[bags.ids]
        return jnp.sum(x * w, axis=-1)

    def wide_logit(self, sums: jnp.ndarray) -> jnp.ndarray:
        """``wide_t [..., 1]`` of the module docstring from the running ``(sum of omega, turn count)`` ``[..., 2]``
        (0 where the count is 0)."""
        alpha, beta, shift = jax.lax.stop_gradient(self.wide_map[...])
        count = sums[..., 1:]
        mean = sums[..., :1] / jnp.maximum(count, 1.0)
        gain = jnp.maximum(alpha + beta * jnp.log(jnp.maximum(count, 1.0)), 0.0)
        return jnp.where(count > 0, gain * (mean + shift), 0.0)


WIDE_STATISTICS = ("wide", "wide_customer", "wide_map")  # the wide term's statistics (the int8 form keeps them float)

IDENTITY_WIDE_MAP = (1.0, 0.0, 0.0)
"""``(alpha, beta, shift)`` that add the running mean itself: what runs saved before the map existed meant."""


def without_wide_term(agent: nnx.Module) -> nnx.Module:
    """``agent`` (a merged copy, inside a training loss) with its wide term off: the gain set to 0, so the heads add
    nothing; the losses add the out-of-fold offsets in its place (see the module docstring). Unchanged without a wide
    term. A new variable, not a new value: a merged module may share its variables with the state it was merged
    from."""
    bag = getattr(agent.encoder, "project", None)
    if getattr(bag, "wide_map", None) is not None:
        bag.wide_map = Statistic(jnp.zeros_like(bag.wide_map[...]))
    return agent

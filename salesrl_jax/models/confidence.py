"""The confidence module: how far each turn's prediction can be trusted, from signals that read turns 1..t only.

Per turn ``t`` of a conversation, with the model's prediction ``p_t`` and encoder state ``s_t``:

    u_t  = std_k sigmoid(z_k)                                 ensemble disagreement (the K heads)
    d_t  = min_j ||s_t - b_j||_2                              distance to the nearest training state, b in the bank
    n_i  = unseen n-gram mass of turn i                       sparse text: sum_j c_j [gram j unseen] / sum_j c_j
           (or) 1 - max_j cos(R x_i, c_j)                     dense text: cosine distance of the turn embedding to
                                                              the nearest training turn c (a text bank), in a
                                                              seeded random projection R (64 dimensions)
    m_t  = max_{i<=t} n_i                                     text novelty so far: the most novel turn yet

Turn buckets are runs of consecutive turn indices, each holding enough calibration turns (one index per bucket
early on, where most conversations still run; pooled later). Each of ``d_t`` and ``m_t`` is standardised with
its mean and standard deviation on the calibration split at the same turn bucket, giving ``z_d`` and ``z_m``;
their maximum ``z_t`` is the state's novelty, and

    pi_t = (1 + #{calibration turns of the bucket with z >= z_t}) / (1 + #calibration turns of the bucket)

its conformal p-value (the share of calibration turns at least as novel): the **familiarity**, uniform on [0, 1]
for conversations like the calibration split's and near 0 for states unlike any it showed. It gates the error
estimate through ``g_t = min(1, pi_t / alpha)``: 1 for all but the most novel ``alpha`` of in-distribution turns.

The expected squared error of the prediction mixes an in-distribution estimate with an uninformed one:

    e_in  = p(1-p) + max(0, w . phi_t),  phi_t = [1, p(1-p), u_t, z_d, z_m, 1/t]    (what a calibrated model
                                                                                     expects, plus the excess the
                                                                                     signals predict: least squares
                                                                                     of (y - p)^2 - p(1-p), or with
                                                                                     a known true probability q of
                                                                                     its mean given q, (q-p)(1-2p))
    e_out = E_{pi ~ U(0,1)} E[(y - p)^2] = 1/2 - p + p^2                            (nothing known of the truth)
    e_t   = g_t e_in + (1 - g_t) e_out                                              (expected_error)
    confidence_t = g_t (1 - sqrt(e_in))

The excess target follows from ``E[(y - p)^2 | q] = q(1-q) + (q-p)^2 = p(1-p) + (q-p)(1-2p)``: given the truth, the
outcome-based target's expectation, so both fits estimate the same thing, and it averages 0 for a model calibrated
given its signals (then e_in = p(1-p)). Fitting ``(q-p)^2`` instead would add the model's estimation error on top of
p(1-p), which already contains it on average (``E[q(1-q) | p] = p(1-p) - E[(q-p)^2 | p]`` when calibrated), and
rank turns by how far the model is from the truth rather than by their expected error.

The confidence is one minus the estimated root-mean-square error of a familiar state's prediction (0.5 at a coin
flip's, 1 for a certain and right one), and falls to 0 as the state leaves what the calibration split showed. Both
factors are needed: for a calibrated model ``p(1-p)`` is most of the in-distribution error, so among familiar turns
the confidence ranks like the baseline ``|p - 0.5|`` plus what the signals add; but an unfamiliar turn's expected
error ``e_out`` is no larger than a familiar coin flip's, so an error estimate alone cannot say "unlike the training
data". Measured on held-out industries and on real dialogues after synthetic training in docs/benchmarks.md.

Intervals ``[p_low, p_high]`` at a nominal level ``1 - a`` (Mondrian by turn bucket):

- **conformal** (calibration data with a known true probability ``q``, the simulator's oracle): split-conformal on
  the normalised residual ``|q - p| / sigma(phi)`` (sigma: least squares of ``|q - p|`` on ``phi``), so that
  ``P(q_t in [p - c sigma, p + c sigma]) >= 1 - a`` for exchangeable conversations (Lei et al., 2018);
- **Venn-Abers** (labels only): the inductive Venn-Abers pair ``[p0, p1]`` of the model's logit (Vovk & Petej,
  2014): isotonic regression of the calibration outcomes plus the test point labelled 0, and labelled 1; one of
  the two is calibrated. Its width shrinks with the calibration data near that score.

Either interval then widens toward ``[0, 1]`` as the gate falls: ``[g p_low, g p_high + 1 - g]``.

Every quantity of turn ``t`` is a function of turns 1..t: the state, the prediction and ``n_1..n_t``. The batch form
(`running_text_novelty` over flat conversations, then `combine`, jitted) and the streaming form (`StreamingNovelty`
carried by a session, the signals through the same functions on numpy arrays, and `combine` of one turn in scalar
Python, `salesrl_jax.infer.streaming_confidence`) compute the same numbers to float rounding (tested)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from salesrl_jax.models.inputs import GramBags

KEY_SPAN = 128.0  # bucket b's keys are b * KEY_SPAN + clip(value, +-KEY_SPAN / 2): one sorted array serves all
# Keys within KEY_TIE of each other count as tied: the host (numpy) and JAX may round a key one float32 step apart,
# and a turn whose key ties a calibration turn's (identical text novelty, say) must rank alike in both. 2e-3 is
# 8 steps of float32 at key 4,000 (30 buckets), and 0.002 standard deviations of a novelty score.
KEY_TIE = 2e-3
ERROR_FEATURES = ("bias", "p(1-p)", "ensemble_std", "z_distance", "z_text", "1/t")


def _clip(xp, x, low, high):
    """``clip`` as ``minimum(maximum(.))``: the same in JAX, and numpy's ``clip`` costs microseconds per scalar."""
    return xp.minimum(xp.maximum(x, low), high)


def _searchsorted(sorted_keys: jnp.ndarray, keys: jnp.ndarray, side: str, xp=jnp) -> jnp.ndarray:
    """``searchsorted``: numpy's, or JAX's by comparing with every key for a handful of queries (one vectorised pass
    beats a loop of dependent steps on CPU) and by binary search for a batch."""
    if xp is np:
        return np.searchsorted(sorted_keys, keys, side=side)
    method = "compare_all" if jnp.size(keys) <= 16 else "scan"
    return jnp.searchsorted(sorted_keys, keys, side=side, method=method)


def turn_bucket(bucket_starts, turn_index, xp=jnp) -> jnp.ndarray:
    """Bucket of 0-based turn indices, given the (1-based) turn numbers starting each bucket (the first is 1, the
    last bucket is open-ended): starts (1, 2, 4) put turns 1 | 2-3 | 4+ in buckets 0 | 1 | 2."""
    return _searchsorted(xp.asarray(bucket_starts), xp.asarray(turn_index) + 1, side="right", xp=xp) - 1


def bucket_keys(bucket, value, xp=jnp) -> jnp.ndarray:
    """Sort keys that order by bucket first, then by value within it (values clipped to +-KEY_SPAN / 2), in
    float32 as the stored keys are, so that ties with calibration turns break alike on the host and in JAX."""
    return xp.asarray(bucket * KEY_SPAN + _clip(xp, value, -KEY_SPAN / 2 + 1, KEY_SPAN / 2 - 1), xp.float32)


@struct.dataclass
class ConfidenceParams:
    """What the module was fitted to (`salesrl_jax.eval.confidence_fit`); saved beside the model with orbax."""

    bucket_starts: jnp.ndarray  # [T] int32: turn numbers (1-based) starting each turn bucket (the fit chooses them)
    bank: jnp.ndarray  # [B, S] encoder states of training turns
    bank_norms: jnp.ndarray  # [B] their squared norms ||b||^2
    gram_seen: jnp.ndarray  # [V] 1.0 where the training split shows the n-gram bucket (sparse text; else [1])
    text_projection: jnp.ndarray  # [D, P] random projection of turn embeddings (dense text; else [1, 1])
    text_bank: jnp.ndarray  # [Bt, P] unit-normalised projected embeddings of training turns (dense text; else [1, 1])
    novelty_loc: jnp.ndarray  # [T, 2] calibration mean of (distance, text novelty so far) per turn bucket
    novelty_scale: jnp.ndarray  # [T, 2] and their standard deviations
    novelty_keys: jnp.ndarray  # [R] sorted bucket_keys(bucket, z) of the calibration turns
    novelty_end: jnp.ndarray  # [T] int32: end (exclusive) of each bucket's keys
    novelty_count: jnp.ndarray  # [T] int32: calibration turns per bucket
    error_weights: jnp.ndarray  # [6] w above (the estimation error beyond p(1-p)), over ERROR_FEATURES
    familiarity_level: jnp.ndarray  # [] alpha above
    low_threshold: jnp.ndarray  # [] confidence below this is flagged low
    interval_level: jnp.ndarray  # [] nominal coverage 1 - a of the intervals
    interval_scale_weights: jnp.ndarray  # [6] conformal sigma's weights (zeros for Venn-Abers)
    interval_quantile: jnp.ndarray  # [T] conformal quantile c per bucket (1e6: too few calibration turns, [0, 1])
    venn_keys: jnp.ndarray  # [G] sorted bucket_keys(bucket, calibration logit) (Venn-Abers; else [1])
    venn_low: jnp.ndarray  # [G + T] p0 in each gap between consecutive keys of a bucket (T buckets: G + T gaps)
    venn_high: jnp.ndarray  # [G + T] p1
    text: str = struct.field(pytree_node=False, default="none")  # "sparse" | "dense" | "none"
    interval: str = struct.field(pytree_node=False, default="conformal")  # "conformal" | "venn-abers"

    @property
    def static(self) -> dict:
        return {"text": self.text, "interval": self.interval}


@struct.dataclass
class TurnSignals:
    """The per-turn raw signals the model pass computes (``[N]`` each)."""

    distance: jnp.ndarray  # d_t
    text_novelty: jnp.ndarray  # n_t (this turn alone)


VALUE_FIELDS = ("confidence", "expected_error", "familiarity", "p_low", "p_high")  # ConfidenceOutput's numbers


@struct.dataclass
class ConfidenceOutput:
    """Per-turn confidence outputs, ``[N]`` each."""

    confidence: jnp.ndarray  # in [0, 1]: g (1 - sqrt(e_in))
    expected_error: jnp.ndarray  # e_t, an estimate of (y - p)^2
    familiarity: jnp.ndarray  # pi_t: the conformal p-value of the state's novelty
    p_low: jnp.ndarray
    p_high: jnp.ndarray
    low_confidence: jnp.ndarray  # bool: confidence < low_threshold


def state_distance(bank: jnp.ndarray, bank_norms: jnp.ndarray, states: jnp.ndarray, xp=jnp) -> jnp.ndarray:
    """``[N]``: Euclidean distance from each state ``[N, S]`` to its nearest bank row ``[B, S]`` (squared norms
    ``bank_norms [B]``).

    Brute force: the nearest row is found with ``||s||^2 - 2 s.b + ||b||^2`` (one matmul), and its distance
    recomputed as ``||s - b||`` from the difference, which the expanded form loses to cancellation for a near
    neighbour (so a batch and a single turn agree to float rounding)."""
    chex.assert_rank([bank, states], 2)
    squared = bank_norms - 2.0 * (states @ bank.T)  # ||s||^2 does not change the ranking
    difference = states - bank[xp.argmin(squared, -1)]
    return xp.sqrt(xp.sum(difference * difference, -1))


def sparse_text_novelty(gram_seen: jnp.ndarray, bags: GramBags, xp=jnp) -> jnp.ndarray:
    """``[N]``: the share of a turn's n-gram occurrences whose bucket the training split never showed (0 for a turn
    with no grams)."""
    counts = xp.where(bags.ids > 0, bags.counts.astype(xp.float32), 0.0)
    unseen = counts * (1.0 - gram_seen[bags.ids])
    return xp.sum(unseen, -1) / xp.maximum(xp.sum(counts, -1), 1.0)


def dense_text_novelty(projection: jnp.ndarray, bank: jnp.ndarray, embeddings: jnp.ndarray,
                       scale: jnp.ndarray | None = None, xp=jnp) -> jnp.ndarray:
    """``[N]``: one minus the cosine similarity of each projected turn embedding ``R x`` (int8 rows times their
    ``scale`` first) to the most similar row of the unit-normalised training-turn ``bank``: 0 for a turn the training
    data showed verbatim, larger for unseen content. A random projection to ``P`` dimensions keeps cosines to within
    a few hundredths (Johnson-Lindenstrauss) at a fraction of the cost; the nearest turn, not the mean of several,
    and a large bank separate unseen vocabulary best (docs/benchmarks.md)."""
    x = embeddings.astype(xp.float32)
    if scale is not None:
        x = x * scale[:, None]
    y = x @ projection
    y = y / xp.sqrt(xp.maximum(xp.sum(y * y, -1, keepdims=True), 1e-12))
    return _clip(xp, 1.0 - xp.max(y @ bank.T, -1), 0.0, 2.0)


def turn_signals(params: ConfidenceParams, states: jnp.ndarray, text, scale: jnp.ndarray | None = None,
                 xp=jnp) -> TurnSignals:
    """The raw signals of a flat batch: ``states [N, S]``, ``text`` the turns' `GramBags` or embeddings ``[N, D]``.
    ``xp``: `jax.numpy` (traced, batches) or `numpy`. The streaming `Scorer` computes the distance inside its jitted
    step and a dense turn's text signal with `salesrl_jax.infer.streaming_confidence.DenseTextNovelty` (tested equal)."""
    distance = state_distance(params.bank, params.bank_norms, states, xp=xp)
    return TurnSignals(distance, text_novelty(params, text, scale, rows=states.shape[0], xp=xp))


def text_novelty(params: ConfidenceParams, text, scale: jnp.ndarray | None = None, rows: int | None = None,
                 xp=jnp) -> jnp.ndarray:
    """``[N]``: the text signal alone (it reads the turn, not the encoder state, so a streaming turn computes it
    while the model's step runs); zeros of length ``rows`` for a fit without one."""
    if params.text == "sparse":
        return sparse_text_novelty(params.gram_seen, text, xp=xp)
    if params.text == "dense":
        return dense_text_novelty(params.text_projection, params.text_bank, text, scale, xp=xp)
    return xp.zeros(rows, xp.float32)


def running_text_novelty(novelty: np.ndarray, turn_index: np.ndarray) -> np.ndarray:
    """``m_t``: the maximum of ``n_1..n_t`` over flat turns in conversation order (a conversation starts where
    ``turn_index`` is 0). Batch form of `StreamingNovelty`."""
    novelty = np.asarray(novelty, np.float64)
    conversation = np.cumsum(np.asarray(turn_index) == 0)
    # Offsetting each conversation above the last (novelty lies in [0, 2]) lets one running maximum restart at
    # every conversation start.
    return (np.maximum.accumulate(novelty + 4.0 * conversation) - 4.0 * conversation).astype(np.float32)


@struct.dataclass
class StreamingNovelty:
    """The most novel turn so far of one live conversation (-inf before its first turn)."""

    peak: float = float("-inf")

    def add(self, novelty) -> tuple["StreamingNovelty", float]:
        """Add this turn's novelty; returns the new carry and ``m_t``."""
        peak = max(self.peak, float(novelty))
        return StreamingNovelty(peak), peak


def error_features(prediction, uncertainty, z_distance, z_text, turn_index, xp=jnp) -> jnp.ndarray:
    """``phi [N, 6]`` over ERROR_FEATURES."""
    p = prediction
    return xp.stack([xp.ones_like(p), p * (1.0 - p), uncertainty, z_distance, z_text,
                      1.0 / (turn_index + 1.0)], axis=-1)


def standardised_novelty(params: ConfidenceParams, distance, text_so_far, turn_index, xp=jnp
                         ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(z_d, z_m)``: the two novelty signals standardised at their turn bucket, clipped to +-50."""
    b = turn_bucket(params.bucket_starts, turn_index, xp=xp)
    z = (xp.stack([distance, text_so_far], -1) - params.novelty_loc[b]) / params.novelty_scale[b]
    z = _clip(xp, z, -50.0, 50.0)
    return z[..., 0], z[..., 1]


def familiarity(params: ConfidenceParams, novelty, turn_index, xp=jnp) -> jnp.ndarray:
    """``pi_t``: the conformal p-value of ``novelty`` among the calibration turns of its turn bucket."""
    b = turn_bucket(params.bucket_starts, turn_index, xp=xp)
    position = _searchsorted(params.novelty_keys, bucket_keys(b, novelty, xp=xp) - KEY_TIE, side="left", xp=xp)
    at_least = params.novelty_end[b] - position  # calibration turns of the bucket at least as novel
    return (1.0 + at_least) / (1.0 + params.novelty_count[b])


def combine(params: ConfidenceParams, prediction, uncertainty, distance, text_so_far, turn_index, xp=jnp
            ) -> ConfidenceOutput:
    """The confidence outputs (module docstring) from a turn's prediction, ensemble disagreement, state distance,
    text novelty so far and 0-based turn index, each ``[N]`` (or scalars); ``xp`` as in `turn_signals`."""
    p = xp.asarray(prediction, xp.float32)
    t = xp.asarray(turn_index, xp.int32)
    z_d, z_m = standardised_novelty(params, xp.asarray(distance, xp.float32), xp.asarray(text_so_far, xp.float32),
                                    t, xp=xp)
    pi = familiarity(params, xp.maximum(z_d, z_m), t, xp=xp)
    f = _clip(xp, pi / params.familiarity_level, 0.0, 1.0)
    phi = error_features(p, xp.asarray(uncertainty, xp.float32), z_d, z_m, t.astype(xp.float32), xp=xp)
    e_in = _clip(xp, p * (1.0 - p) + xp.maximum(phi @ params.error_weights, 0.0), 1e-4, 1.0)
    e_out = 0.5 - p + p * p
    error = f * e_in + (1.0 - f) * e_out
    confidence = f * _clip(xp, 1.0 - xp.sqrt(e_in), 0.0, 1.0)
    b = turn_bucket(params.bucket_starts, t, xp=xp)
    if params.interval == "conformal":
        sigma = _clip(xp, phi @ params.interval_scale_weights, 5e-3, 1.0)
        half = params.interval_quantile[b] * sigma
        low, high = _clip(xp, p - half, 0.0, 1.0), _clip(xp, p + half, 0.0, 1.0)
    else:
        logit = xp.log(_clip(xp, p, 1e-7, 1 - 1e-7)) - xp.log1p(-_clip(xp, p, 1e-7, 1 - 1e-7))
        slot = _searchsorted(params.venn_keys, bucket_keys(b, logit, xp=xp) + KEY_TIE, side="right", xp=xp) + b
        low, high = params.venn_low[slot], params.venn_high[slot]
    low, high = f * low, f * high + (1.0 - f)  # f: the gate g above
    return ConfidenceOutput(confidence, error, pi, low, high, confidence < params.low_threshold)


def signals_of(out, inputs, params: ConfidenceParams) -> TurnSignals:
    """`turn_signals` as an extra output of `salesrl_jax.models.predict.make_predict` (``out``: the `AgentOutput`)."""
    return turn_signals(params, out.state, inputs.embeddings, inputs.embedding_scale)


_combine = jax.jit(combine)


def confidence_outputs(params: ConfidenceParams, prediction: np.ndarray, uncertainty: np.ndarray,
                       signals: TurnSignals, turn_index: np.ndarray) -> ConfidenceOutput:
    """The batch form over flat turns in conversation order: numpy ``[turns]`` arrays in, numpy out."""
    n = len(prediction)
    # Padded to a power of two: archive chunks of every length then share a few compiled programs.
    size = 1 << max(int(n - 1).bit_length(), 4)

    def padded(x, dtype):
        return np.pad(np.asarray(x, dtype), (0, size - n))

    running = running_text_novelty(signals.text_novelty, turn_index)
    out = _combine(params, padded(prediction, np.float32), padded(uncertainty, np.float32),
                   padded(signals.distance, np.float32), padded(running, np.float32), padded(turn_index, np.int32))
    return jax.tree.map(lambda x: np.asarray(x)[:n], out)

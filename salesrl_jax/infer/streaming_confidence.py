"""The confidence module's combination for one streaming turn, in scalar Python.

`salesrl_jax.models.confidence.combine` is the specification and the batch form (jitted over a whole archive chunk).
A live turn has one prediction, and through numpy each of combine's forty-odd operations on a scalar costs a
microsecond or two of dispatch (70 us a turn, a third of the turn's budget); on Python floats, with the fitted
tables turned into lists once, the same formulas take about a tenth of that. Equal to `combine` to float rounding,
ties with calibration turns included (tested on random turns, both interval kinds).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math

import numpy as np
from threadpoolctl import ThreadpoolController

from salesrl_jax.models.confidence import KEY_SPAN, KEY_TIE, ConfidenceOutput, ConfidenceParams

_KEY_LIMIT = KEY_SPAN / 2 - 1  # bucket_keys' clip


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def _key(bucket: int, value: float, tie: float) -> float:
    """`bucket_keys` in float32 (as the stored keys are), moved by ``tie`` in float32, as numpy computes it."""
    return float(np.float32(np.float32(bucket * KEY_SPAN + _clip(value, -_KEY_LIMIT, _KEY_LIMIT)) + np.float32(tie)))


@functools.cache
def _blas_libraries() -> tuple:
    """The loaded BLAS libraries' threadpoolctl controllers, found once (milliseconds)."""
    return tuple(c for c in ThreadpoolController().lib_controllers if c.user_api == "blas")


@contextlib.contextmanager
def blas_one_thread():
    """A context manager: numpy's BLAS on one thread inside its block. A streaming turn's products are small, and
    OpenBLAS's second thread spins on after them, on the core that XLA's step needs.

    Each library's thread count is set and restored directly (about 4 us in all): threadpoolctl's ``limit`` walks its
    controllers in Python and took 35-50 us a turn (measured in session 21 on the streaming path, where it sat on the
    critical path). The setting is process-wide: sessions scored from several threads at once stay correct, only the
    thread count they see may be another thread's."""
    libraries = _blas_libraries()
    before = [lib.num_threads for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libraries, before):
            lib.set_num_threads(n)


class DenseTextNovelty:
    """`salesrl_jax.models.confidence.dense_text_novelty` of one streaming turn's embedding ``[D]``, as a float.

    The same cosine distance to the nearest bank row, ``1 - max_j b_j . y / ||y||`` with ``y = R x``, written for one
    vector: two matrix-vector products on contiguous float32 arrays and the norm as a Python float, dividing the
    maximum instead of the vector (the same maximum: the scale is positive). Through the batch function a turn took
    about 45 us more (its 2-D products, the bank transposed, the elementwise passes; session 21). Equal to the batch
    form to float rounding (tested)."""

    def __init__(self, params: ConfidenceParams):
        self.projection = np.ascontiguousarray(np.asarray(params.text_projection, np.float32))
        self.bank = np.ascontiguousarray(np.asarray(params.text_bank, np.float32))

    def __call__(self, embedding: np.ndarray) -> float:
        y = np.asarray(embedding, np.float32) @ self.projection
        norm = math.sqrt(max(float(y @ y), 1e-12))
        return _clip(1.0 - float((self.bank @ y).max()) / norm, 0.0, 2.0)


class TurnConfidence:
    """A fitted `ConfidenceParams` as Python lists, and `combine` for one turn."""

    def __init__(self, params: ConfidenceParams):
        def floats(x) -> list:
            return np.asarray(x, np.float64).tolist()

        self.interval = params.interval
        self.bucket_starts = np.asarray(params.bucket_starts).tolist()
        self.loc, self.scale = floats(params.novelty_loc), floats(params.novelty_scale)
        self.novelty_keys = floats(params.novelty_keys)
        self.novelty_end = np.asarray(params.novelty_end).tolist()
        self.novelty_count = np.asarray(params.novelty_count).tolist()
        self.error_weights = floats(params.error_weights)
        self.interval_scale_weights = floats(params.interval_scale_weights)
        self.interval_quantile = floats(params.interval_quantile)
        self.venn_keys = floats(params.venn_keys)
        self.venn_low, self.venn_high = floats(params.venn_low), floats(params.venn_high)
        self.familiarity_level = float(params.familiarity_level)
        self.low_threshold = float(np.float32(params.low_threshold))

    def combine(self, prediction: float, uncertainty: float, distance: float, text_so_far: float,
                turn_index: int) -> ConfidenceOutput:
        """`salesrl_jax.models.confidence.combine` of one turn (its docstring and the module's give the maths)."""
        p, t = float(np.float32(prediction)), int(turn_index)
        b = bisect.bisect_right(self.bucket_starts, t + 1) - 1
        (loc_d, loc_m), (scale_d, scale_m) = self.loc[b], self.scale[b]
        z_d = _clip((float(np.float32(distance)) - loc_d) / scale_d, -50.0, 50.0)
        z_m = _clip((float(np.float32(text_so_far)) - loc_m) / scale_m, -50.0, 50.0)
        # familiarity: calibration turns of the bucket at least as novel, ties within KEY_TIE included
        position = bisect.bisect_left(self.novelty_keys, _key(b, max(z_d, z_m), -KEY_TIE))
        familiarity = (1.0 + self.novelty_end[b] - position) / (1.0 + self.novelty_count[b])
        gate = _clip(familiarity / self.familiarity_level, 0.0, 1.0)
        variance = p * (1.0 - p)
        phi = (1.0, variance, float(np.float32(uncertainty)), z_d, z_m, 1.0 / (t + 1.0))
        excess = sum(a * w for a, w in zip(phi, self.error_weights))
        e_in = _clip(variance + max(excess, 0.0), 1e-4, 1.0)
        error = gate * e_in + (1.0 - gate) * (0.5 - p + p * p)
        confidence = gate * _clip(1.0 - math.sqrt(e_in), 0.0, 1.0)
        if self.interval == "conformal":
            sigma = _clip(sum(a * w for a, w in zip(phi, self.interval_scale_weights)), 5e-3, 1.0)
            half = self.interval_quantile[b] * sigma
            low, high = _clip(p - half, 0.0, 1.0), _clip(p + half, 0.0, 1.0)
        else:
            q = _clip(p, 1e-7, 1 - 1e-7)
            slot = bisect.bisect_right(self.venn_keys, _key(b, math.log(q) - math.log1p(-q), KEY_TIE)) + b
            low, high = self.venn_low[slot], self.venn_high[slot]
        return ConfidenceOutput(confidence, error, familiarity, gate * low, gate * high + (1.0 - gate),
                                confidence < self.low_threshold)

"""A dense layer with a float form (training) and an int8 form (quantized inference).

Float: ``y = x W + b``. Int8 (``quantized=Int8Spec(...)``): the kernel is stored as
``W_q = round(W / s_W)`` with one scale per output channel ``s_W[j] = max_i |W[i, j]| / 127``, the
input is quantized to int8 ``x_q`` with scales ``s_x``, and

    y = (x_q W_q) * s_x * s_W + b

where the product of the int8 integers is summed exactly. The input scales are either

* dynamic, one per row: ``s_x = max_j |x_j| / 127``, computed per call (a reduction over the row); or
* calibrated, one per input channel: ``a_i = max |x_i| / 127`` over calibration data, folded into
  the kernel before it is quantized (``W_q = round(diag(a) W / s_W)``), so that quantizing the input
  is one fused elementwise step ``x_q = clip(round(x / a))`` (values beyond the calibrated range clip).

Two ways to sum ``x_q W_q`` (``Int8Spec.dot``), both exact integer arithmetic:

* ``int32``: ``lax.dot_general(..., preferred_element_type=int32)`` (XLA:CPU's int8 kernels);
* ``bf16``: the same integers as bfloat16 (every int8 is exact in bf16's 8-bit significand) on the
  CPU's bf16 dot units, summed in float32. Each product is at most 127^2 and every partial sum is an
  exact float32 integer while it stays below 2^24, so the result equals the int32 sum whenever
  ``d_in * 127^2 < 2^24`` (``d_in <= 1040``) and is within float32 rounding beyond. On CPUs with
  AVX512-BF16 and no AMX, XLA runs these faster than its int8 kernels; with AMX its int8 kernels are the faster
  (measured in docs/benchmarks.md); elsewhere bf16 would be emulated, so `default_int8_dot` picks by CPU.

The quantized form is a different graph with the same parameter paths plus ``scale`` (and
``input_scale`` when calibrated); `salesrl_jax.infer.quantize` converts a float state into it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

INT8_MAX = 127.0
Int8Dot = Literal["int32", "bf16"]


@dataclasses.dataclass(frozen=True)
class Int8Spec:
    """How the quantized layers run; static (part of the compiled program)."""

    calibrated: bool = True
    """Per-input-channel activation scales from calibration data (else dynamic per-row scales)."""
    dot: Int8Dot = "int32"
    """How the int8 products are summed: int32 accumulation, or exactly on bf16 dot units (see module docstring)."""


@functools.cache
def default_int8_dot() -> Int8Dot:
    """``bf16`` on an accelerator (its matrix units take bf16; measured on an H200: 1.04-1.06x float32 against
    1.01-1.04x for int32 sums, docs/benchmarks.md); on a CPU, `int8_dot_for_cpu` of its flags."""
    import jax

    if jax.default_backend() != "cpu":
        return "bf16"
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    return int8_dot_for_cpu(flags)


def int8_dot_for_cpu(flags) -> Int8Dot:
    """The faster way to sum int8 products on a CPU with ``flags`` (/proc/cpuinfo's), as measured:

    * ``int32`` with AMX-INT8 (Intel Xeon from Sapphire Rapids on): XLA runs int8 dots on the AMX tiles, about twice
      its bf16 rate (a 1,024 x 3,072 x 128 product at 980 against 515 GMAC/s; the default model's int8 batch
      1.26-1.32x faster, session 44);
    * ``bf16`` with AVX512-BF16 but no AMX (the AMD EPYC machines of sessions 31, 41 and 42): bf16 dot units
      1.34-1.36x float32, XLA's int8 kernels 1.11-1.15x (sessions 3 and 31);
    * ``int32`` elsewhere, where bf16 would be emulated."""
    flags = set(flags)
    if "amx_int8" in flags:
        return "int32"
    return "bf16" if {"avx512_bf16", "amx_bf16"} & flags else "int32"


def kernel_dtype(dot: Int8Dot):
    """The dtype a quantized kernel is held in at run time for ``dot``."""
    return jnp.bfloat16 if dot == "bf16" else jnp.int8


def _as_int_dtype(q: jnp.ndarray, dtype) -> jnp.ndarray:
    """Float32 integers ``q`` in [-127, 127] as ``dtype``. For bf16, the top half of the float32 bits:
    a float32 integer below 2^8 has no significand bits in the low half, so truncation is exact and
    skips the rounding a general float32 -> bf16 conversion pays for (a third of a quantization pass)."""
    if dtype != jnp.bfloat16:
        return q.astype(dtype)
    high = jax.lax.shift_right_logical(jax.lax.bitcast_convert_type(q, jnp.uint32), jnp.uint32(16))
    return jax.lax.bitcast_convert_type(high.astype(jnp.uint16), jnp.bfloat16)


def quantize_rows(x: jnp.ndarray, dtype=jnp.int8) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Symmetric per-row int8 quantization of ``x [..., d]`` -> ``(x_q [..., d], scale [...])``, ``x_q`` as
    ``dtype`` (int8, or bf16 holding the same integers)."""
    absmax = jnp.max(jnp.abs(x), axis=-1)
    inverse = jnp.where(absmax > 0, INT8_MAX / absmax, 1.0)  # multiply, not divide, in the wide elementwise pass
    return _as_int_dtype(jnp.clip(jnp.round(x * inverse[..., None]), -INT8_MAX, INT8_MAX), dtype), 1.0 / inverse


def quantize_columns(x: jnp.ndarray, input_scale: jnp.ndarray, dtype=jnp.int8) -> jnp.ndarray:
    """``clip(round(x / a), -127, 127)`` with calibrated per-channel scales ``a [d]``, as ``dtype``
    (int8, or bf16 holding the same integers)."""
    return _as_int_dtype(jnp.clip(jnp.round(x * (1.0 / input_scale)), -INT8_MAX, INT8_MAX), dtype)


def int8_dot(x_q: jnp.ndarray, kernel_q: jnp.ndarray, dot: Int8Dot = "int32") -> jnp.ndarray:
    """The exact integer product ``x_q [..., d_in] @ W_q [d_in, d_out]`` as float32 (see module docstring)."""
    dims = (((x_q.ndim - 1,), (0,)), ((), ()))
    if dot == "bf16":
        return jax.lax.dot_general(x_q.astype(jnp.bfloat16), kernel_q.astype(jnp.bfloat16), dims,
                                   preferred_element_type=jnp.float32)
    acc = jax.lax.dot_general(x_q.astype(jnp.int8), kernel_q, dims, preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32)


def int8_matmul(x: jnp.ndarray, kernel_q: jnp.ndarray, kernel_scale: jnp.ndarray, dot: Int8Dot = "int32") -> jnp.ndarray:
    """``x [..., d_in] f32`` (dynamic per-row scales) times an int8 kernel ``[d_in, d_out]`` with per-column scales."""
    x_q, x_scale = quantize_rows(x, jnp.bfloat16 if dot == "bf16" else jnp.int8)
    return int8_dot(x_q, kernel_q, dot) * x_scale[..., None] * kernel_scale


class Dense(nnx.Module):
    """``y = x W + b`` for ``x [..., d_in]``: every wide layer of the model, in float or int8 form.

    Float (``quantized=None``): ``kernel [d_in, d_out]`` float32, LeCun-normal initialised. Int8
    (``quantized=Int8Spec(...)``, the module docstring has the maths): ``kernel`` holds the integers
    ``W_q`` (as the dtype the dot reads), ``scale [d_out]`` the per-output-channel ``s_W``, and, when
    calibrated, ``input_scale [d_in]`` the activation scales folded into the kernel. The int8 form
    is made from a trained float layer by `salesrl_jax.infer.quantize`, never trained itself.

    Inputs are float, or int8 with per-row scales (embeddings quantized upstream); a calibrated
    layer quantizes its own float input, or takes it already quantized (`apply_quantized`) when
    several layers share one input scale.
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, quantized: Int8Spec | None = None,
                 kernel_init=nnx.initializers.lecun_normal()):
        self.quantized = quantized
        if quantized is not None:  # filled in by salesrl_jax.infer.quantize
            # Held in the dtype the dot reads (bf16 holds every int8 exactly), so no call converts it;
            # saved as int8 either way.
            self.kernel = nnx.Param(jnp.zeros((in_features, out_features), kernel_dtype(quantized.dot)))
            self.scale = nnx.Param(jnp.ones((out_features,), jnp.float32))
            if quantized.calibrated:
                self.input_scale = nnx.Param(jnp.ones((in_features,), jnp.float32))
        else:
            self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jnp.ndarray, x_scale: jnp.ndarray | None = None) -> jnp.ndarray:
        """``x [..., d_in]``: float, or int8 with per-row scales ``x_scale [...]`` (inputs quantized upstream,
        such as int8 embeddings, skip the per-call activation quantization)."""
        spec = self.quantized
        if x.dtype == jnp.int8:
            if x_scale is None:
                raise ValueError("int8 inputs need their per-row scales")
            if spec is None:
                return (x.astype(jnp.float32) * x_scale[..., None]) @ self.kernel[...] + self.bias[...]
            if spec.calibrated:
                raise ValueError("a calibrated int8 layer quantizes its own input: pass it float inputs")
            return int8_dot(x, self.kernel[...], spec.dot) * x_scale[..., None] * self.scale[...] + self.bias[...]
        if spec is None:
            return x @ self.kernel[...] + self.bias[...]
        if spec.calibrated:
            return self.apply_quantized(self.quantize_input(x))
        return int8_matmul(x, self.kernel[...], self.scale[...], spec.dot) + self.bias[...]

    def quantize_input(self, x: jnp.ndarray) -> jnp.ndarray:
        """A calibrated layer's float input ``x [..., d_in]`` quantized with its ``input_scale``, as the
        dtype its dot reads. Layers calibrated on the same input share one quantization (`apply_quantized`)."""
        spec = self.quantized
        if spec is None or not spec.calibrated:
            raise ValueError("only a calibrated int8 layer has an input quantization")
        return quantize_columns(x, self.input_scale[...], kernel_dtype(spec.dot))

    def apply_quantized(self, x_q: jnp.ndarray) -> jnp.ndarray:
        """The calibrated layer on an input already quantized with its ``input_scale`` (`quantize_input`)."""
        return int8_dot(x_q, self.kernel[...], self.quantized.dot) * self.scale[...] + self.bias[...]

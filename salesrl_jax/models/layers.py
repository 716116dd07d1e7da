"""A dense layer with a float form (training) and an int8 form (quantized inference).

Float: ``y = x W + b``. Int8 (``quantized=True``): the kernel is stored as ``W_q = round(W / s_W)``
with one scale per output channel ``s_W[j] = max_i |W[i, j]| / 127``; each input row is quantized
on the fly with its own scale ``s_x = max_j |x_j| / 127``, and

    y = (x_q W_q)_{int32} * s_x * s_W + b

with the product accumulated in int32 (``lax.dot_general(..., preferred_element_type=int32)``),
which XLA:CPU runs on integer SIMD units. The quantized form is a different graph with the same
parameter paths plus ``scale``; `salesrl_jax.infer.quantize` converts a float state into it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

INT8_MAX = 127.0


def quantize_rows(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Symmetric per-row int8 quantization of ``x [..., d]`` -> ``(x_q int8 [..., d], scale [...])``."""
    scale = jnp.max(jnp.abs(x), axis=-1) / INT8_MAX
    scale = jnp.where(scale > 0, scale, 1.0)
    return jnp.clip(jnp.round(x / scale[..., None]), -INT8_MAX, INT8_MAX).astype(jnp.int8), scale


def int8_matmul(x: jnp.ndarray, kernel_q: jnp.ndarray, kernel_scale: jnp.ndarray) -> jnp.ndarray:
    """``x [..., d_in] f32`` times an int8 kernel ``[d_in, d_out]`` with per-column scales ``[d_out]``."""
    x_q, x_scale = quantize_rows(x)
    acc = jax.lax.dot_general(x_q, kernel_q, (((x_q.ndim - 1,), (0,)), ((), ())),
                              preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * x_scale[..., None] * kernel_scale


class Dense(nnx.Module):
    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, quantized: bool = False,
                 kernel_init=nnx.initializers.lecun_normal()):
        self.quantized = quantized
        if quantized:  # filled in by salesrl_jax.infer.quantize
            self.kernel = nnx.Param(jnp.zeros((in_features, out_features), jnp.int8))
            self.scale = nnx.Param(jnp.ones((out_features,), jnp.float32))
        else:
            self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jnp.ndarray, x_scale: jnp.ndarray | None = None) -> jnp.ndarray:
        """``x [..., d_in]``: float, or int8 with per-row scales ``x_scale [...]`` (inputs quantized upstream,
        such as int8 embeddings, skip the per-call activation quantization)."""
        if x.dtype == jnp.int8:
            if x_scale is None:
                raise ValueError("int8 inputs need their per-row scales")
            if not self.quantized:
                return (x.astype(jnp.float32) * x_scale[..., None]) @ self.kernel[...] + self.bias[...]
            acc = jax.lax.dot_general(x, self.kernel[...], (((x.ndim - 1,), (0,)), ((), ())),
                                      preferred_element_type=jnp.int32)
            return acc.astype(jnp.float32) * x_scale[..., None] * self.scale[...] + self.bias[...]
        if self.quantized:
            return int8_matmul(x, self.kernel[...], self.scale[...]) + self.bias[...]
        return x @ self.kernel[...] + self.bias[...]

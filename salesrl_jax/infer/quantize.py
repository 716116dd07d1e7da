"""Post-training int8 quantization of a trained agent.

Weights: symmetric, one scale per output channel, ``s_j = max_i |W_ij| / 127``,
``W_q = clip(round(W / s), -127, 127)``; so ``|W - s W_q| <= s / 2`` element-wise (tested). The
wide layers (embedding projection, encoder hidden and state layers, head hidden layers) are
quantized; the narrow output layers and the LayerNorms stay float32, where int8 saves nothing
and costs accuracy.

Two ways to run a quantized model, chosen by batch size (measured in ``salesrl bench``):

* int8 x int8 -> int32 (`SalesAgent(..., quantized=True)`): the int8 graph; fastest for large
  batches on XLA:CPU;
* dequantized once at load (`dequantize_params`): the float graph with weights ``s W_q``; for
  batch-1 streaming, where a per-call activation quantization would cost more than it saves.

The quantized parameters are a plain pytree saved with orbax beside the float checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from salesrl_jax.models.agent import SalesAgent
from salesrl_jax.models.config import ModelConfig
from salesrl_jax.models.layers import INT8_MAX

QUANTIZED_DIR = "int8"


def quantize_rows_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host-side symmetric per-row int8 quantization (embeddings, in worker processes): ``(int8 [n, d], scale [n])``.

    Feeding the int8 model int8 embeddings skips its widest per-call activation quantization and
    moves a quarter of the bytes.
    """
    x = np.asarray(x, dtype=np.float32)
    scale = np.abs(x).max(axis=1) / INT8_MAX if x.size else np.zeros(len(x), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(x / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8), scale


def quantize_kernel(kernel: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``[..., d_in, d_out]`` float -> (int8 kernel, per-output-channel scales ``[..., d_out]``)."""
    scale = jnp.max(jnp.abs(kernel), axis=-2) / INT8_MAX
    scale = jnp.where(scale > 0, scale, 1.0)
    q = jnp.clip(jnp.round(kernel / scale[..., None, :]), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return q, scale.astype(jnp.float32)


def dequantize_kernel(q: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    return q.astype(jnp.float32) * scale[..., None, :]


def _map_layers(float_tree: dict, quant_tree: dict, convert, leaves_from_quant: bool) -> dict:
    """Walk the two pure-dict parameter trees together: every quantized Dense (a dict with ``scale``
    in ``quant_tree``) becomes ``convert(float_layer, quant_layer)``; other leaves are copied from
    one tree (they are float32 in both)."""
    out = {}
    for key, node in quant_tree.items():
        if isinstance(node, dict) and "scale" in node and "kernel" in node:
            out[key] = convert(float_tree[key], node)
        elif isinstance(node, dict):
            out[key] = _map_layers(float_tree[key], node, convert, leaves_from_quant)
        else:
            out[key] = node if leaves_from_quant else float_tree[key]
    return out


def quantized_agent(config: ModelConfig, embed_dim: int) -> tuple[nnx.GraphDef, nnx.State]:
    """The int8 graph and a placeholder state (its shapes and dtypes)."""
    return nnx.split(SalesAgent(config, embed_dim, rngs=nnx.Rngs(0), quantized=True))


def quantize_params(params: nnx.State, config: ModelConfig, embed_dim: int) -> tuple[nnx.GraphDef, nnx.State]:
    """Float parameters -> (int8 graph, int8 parameters)."""
    graphdef, like = quantized_agent(config, embed_dim)

    def convert(float_layer: dict, _quant_layer: dict) -> dict:
        q, scale = quantize_kernel(float_layer["kernel"])
        return {"kernel": q, "scale": scale, "bias": float_layer["bias"]}

    pure = _map_layers(nnx.to_pure_dict(params), nnx.to_pure_dict(like), convert, leaves_from_quant=False)
    nnx.replace_by_pure_dict(like, pure)
    return graphdef, like


def dequantize_params(quantized: nnx.State, float_like: nnx.State) -> nnx.State:
    """int8 parameters -> float parameters ``s W_q`` for the float graph (dequantized once, at load)."""
    def convert(float_layer: dict, quant_layer: dict) -> dict:
        return {"kernel": dequantize_kernel(quant_layer["kernel"], quant_layer["scale"]), "bias": quant_layer["bias"]}

    pure = _map_layers(nnx.to_pure_dict(float_like), nnx.to_pure_dict(quantized), convert, leaves_from_quant=True)
    result = jax.tree.map(lambda x: x, float_like)
    nnx.replace_by_pure_dict(result, pure)
    return result


def save_quantized(directory: str | os.PathLike[str], quantized: nnx.State) -> Path:
    """Write the int8 parameters (a plain pytree) with orbax; returns the path."""
    import orbax.checkpoint as ocp

    path = Path(directory).absolute()
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, nnx.to_pure_dict(quantized), force=True)
    return path


def load_quantized(directory: str | os.PathLike[str], config: ModelConfig, embed_dim: int
                   ) -> tuple[nnx.GraphDef, nnx.State]:
    import orbax.checkpoint as ocp

    graphdef, like = quantized_agent(config, embed_dim)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(like))
    with ocp.StandardCheckpointer() as checkpointer:
        pure = checkpointer.restore(Path(directory).absolute(), target)
    nnx.replace_by_pure_dict(like, pure)
    return graphdef, like


def tree_bytes(tree) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))

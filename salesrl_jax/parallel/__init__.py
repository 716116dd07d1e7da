"""Training beyond one device: a `jax.sharding.Mesh` with a ``data`` axis, the packed minibatches sharded on it,
parameters replicated or FSDP-sharded, and multi-process start-up (`jax.distributed`). The jitted updates are
the single-device ones: only where arrays live changes (XLA inserts the collectives)."""

from salesrl_jax.parallel.distributed import start_distributed
from salesrl_jax.parallel.placement import DATA_AXIS, Placement, make_placement

__all__ = ["DATA_AXIS", "Placement", "make_placement", "start_distributed"]

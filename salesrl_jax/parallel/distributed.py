"""Multi-process start-up: `jax.distributed.initialize` from the config or the cluster's environment."""

from __future__ import annotations

import jax
import numpy as np


def start_distributed(coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """Join (or, as process 0, host) the run's coordination service, once per process.

    Unset arguments are left to JAX, which reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID or
    detects Slurm, Open MPI and Kubernetes. On CPU the processes exchange arrays through gloo. A second call in
    the same process is a no-op (a study trains several runs in one process)."""
    if jax.distributed.is_initialized():
        return
    # CPU devices of different processes exchange arrays through gloo (the setting is ignored on accelerators);
    # it must be chosen before JAX starts its backends, so before anything asks for a device.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator or None, num_processes=num_processes or None,
                               process_id=None if process_id < 0 else process_id)


def agreed(decision: bool) -> bool:
    """Process 0's ``decision``, in every process of a distributed run (``decision`` itself in one process): what a
    process decides from its own clock (`salesrl_jax.train.phases`: whether the latest checkpoint is due) must be
    one decision, because orbax saves are collective and a process that saved alone would wait for the others."""
    if jax.process_count() == 1:
        return decision
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(decision)))

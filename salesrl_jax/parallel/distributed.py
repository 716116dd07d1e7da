"""Multi-process start-up: `jax.distributed.initialize` from the config or the cluster's environment."""

from __future__ import annotations

import jax


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


"""Child program of test_multi_process: one process of a two-process training run on 127.0.0.1, or the
one-process reference on two virtual devices.

    python -m tests.parallel.process_runs pair PROCESS_ID PORT ARRAYS WORKDIR
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.parallel.process_runs single ARRAYS WORKDIR

Both use two slices per minibatch, so the two runs see the same batches. Each prints one JSON line: the final
parameters' digest and the validation metrics.
"""

import dataclasses
import json
import sys
from pathlib import Path

from salesrl_jax.run.config import ParallelConfig
from tests.parallel.mesh_runs import config


def main(argv: list[str]) -> None:
    if argv[0] == "pair":
        process_id, port, arrays, workdir = int(argv[1]), int(argv[2]), Path(argv[3]), Path(argv[4])
        parallel = ParallelConfig(distributed=True, coordinator=f"127.0.0.1:{port}", num_processes=2,
                                  process_id=process_id, segments=2)
        stop = int(argv[5]) if len(argv) > 5 else None
        # The latest is due by each process's clock (`TrainConfig.checkpoint_seconds`), and the clocks disagree:
        # process 0's says every save is due, process 1's that none is. Orbax saves are collective, so both must
        # follow one decision (`salesrl_jax.parallel.distributed.agreed`); a process saving alone would hang.
        if process_id == 0:
            import itertools

            import salesrl_jax.train.phases as phases

            ticks = itertools.count(step=1e12)
            phases.time = type("Clock", (), {"monotonic": staticmethod(lambda: float(next(ticks)))})
    else:
        arrays, workdir, stop = Path(argv[1]), Path(argv[2]), None
        parallel = ParallelConfig(devices=2, segments=2)
    run = dataclasses.replace(config(arrays), parallel=parallel, checkpoint_seconds=1e9)

    import jax

    from salesrl_jax.io.digest import tree_digest
    from salesrl_jax.train.loop import train_and_evaluate
    from tests.parallel.mesh_runs import final_params

    result = train_and_evaluate(run, workdir, progress=False, stop_after_chunks=stop)
    if stop is None:
        params = final_params(workdir)
        print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                          "devices": jax.device_count(), "digest": tree_digest(params), "valid": result.valid,
                          "params": {k: float(v) for k, v in zip(range(8), jax.tree.leaves(params)[0].ravel())}}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Child program of test_data_parallel: tiny training runs on a mesh of 8 virtual CPU devices.

Run as ``XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.parallel.mesh_runs ARRAYS OUT``
(the device count is fixed when JAX starts, so the tests start a process for it). Prints one JSON line:
the largest parameter difference of each run against the one-device run with the same packing, and facts
about the layouts.
"""

import dataclasses
import json
import sys
from pathlib import Path

import jax
import numpy as np

from salesrl_jax.models.agent import create_agent
from salesrl_jax.parallel import make_placement
from salesrl_jax.run.checkpoints import read_meta, restore_params
from salesrl_jax.run.config import ParallelConfig, TrainConfig
from salesrl_jax.train.loop import train_and_evaluate
from tests.conftest import tiny_config


def config(arrays: Path, **parallel):
    base = tiny_config(arrays)
    return dataclasses.replace(base, pretrain=dataclasses.replace(base.pretrain, rows_per_minibatch=256, epochs=2),
                               ppo=dataclasses.replace(base.ppo, updates=2), parallel=ParallelConfig(**parallel))


def final_params(workdir: Path):
    """The final state's parameters (the latest checkpoint, digest checked), as host arrays."""
    saved = TrainConfig.from_dict(json.loads((workdir / "config.json").read_text()))
    _, like = create_agent(saved.model, 32, 0)
    latest = workdir / "checkpoints" / "latest"
    return jax.tree.map(np.asarray, restore_params(latest, like, read_meta(latest)["params_sha256"]))


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def mean_difference(a, b) -> float:
    diffs = np.concatenate([np.abs(x - y).ravel() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    return float(diffs.mean())


def main(arrays: Path, out: Path) -> None:
    assert jax.device_count() == 8, jax.devices()
    runs = {"one_device": dict(devices=1, segments=8), "eight_devices": dict(devices=0)}
    params, saved, valid = {}, {}, {}
    for name, parallel in runs.items():
        valid[name] = train_and_evaluate(config(arrays, **parallel), out / name, progress=False).valid
        params[name] = final_params(out / name)
        saved[name] = json.loads((out / name / "config.json").read_text())["parallel"]
    # FSDP on the mesh, killed after two chunks and resumed there: the checkpoint restores onto the shards.
    fsdp = dict(devices=8, params="fsdp", fsdp_min_size=64)
    train_and_evaluate(config(arrays, **fsdp), out / "fsdp", progress=False, stop_after_chunks=2)
    valid["fsdp"] = train_and_evaluate(config(arrays, **fsdp), out / "fsdp", progress=False).valid
    params["fsdp"] = final_params(out / "fsdp")

    _, fresh = create_agent(config(arrays).model, 32, 0)
    placement = make_placement(8, 8, "fsdp", 64)
    sharded = [str(s.spec) for s in jax.tree.leaves(placement.state_shardings(fresh))
               if s.spec != jax.sharding.PartitionSpec()]
    print(json.dumps({
        "eight_vs_one": max_difference(params["eight_devices"], params["one_device"]),
        "fsdp_vs_one": max_difference(params["fsdp"], params["one_device"]),
        "moved": max_difference(params["one_device"], jax.tree.map(np.asarray, fresh)),
        "eight_vs_one_mean": mean_difference(params["eight_devices"], params["one_device"]),
        "fsdp_vs_one_mean": mean_difference(params["fsdp"], params["one_device"]),
        "moved_mean": mean_difference(params["one_device"], jax.tree.map(np.asarray, fresh)),
        "valid": valid,
        "saved_parallel": saved, "fsdp_sharded_leaves": sharded,
        "fsdp_leaves": len(jax.tree.leaves(fresh))}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""`salesrl score --engine ray` and `salesrl embed --engine ray` against a local Ray started here: the local
engine's outputs byte for byte, also when a worker dies mid-run (Ray restarts it and retries the chunk) and when a
run resumes; and an installation without Ray never imports it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from salesrl_jax.infer.archive import score_archive
from salesrl_jax.io.ray_map import FAIL_ONCE_VARIABLE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'salesrl-jax[ray]')")
    marker = tmp_path_factory.mktemp("ray") / "killed-once"
    # Every actor sees the variable: the first chunk any of them takes kills its process (once, for the run).
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAIL_ONCE_VARIABLE: str(marker)}})
    yield marker
    ray.shutdown()


def _outputs(result) -> dict[str, bytes]:
    return {name: result.outputs[name].read_bytes() for name in ("turns", "conversations")}


def test_ray_engine_equals_local_even_when_a_worker_is_killed(local_ray, tiny_trained, tiny_archive, tmp_path):
    local = score_archive(tiny_trained, tiny_archive, tmp_path / "local.parquet", chunk_conversations=100,
                          workers=2)
    assert not local_ray.exists()
    on_ray = score_archive(tiny_trained, tiny_archive, tmp_path / "ray.parquet", chunk_conversations=100,
                           workers=2, engine="ray")
    assert local_ray.exists()  # a worker died on its first chunk; Ray restarted it and retried the chunk
    assert _outputs(on_ray) == _outputs(local)
    assert (on_ray.conversations, on_ray.turns, on_ray.chunks_written) == (600, local.turns, 6)

    # A run stopped after two chunks (its progress callback raises, as an interrupt would) leaves their part files;
    # the Ray engine resumes it, scoring only the other four, and a finished run is a no-op.
    class Stop(Exception):
        pass

    seen = []

    def stop_after_two(turns: int) -> None:
        seen.append(turns)
        if len(seen) == 2:
            raise Stop

    out = tmp_path / "resumed.parquet"
    with pytest.raises(Stop):
        score_archive(tiny_trained, tiny_archive, out, chunk_conversations=100, workers=1, progress=stop_after_two)
    resumed = score_archive(tiny_trained, tiny_archive, out, chunk_conversations=100, workers=2, engine="ray")
    assert (resumed.chunks_reused, resumed.chunks_written) == (2, 4)
    assert _outputs(resumed) == _outputs(local)
    again = score_archive(tiny_trained, tiny_archive, out, chunk_conversations=100, workers=2, engine="ray")
    assert again.up_to_date and _outputs(again) == _outputs(local)


def test_ray_embedding_writes_the_local_parts(local_ray, tiny_archive, tmp_path):
    from salesrl_jax.arrays.build import embed_archive
    from salesrl_jax.embed.config import EmbedderConfig

    config = EmbedderConfig(kind="hashing", dim=32)
    local = embed_archive(tiny_archive, tmp_path / "local", config, chunk_conversations=200, workers=1)
    on_ray = embed_archive(tiny_archive, tmp_path / "ray", config, chunk_conversations=200, workers=2, engine="ray")
    assert on_ray.parts_written == 3
    assert on_ray.arrays.manifest["counts"] == local.arrays.manifest["counts"]
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.npy"))
    assert files
    for name in files:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_without_the_ray_extra_nothing_imports_ray(tiny_trained, tiny_archive, tmp_path):
    """With Ray made unimportable, the CLI and a local scoring run work and never import it; --engine ray says
    which extra to install."""
    program = textwrap.dedent(f"""
        import importlib.abc, sys

        class NoRay(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, NoRay())
        from salesrl_jax.infer.archive import score_archive
        import salesrl_jax.cli
        score_archive({str(tiny_trained)!r}, {str(tiny_archive)!r}, {str(tmp_path / "local.jsonl")!r},
                      chunk_conversations=300, workers=1)
        try:
            score_archive({str(tiny_trained)!r}, {str(tiny_archive)!r}, {str(tmp_path / "ray.jsonl")!r},
                          engine="ray")
        except ValueError as err:
            print("ERROR", err)
        print("RAY IMPORTED" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "NO RAY")
    """)
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NO RAY" in done.stdout
    assert "pip install 'salesrl-jax[ray]'" in done.stdout
    assert (tmp_path / "local.jsonl").stat().st_size > 0

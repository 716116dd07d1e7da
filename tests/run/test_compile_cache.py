"""The command line's persistent compilation cache: where it goes, how it is turned off, and that JAX writes there."""

import os
import subprocess
import sys
from pathlib import Path

from salesrl_jax.run.compile_cache import ENV, compile_cache_dir

ROOT = Path(__file__).resolve().parents[2]


def test_the_directory_follows_the_environment(tmp_path):
    home_cache = Path.home() / ".cache" / "salesrl-jax" / "xla"
    assert compile_cache_dir({}) == home_cache
    assert compile_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "salesrl-jax" / "xla"
    assert compile_cache_dir({ENV: str(tmp_path / "mine"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "mine"
    for off in ("off", "OFF", "0", "false", " "):
        assert compile_cache_dir({ENV: off}) is None, off
    # A directory the user gave JAX itself is JAX's business.
    assert compile_cache_dir({"JAX_COMPILATION_CACHE_DIR": str(tmp_path), ENV: str(tmp_path / "mine")}) is None


def _cli_then_compile(args: list[str], env: dict) -> str:
    """Run ``salesrl ARGS`` in a fresh process, then compile one program there; returns the cache directory JAX
    was given (``None`` if none)."""
    code = ("import jax\nfrom salesrl_jax.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print(jax.config.jax_compilation_cache_dir)\n"
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
            "jax.jit(lambda x: x * 2 + 1)(1.0).block_until_ready()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_command_writes_its_programs_there_and_bench_compiles_afresh(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # the suite's own cache left out
    missing = str(tmp_path / "missing.jsonl")
    cache = tmp_path / "cache"
    assert _cli_then_compile(["validate", "--data", missing], {**env, ENV: str(cache)}) == str(cache)
    assert any(cache.iterdir())  # the compiled program is on disk
    bench = tmp_path / "bench"
    assert _cli_then_compile(["bench", "--parts", "nothing"], {**env, ENV: str(bench)}) == "None"
    assert not bench.exists()
    home = tmp_path / "home"
    off = {**env, ENV: "off", "XDG_CACHE_HOME": str(home)}
    assert _cli_then_compile(["validate", "--data", missing], off) == "None"
    assert not home.exists()
    # A cache that cannot be created (a read-only home, here a file where its folder would go): the command runs
    # and compiles as it would without one.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    assert _cli_then_compile(["validate", "--data", missing], {**env, ENV: str(blocked / "xla")}) == "None"

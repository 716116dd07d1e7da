"""JAX's persistent cache of compiled programs, on for the command line.

Every ``salesrl`` process compiles its jitted programs (the training chunk, the PPO update, the validator, the batch
predictor, the streaming step) afresh, and the programs rarely change between commands: the folds of a crossval,
the variants of a study, a ``train`` then ``evaluate`` then ``score`` of one model all compile the same ones. JAX
keeps compiled programs on disk, keyed by the program, the compiler options, the device and the JAX version, so a
cached program is the very binary a fresh compile would give (the same numbers), loaded instead of compiled.

Where: ``$SALESRL_COMPILE_CACHE`` if set (``off`` turns the cache off), else ``$XDG_CACHE_HOME/salesrl-jax/xla``
(``~/.cache/salesrl-jax/xla``); a ``JAX_COMPILATION_CACHE_DIR`` the user set is left to JAX. The least recently used
programs are deleted past `MAX_BYTES`. ``salesrl bench`` runs without it: it reports compile times.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV = "SALESRL_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none")
MAX_BYTES = 2 * 1024 ** 3
"""The cache's size limit (JAX deletes the least recently used programs past it): a few hundred programs of ours."""


def compile_cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The directory the cache would use, or None where it is off or JAX's own setting (the variable
    ``JAX_COMPILATION_CACHE_DIR``) already names one."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    value = environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF or not value.strip() else Path(value).expanduser()
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "salesrl-jax" / "xla"


def enable_compile_cache(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at `compile_cache_dir` (before the process compiles anything);
    returns the directory, or None where the cache is off, left to JAX, or cannot be created (a read-only home: the
    command then compiles as it would without a cache)."""
    path = compile_cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path

"""Calling the one function a Python settings file defines (study files, guidance configs), with every problem
in it named by the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def call_in_file(path: str | Path, function: str, returns: type, kind: str) -> Any:
    """``function()`` of the Python file ``path``, checked to return a ``returns``. A missing file, a missing
    function, a ``TypeError`` or ``ValueError`` inside it (an unknown keyword names the field) and a wrong return
    type are errors that name ``path``; ``kind`` says what the file is ("study file")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {kind}")
    spec = importlib.util.spec_from_file_location(f"_salesrl_{function}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, function):
            raise ValueError(f"a {kind} must define {function}() -> {returns.__name__}")
        value = getattr(module, function)()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(value, returns):
        raise ValueError(f"{path}: {function}() returned {type(value).__name__}, not {returns.__name__}")
    return value

"""Atomic publication: a file or directory appears whole under its name, or not at all."""

import json
import os

import pytest

from salesrl_jax.io.atomic import (
    atomic_path,
    remove_stale_temporaries,
    temporary_sibling,
    write_json_atomic,
    write_text_atomic,
)


def test_a_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out" / "result.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
        assert not target.exists() and tmp.name == f".result.json.tmp-{os.getpid()}"
    assert target.read_text() == "{}" and not tmp.exists()


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and not temporary_sibling(target).exists()


def test_directories_publish_whole(tmp_path):
    target = tmp_path / "part-00000"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x.npy").write_bytes(b"123")
    assert (target / "x.npy").read_bytes() == b"123"


def test_json_and_stale_temporaries(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": [1, 2]}, indent=2, newline=True)
    assert (tmp_path / "m.json").read_text() == json.dumps({"a": [1, 2]}, indent=2) + "\n"
    (tmp_path / ".m.json.tmp-1").write_text("x")
    (tmp_path / ".part-3.tmp-7").mkdir()
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
    assert remove_stale_temporaries(tmp_path / "absent") == 0


def test_json_is_always_valid_json_nan_becomes_null(tmp_path):
    import json
    import math

    from salesrl_jax.io.atomic import dumps_json, write_json_atomic

    record = {"auc": float("nan"), "rows": [1.0, float("inf"), {"x": -float("inf")}], "n": 3}
    path = write_json_atomic(tmp_path / "m.json", record)
    assert json.loads(path.read_text(), parse_constant=lambda c: math.nan) == {"auc": None, "rows": [1.0, None,
                                                                                                      {"x": None}], "n": 3}
    assert "NaN" not in dumps_json(record) and "Infinity" not in dumps_json(record)

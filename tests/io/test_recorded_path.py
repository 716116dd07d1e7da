"""A path recorded relative to another command's working directory is found from here or from a folder above what
recorded it; otherwise it comes back as given, for the caller's message."""

from salesrl_jax.io.recorded_path import recorded_path


def test_relative_paths_are_read_from_here_then_from_the_folders_above(tmp_path, monkeypatch):
    (tmp_path / "project" / "runs" / "cv" / "fold-0" / "arrays").mkdir(parents=True)
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "project" / "data" / "calls.jsonl").write_text("")
    near = tmp_path / "project" / "runs" / "cv" / "fold-0" / "arrays"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert recorded_path("data/calls.jsonl", near) == tmp_path / "project" / "data" / "calls.jsonl"
    assert recorded_path("cv/fold-0", near) == tmp_path / "project" / "runs" / "cv" / "fold-0"
    assert recorded_path("missing/calls.jsonl", near) == type(near)("missing/calls.jsonl")  # as given
    absolute = tmp_path / "gone.jsonl"
    assert recorded_path(absolute, near) == absolute
    # From here first: the working directory's copy wins over one above `near`.
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "calls.jsonl").write_text("")
    assert recorded_path("data/calls.jsonl", near) == type(near)("data/calls.jsonl")

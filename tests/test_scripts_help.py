"""Every script under scripts/ documents itself: ``--help`` prints its usage and exits 0, without running anything
(three did not: one ran its whole benchmark, one read ``--help`` as a path, one exited 1)."""

import runpy
import signal
import sys

import pytest

from tests.conftest import SCRIPTS


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_help_prints_usage_and_runs_nothing(script, monkeypatch, capsys):
    def too_long(*_):
        raise TimeoutError(f"{script} --help ran for more than 20 s: it does not read its arguments")

    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / script), "--help"])
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(20)
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out = capsys.readouterr().out
    assert exit_.value.code in (0, None), out
    assert "usage" in out.lower(), out

"""The `salesrl` command: help text, the demo, conversions, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from salesrl_jax.cli import main
from salesrl_jax.data.readers import read_conversations

FIXTURE = Path(__file__).parent / "fixtures" / "persuasionforgood"


@pytest.mark.parametrize("argv", [[], ["generate"], ["convert"], ["convert", "archive"], ["demo"], ["embed"],
                                  ["train"], ["evaluate"], ["score"], ["quantize"], ["calibrate"],
                                  ["bench"], ["convert", "persuasionforgood"], ["convert", "casino"], ["split"],
                                  ["crossval"], ["study"], ["confidence"]])
def test_help_documents_every_subcommand(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: salesrl" in capsys.readouterr().out


def test_demo_runs_end_to_end(tmp_path):
    # Through the installed console script, as the README runs it.
    exe = Path(sys.executable).with_name("salesrl")
    out = subprocess.run([str(exe), "demo", "--workdir", str(tmp_path), "--num-conversations", "300"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "read back         300 conversations" in out.stdout
    assert "oracle" in out.stdout and "last turn" in out.stdout
    assert (tmp_path / "synthetic" / "manifest.json").exists()
    assert "embedder          hashing:" in out.stdout and (tmp_path / "arrays" / "manifest.json").exists()
    assert "**Last turn**" in out.stdout and "oracle auc" in out.stdout  # the model's evaluation table
    assert (tmp_path / "model" / "eval-test" / "reliability.png").stat().st_size > 1000
    assert "turn by turn (P(sale) after each turn" in out.stdout and (tmp_path / "scores.jsonl").exists()
    assert "confidence module fitted on" in out.stdout and "] confidence 0." in out.stdout  # intervals per turn


def test_convert_persuasionforgood(tmp_path, capsys):
    out = tmp_path / "p4g.parquet"
    main(["convert", "persuasionforgood", "--source", str(FIXTURE), "--out", str(out)])
    assert "5 conversations" in capsys.readouterr().out
    assert len(list(read_conversations(out))) == 5


def test_convert_archive_sets_bad_records_aside(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "turns": [{"role": "agent", "content": "hi"}]}) + "\n{broken\n")
    main(["convert", "archive", "--input", str(src), "--output", str(tmp_path / "out.csv")])
    printed = capsys.readouterr().out
    assert "1 conversations" in printed and "rejected          1" in printed and "line 2" in printed
    rejects = (tmp_path / "out.rejects.jsonl").read_text().splitlines()
    assert json.loads(rejects[0])["location"] == "line 2"
    with pytest.raises(SystemExit, match="line 2"):
        main(["convert", "archive", "--input", str(src), "--output", str(tmp_path / "o2.csv"), "--strict"])
    assert not (tmp_path / "o2.csv").exists(), "a failed strict run leaves no partial output"


def test_missing_input_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main(["convert", "archive", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    with pytest.raises(SystemExit, match="target_conversion_rate"):
        main(["generate", "--target-conversion-rate", "1.5", "--out", str(tmp_path)])



def test_warnings_print_as_one_line_each(tmp_path, capsys, monkeypatch):
    """A warning reaches the user as `warning: MESSAGE`, without the source location and the line of library code
    that raised it (its category where it is not UserWarning); --debug keeps Python's form; the process's own format
    is restored after the command."""
    import warnings

    import salesrl_jax.eval.calibration as calibration
    from salesrl_jax.train.wide_fit import NoWideTerm

    class Fitted:
        def summary(self) -> str:
            return "fitted"

    def recalibrate(*args, **kwargs):
        warnings.warn("fitted on 12 conversations only", stacklevel=2)
        warnings.warn("no wide term here", NoWideTerm, stacklevel=2)
        return Fitted()

    def to_stderr(message, category, filename, lineno, file=None, line=None):
        """What Python's default `showwarning` does: the formatted warning to stderr."""
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(calibration, "recalibrate_model", recalibrate)
    before = warnings.formatwarning
    for debug in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = to_stderr  # as outside pytest (whose warnings plugin records them instead)
            main(["calibrate", "--model", str(tmp_path), "--out", str(tmp_path / "out")] + ["--debug"] * debug)
        err = capsys.readouterr().err
        if debug:
            assert "UserWarning: fitted on 12" in err and "cli.py:" in err, err
        else:
            assert err.splitlines() == ["warning: fitted on 12 conversations only",
                                        "warning (NoWideTerm): no wide term here"], err
        assert warnings.formatwarning is before

"""scripts/replicate_summary.py: the mean, spread and sign of the model-minus-baseline differences over replicated
test files, against a fixed variant and against each report's own strongest."""

import json

import pytest

from tests.conftest import load_script

POINTS = ("1", "2", "3", "4", "6", "8", "12", "16")


def _report(directory, model_auc: float, tagged_auc: float, plain_auc: float, strongest_diff: float):
    """A `salesrl evaluate --baselines` metrics.json with the same AUC at every point of a method."""
    def method(auc):
        return {"by_turn": {p: {"auc": auc, "n": 100} for p in POINTS}, "last": {"auc": auc, "n": 100}}

    baselines = {"methods": {"model": method(model_auc), "tfidf_tagged_whole": method(tagged_auc),
                             "tfidf_plain_whole": method(plain_auc), "features_gbm": method(0.5)},
                 "paired": {p: {"reference": "tfidf_tagged_whole", "diff": strongest_diff} for p in (*POINTS, "last")},
                 "mean_auc_turns_4_12": {"model": model_auc, "tfidf_tagged_whole": tagged_auc,
                                         "tfidf_plain_whole": plain_auc, "features_gbm": 0.5},
                 "mean_auc_turns_4_12_difference": {"reference": "tfidf_tagged_whole", "diff": strongest_diff}}
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"last_turn": {}, "baselines": baselines}))
    return directory


def test_means_spreads_and_signs_over_replicates(tmp_path, capsys):
    script = load_script("replicate_summary")
    dirs = [_report(tmp_path / "a", 0.66, 0.62, 0.64, -0.01), _report(tmp_path / "b", 0.60, 0.64, 0.58, -0.05),
            _report(tmp_path / "c", 0.63, 0.60, 0.62, +0.02)]
    script.main([str(d) for d in dirs])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 replicates; AUC, the mean over them"
    first_table = out[:out.index("", 3)]
    row = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
           for line in first_table if line.startswith("| ")}
    assert row["model"] == ["0.630"] * 8 and row["tfidf_tagged_whole"] == ["0.620"] * 8
    # model - tagged: +0.04, -0.04, +0.03 -> mean +0.010, sd 0.044, 2 of 3 above 0
    tagged = [line for line in out if line.startswith("| tfidf_tagged_whole | +")][0]
    assert tagged.count("+0.010 (sd 0.044), 2/3 above 0") == 8
    plain = [line for line in out if line.startswith("| tfidf_plain_whole | +")][0]
    assert plain.count("+0.017 (sd 0.006), 3/3 above 0") == 8  # +0.02, +0.02, +0.01
    strongest = [line for line in out if line.startswith("| each report's strongest")][0]
    assert strongest.count("-0.013 (sd 0.035), 1/3 above 0") == 8
    assert not any(line.startswith("| features_gbm | +") or line.startswith("| features_gbm | -") for line in out)


def test_a_report_without_baselines_is_a_clear_error(tmp_path):
    script = load_script("replicate_summary")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "metrics.json").write_text(json.dumps({"last_turn": {}}))
    with pytest.raises(SystemExit, match="no baselines section"):
        script.main([str(tmp_path / "plain")])
    with pytest.raises(SystemExit, match="not found"):
        script.main([str(tmp_path / "missing")])

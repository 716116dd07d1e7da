"""`salesrl evaluate --baselines`: a trained model against strong baselines on a test file, paired.

`salesrl crossval` compares the recipe with the baselines on the folds of one archive. A researcher who trained on a
development file and holds out a test file (`salesrl split`) needs the same comparison on that test file, for the
model they trained. Here:

* the baselines (`salesrl_jax.baselines`: four TF-IDF logistic-regression variants, a regression on the turn
  embeddings' means, gradient-boosted trees on the turn features) are fitted on every labelled conversation of the
  model's training arrays (``data.train``), its validation split included, because the model read that split too
  (early stopping, recalibration, its wide term). Each picks its L2 strength by cross-validation grouped by
  conversation on those conversations only;
* they predict every prefix of the test conversations from turns 1..t, as the model does;
* both are scored as crossval scores them (`salesrl_jax.pipelines.crossval.score_predictions`): every method by
  turn index over the conversations still running, with bootstrap intervals, and the model minus the strongest
  TF-IDF variant at each point and on the mean over turns 4-12, paired over conversations.

The baselines read text, so they need the archives the arrays were built from. Each arrays' manifest records its
source (path and SHA-256; a subset's is its parent's). That path is used unless ``train_archive`` / ``test_archive``
name the archive where it has moved, and either way the file is checked against the recorded hash. A test set
that shares a conversation with the training arrays is refused: the baselines would be scored on conversations
they were fitted on.

Outputs, beside the evaluation's: ``metrics.json`` gains ``"baselines"`` (`score_predictions`' schema, plus
``training_conversations``, the archives, the L2 strengths chosen and the training prefixes read), the report a
section, ``baseline_predictions.parquet`` every test prefix's predictions by method, and ``auc_by_turn.png``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np

from salesrl_jax.arrays.build import archive_hash
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.baselines.fit import MAX_PREFIX_ROWS
from salesrl_jax.eval.evaluate import Section
from salesrl_jax.io.recorded_path import recorded_path
from salesrl_jax.models.predict import TurnPredictions
from salesrl_jax.pipelines.crossval import (
    MODEL,
    format_summary,
    last_turn_table,
    plot_auc_by_turn,
    rows_in_order,
    score_predictions,
    write_columns,
)
from salesrl_jax.run.trained_model import TrainedModel

KEY = "baselines"  # where the comparison goes in metrics.json


def source_archive(arrays: TurnArrays, given: str | os.PathLike[str] | None, flag: str) -> Path:
    """The archive ``arrays`` were built from: ``given`` or the path their manifest records (a subset's: its root's;
    read as `salesrl_jax.io.recorded_path` says), checked against the recorded SHA-256. Refused, naming ``flag``, when
    it cannot be found or is another file."""
    source, root = arrays.manifest.get("source") or {}, arrays
    seen = {Path(arrays.path).resolve()}
    while "subset_of" in source:  # `write_subset` records its parent arrays, which record the archive
        parent = recorded_path(source["subset_of"], root.path)
        if parent.resolve() in seen or not (parent / "manifest.json").exists():
            raise ValueError(f"{arrays.path}: a subset of {source['subset_of']}, which is not on disk, so the archive "
                             f"it was built from is unknown; pass {flag}")
        seen.add(parent.resolve())
        root = TurnArrays.open(parent)
        source = root.manifest.get("source") or {}
    recorded, digest = source.get("path"), source.get("sha256")
    if given is None and recorded is None:
        raise ValueError(f"{root.path}: its manifest records no source archive; pass {flag}")
    path = Path(given) if given is not None else recorded_path(recorded, root.path)
    if not path.exists():
        named = f"{flag} {path}" if given is not None else f"{path} (recorded in {root.path / 'manifest.json'})"
        raise ValueError(f"{named}: not found; the baselines read the text of the archive {arrays.path} was built "
                         f"from" + ("" if given is not None else f": pass {flag} where it is now"))
    if digest is not None and archive_hash(path) != digest:
        raise ValueError(f"{path}: not the archive {arrays.path} was built from (its SHA-256 differs from the one "
                         f"recorded in {root.path / 'manifest.json'}); pass {flag} with that archive")
    return path


def _labelled_ids(arrays: TurnArrays) -> set[str]:
    return {part.ids[c] for part in arrays.iter_parts() for c in np.flatnonzero(np.asarray(part.outcome) >= 0)}


def baselines_section(model: TrainedModel, data: str | os.PathLike[str], *,
                      train_archive: str | os.PathLike[str] | None = None,
                      test_archive: str | os.PathLike[str] | None = None, bootstrap: int = 1000, seed: int = 0,
                      max_prefix_rows: int | None = MAX_PREFIX_ROWS
                      ) -> Callable[[TurnPredictions, Path], Section]:
    """The comparison as an evaluation `Section` (`salesrl_jax.eval.evaluate.evaluate_model`'s ``sections``): the
    archives are found, checked and the test set's independence verified now, before anything is predicted; the
    baselines are fitted and scored when the section is called with the model's predictions on ``data``."""
    if importlib.util.find_spec("sklearn") is None:
        raise ValueError("--baselines needs scikit-learn: pip install 'salesrl-jax[baselines]'")
    training = model.training_data
    if not (training / "manifest.json").exists():
        raise ValueError(f"--baselines: the model's training arrays {model.config.data.train} (its data.train, as "
                         "given to `salesrl train`: a relative path is read from this directory or a folder above the "
                         "model) are not on disk; the baselines are fitted on the conversations the model trained on")
    train_set, test_set = TurnArrays.open(training), TurnArrays.open(data)
    train_path = source_archive(train_set, train_archive, "--train-archive")
    test_path = source_archive(test_set, test_archive, "--test-archive")
    shared = sorted(_labelled_ids(train_set) & _labelled_ids(test_set))
    if shared:
        raise ValueError(f"--baselines: {data} shares {len(shared):,} conversations with the model's training arrays "
                         f"{training} (first: {shared[0]!r}); the comparison needs a test set neither was fitted on")

    def section(pred: TurnPredictions, out: Path) -> Section:
        from salesrl_jax.baselines.fit import fit_baselines
        from salesrl_jax.baselines.prefixes import build_prefixes, concat_tables
        from salesrl_jax.data.readers import read_conversations

        # Each archive read as its arrays were built from it (their label key and speaker names); past
        # ``max_prefix_rows`` the training table keeps a random subset of each conversation's prefixes. Every prefix
        # of the conversations the model was scored on is predicted (all of DATA's, or --max-conversations').
        train_table = build_prefixes(read_conversations(train_path, limits=train_set.reading()), train_set,
                                     train_path, max_rows=max_prefix_rows, seed=seed)
        test_table = build_prefixes(read_conversations(test_path, limits=test_set.reading()), test_set, test_path,
                                    only=set(pred.ids))
        n_train, n_test = len(train_table.ids), len(test_table.ids)
        table = concat_tables(train_table, test_table)
        fitted = fit_baselines(table, np.arange(n_train), np.arange(n_train, n_train + n_test), seed=seed,
                               max_prefix_rows=None)
        ids = [pred.ids[c] for c in pred.conversation]
        order = rows_in_order([table.ids[c] for c in table.conversation[fitted.rows]], table.turn_index[fitted.rows],
                              ids, pred.turn_index)
        pooled = {"conversation_id": ids, "turn_index": pred.turn_index, "length": pred.length,
                  "outcome": pred.outcome, MODEL: pred.prediction.astype(np.float32),
                  **{m: p[order].astype(np.float32) for m, p in fitted.probs.items()}}
        result = score_predictions(pooled, [MODEL, *fitted.probs], rounds=bootstrap, seed=seed)
        result.update(conversations=len(pred.ids), training_conversations=n_train, train_archive=str(train_path),
                      test_archive=str(test_path), chosen_c=fitted.chosen_c,
                      baseline_prefixes={"read": int(len(train_table.turn_index)), "of": int(train_table.prefixes)})
        out.mkdir(parents=True, exist_ok=True)
        write_columns(out / "baseline_predictions.parquet", pooled)
        plot_auc_by_turn(result, out / "auc_by_turn.png")
        design = f"the baselines fitted on the {n_train:,} labelled conversations of the model's training arrays"
        read = result["baseline_prefixes"]
        subset = (f" The prefix-fitted TF-IDF variants read {read['read']:,} of their {read['of']:,} prefixes (a "
                  "random subset of each conversation's)." if read["read"] < read["of"] else "")
        markdown = ["", f"**Against the baselines** (`{train_path}` for fitting, `{test_path}` for testing; the same "
                        f"prefixes, turns 1..t each; paired bootstrap over conversations).{subset}", "",
                    format_summary(result, design), "", "Last turn (95% bootstrap intervals over conversations)", "",
                    *last_turn_table(result)]
        return Section(KEY, result, markdown, ["", "![AUC by turn, the model and the baselines](auc_by_turn.png)"])

    return section

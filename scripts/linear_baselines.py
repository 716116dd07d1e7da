"""Linear baselines for turn-by-turn conversion prediction, scored exactly like `salesrl evaluate`.

On the held-out split that `salesrl train` uses (a seeded hash of each conversation id:
``--valid-fraction`` / ``--split-seed``, as ``data.valid_fraction`` / ``data.split_seed``), two
logistic regressions predict the outcome after every turn from turns 1..t only:

* ``tfidf``: TF-IDF of the text of turns 1..t (word 1-2 grams, sublinear tf; vocabulary and idf
  from the training conversations);
* ``embedding-mean``: the mean embedding of turns 1..t, of the customer's turns and of the rep's
  turns among them (the model's own input space, read from the cached arrays).

Both train on every prefix of every training conversation (what a real-time predictor sees). The
L2 strength is chosen by 5-fold cross-validation grouped by conversation on the training
conversations only, never on the held-out split. Each baseline gets an evaluation report
(``report.md``, ``metrics.json``, plots) in ``OUT/<baseline>/``, with the same tables as
`salesrl evaluate` (by turn index over conversations still running, by fraction seen, last turn,
with Brier and ECE); ``scripts/compare_reports.py`` puts them beside a model's report.

Needs scikit-learn: ``pip install -e '.[baselines]'``. ``--model RUN`` takes the split from a trained run
(its resolved ``data.valid_fraction`` and ``data.split_seed``), so the two never disagree. For
cross-validated figures of the whole baseline family beside the model, use ``salesrl crossval``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from salesrl_jax import help_text
from salesrl_jax.arrays.split import validation_mask
from salesrl_jax.arrays.store import TurnArrays
from salesrl_jax.data.readers import read_conversations
from salesrl_jax.eval.report import evaluation_tables, format_tables, write_report
from salesrl_jax.models.predict import TurnPredictions

C_GRID = np.logspace(-7, 2, 10)  # inverse L2 strengths tried by the inner cross-validation (a decade apart)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Linear baselines on the held-out split of a model's training data."""

    data: Path
    """The conversations (JSONL / CSV / Parquet archive) the arrays were built from: the text."""
    arrays: Path
    """Their cached arrays (`salesrl embed`): ids, outcomes, embeddings, speakers."""
    out: Path
    """Directory for one evaluation report per baseline."""
    model: Path | None = None
    """A trained run whose validation split to use (overrides --valid-fraction and --split-seed)."""
    valid_fraction: float = 0.1
    """Held-out fraction, as the model's ``data.valid_fraction`` (train's default)."""
    split_seed: int = 0
    """Split seed, as the model's ``data.split_seed``."""
    folds: int = 5
    """Inner cross-validation folds (grouped by conversation) that choose the L2 strength."""


@dataclasses.dataclass
class Prefixes:
    """One row per (labelled conversation, t): the inputs of a prediction after turn t."""

    conversation: np.ndarray  # [rows] index into ids
    turn_index: np.ndarray  # [rows] t - 1
    length: np.ndarray  # [rows] the conversation's number of turns
    outcome: np.ndarray  # [rows]
    text: list[str]  # [rows] turns 1..t joined
    embedding_means: np.ndarray  # [rows, 3 D] means over turns 1..t: all, customer, rep (0 where none)


def load_prefixes(config: BaselineConfig) -> tuple[Prefixes, list[str], list[str | None]]:
    arrays = TurnArrays.open(config.arrays)
    texts = {conv.id: [turn.text for turn in conv.turns] for conv in read_conversations(config.data)}
    rows: dict[str, list] = {k: [] for k in ("conversation", "turn_index", "length", "outcome", "text", "means")}
    ids: list[str] = []
    industries: list[str | None] = []
    for p in range(len(arrays)):
        part = arrays.part(p)
        names = part.industry_names()
        for c, conv_id in enumerate(part.ids):
            if part.outcome[c] < 0:
                continue  # unlabelled
            if conv_id not in texts:
                raise SystemExit(f"{config.data}: conversation {conv_id!r} of {config.arrays} is missing")
            start, end = int(part.offsets[c]), int(part.offsets[c + 1])
            turns = texts[conv_id]
            if len(turns) != end - start:
                raise SystemExit(f"{config.data}: conversation {conv_id!r} has {len(turns)} turns, "
                                 f"{config.arrays} has {end - start}")
            embeddings = np.asarray(part.embeddings[start:end], np.float32)
            customer = np.asarray(part.is_customer[start:end], bool)[:, None]
            count = np.arange(1, end - start + 1)[:, None]
            sums = [np.cumsum(embeddings, 0), np.cumsum(embeddings * customer, 0), np.cumsum(embeddings * ~customer, 0)]
            counts = [count, np.cumsum(customer, 0), np.cumsum(~customer, 0)]
            means = np.concatenate([s / np.maximum(n, 1) for s, n in zip(sums, counts)], axis=1)
            index = len(ids)
            ids.append(conv_id)
            industries.append(names[c])
            for t in range(end - start):
                rows["conversation"].append(index)
                rows["turn_index"].append(t)
                rows["length"].append(end - start)
                rows["outcome"].append(int(part.outcome[c]))
                rows["text"].append(" ".join(turns[:t + 1]))
                rows["means"].append(means[t])
    as_int = lambda key: np.asarray(rows[key], np.int32)  # noqa: E731
    prefixes = Prefixes(as_int("conversation"), as_int("turn_index"), as_int("length"), as_int("outcome"),
                        rows["text"], np.stack(rows["means"]))
    return prefixes, ids, industries


def fit_predict(name: str, prefixes: Prefixes, train: np.ndarray, folds: int) -> tuple[np.ndarray, float]:
    """Held-out probabilities ``[rows]`` (NaN on training rows) and the chosen C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "tfidf":
        # Vocabulary and idf from the training conversations' full texts (each counted once).
        last = train & (prefixes.turn_index == prefixes.length - 1)
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        vectorizer.fit([prefixes.text[i] for i in np.flatnonzero(last)])
        features = vectorizer.transform(prefixes.text)
        scale = None
    else:
        features = prefixes.embedding_means
        scale = StandardScaler()
    splits = list(GroupKFold(folds).split(np.zeros(int(train.sum())), groups=prefixes.conversation[train]))
    model = LogisticRegressionCV(Cs=C_GRID, cv=splits, scoring="neg_log_loss", max_iter=5000)
    pipeline = make_pipeline(scale, model) if scale is not None else model
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults, not about this fit
        warnings.simplefilter("ignore", FutureWarning)
        pipeline.fit(features[np.flatnonzero(train)], prefixes.outcome[train])
    probs = np.full(len(prefixes.outcome), np.nan, np.float32)
    held_out = np.flatnonzero(~train)
    probs[held_out] = pipeline.predict_proba(features[held_out])[:, 1]
    chosen = float(np.ravel(model.C_)[0])  # an array or a float, by scikit-learn version
    if chosen in (C_GRID[0], C_GRID[-1]):
        print(f"warning: {name}: the chosen C = {chosen:g} is at the edge of the grid searched")
    return probs, chosen


def main(config: BaselineConfig) -> None:
    if config.model is not None:
        from salesrl_jax.run.trained_model import TrainedModel

        data = TrainedModel.load(config.model).config.data
        config = dataclasses.replace(config, valid_fraction=data.valid_fraction, split_seed=data.split_seed)
        print(f"the split of {config.model}: valid_fraction {data.valid_fraction}, split_seed {data.split_seed}")
    prefixes, ids, industries = load_prefixes(config)
    held_out_conversations = validation_mask(ids, config.valid_fraction, config.split_seed)
    if not held_out_conversations.any() or held_out_conversations.all():
        raise SystemExit(f"--valid-fraction {config.valid_fraction} leaves no training or no held-out conversations")
    train = ~held_out_conversations[prefixes.conversation]
    print(f"{len(ids)} labelled conversations, {int(held_out_conversations.sum())} held out; "
          f"{int(train.sum())} training prefixes, {int((~train).sum())} held-out prefixes")
    for name in ("tfidf", "embedding-mean"):
        probs, chosen_c = fit_predict(name, prefixes, train, config.folds)
        rows = ~train
        # TurnPredictions index the predicted conversations only, like `salesrl evaluate --split valid`.
        kept, conversation = np.unique(prefixes.conversation[rows], return_inverse=True)
        pred = TurnPredictions(prediction=probs[rows], uncertainty=np.zeros(int(rows.sum()), np.float32),
                               oracle=np.full(int(rows.sum()), np.nan, np.float32), outcome=prefixes.outcome[rows],
                               turn_index=prefixes.turn_index[rows], length=prefixes.length[rows],
                               conversation=conversation.astype(np.int32), ids=[ids[c] for c in kept],
                               industries=[industries[c] for c in kept])
        tables = evaluation_tables(pred)
        path = write_report(pred, config.out / name, f"{name} logistic regression (C = {chosen_c:g} by grouped CV)",
                            tables=tables)
        print(f"\n## {name} (C = {chosen_c:g}, chosen by {config.folds}-fold CV on the training conversations): {path}")
        print(format_tables(tables))


if __name__ == "__main__":
    main(help_text.cli(BaselineConfig))

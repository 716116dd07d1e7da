"""Does a learned n-gram embedding bag (fastText-style), trained end to end, beat TF-IDF on real dialogues?

A measurement, not a library path: the lever of issue 12 section 2, probed before it is built into the
arrays, the encoder, the scorer and int8. On the same stratified folds as `salesrl crossval` (seed 0):

* each turn is a bag of hashed word 1-2-grams (scikit-learn's token pattern, CRC32 into ``buckets``),
  weighted ``(1 + log tf) * idf`` and L2-normalised; the idf is fitted on the training conversations
  of the fold only, and an n-gram seen in fewer than ``min_df`` of them weighs nothing (so an n-gram that
  only held-out dialogues contain has no weight);
* the turn vector is a learned embedding bag ``v_t = sum_j w_tj E[id_tj]`` (``E: [buckets, dim]``);
* the state at turn t reads ``v_t``, recency-weighted means of ``v_1..v_t`` (half-lives 1, 4, 16 turns
  and a plain mean) over all turns and over the customer's, ``log(1 + t)`` and the speaker, through one
  hidden layer plus a linear skip: turns 1..t only;
* AdamW on the per-turn log loss of every prefix, best epoch by the log loss of an inner 20% split of the
  training conversations (never the held-out fold).

It prints AUC by turn index (conversations still running), at the last turn and the mean over turns
4, 6, 8, 12, beside the four TF-IDF variants of `salesrl_jax.baselines` fitted on the same folds.
Results and commands: docs/benchmarks.md, "A learned n-gram bag". Needs scikit-learn (``.[baselines]``).
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from salesrl_jax import help_text, metrics
from salesrl_jax.arrays.split import stratified_folds
from salesrl_jax.baselines.fit import TFIDF_METHODS
from salesrl_jax.data.readers import read_conversations

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
DECAYS = (0.5, 0.5 ** 0.25, 0.5 ** (1 / 16), 1.0)  # half-lives 1, 4, 16 turns, and the plain mean
POINTS = (2, 3, 4, 6, 8, 12)
TFIDF = TFIDF_METHODS  # the four variants, named as crossval names them


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    data: Path
    """A converted archive (`salesrl convert persuasionforgood|casino`)."""
    dim: int = 16
    """Width of the learned embedding bag."""
    buckets: int = 2 ** 18
    """Hash buckets of the word 1-2-grams."""
    min_df: int = 2
    """An n-gram in fewer training conversations than this weighs nothing (as the TF-IDF baselines)."""
    wide: bool = False
    """Add a wide linear term over the n-grams (wide & deep): the recency-pooled per-turn scores ``u . x_t`` of a
    weight ``u: [buckets]`` (an L2-regularised logistic regression on the pooled TF-IDF, trained jointly)."""
    learning_rate: float = 3e-4
    wide_learning_rate: float = 1e-2
    """Adam step of the wide weights (a logistic regression needs larger weights than the deep part's step reaches)."""
    wide_l2: float = 1e-4
    """L2 penalty on the wide weights (per turn of the loss)."""
    weight_decay: float = 0.1
    epochs: int = 25
    batch_conversations: int = 32
    folds: int = 5
    seed: int = 0
    baselines: bool = True
    """Fit the TF-IDF family on the same folds (needs scikit-learn)."""


@dataclasses.dataclass
class Dialogues:
    """Padded ``[conversations, T, K]`` n-gram bags and per-turn fields."""

    ids: list[str]
    outcome: np.ndarray  # [n]
    lengths: np.ndarray  # [n]
    gram_ids: np.ndarray  # [n, T, K] int32, 0 = padding
    gram_counts: np.ndarray  # [n, T, K] float32
    customer: np.ndarray  # [n, T] float32
    valid: np.ndarray  # [n, T] bool
    texts: list[list[str]]
    speakers: list[list[str]]


def hashed_grams(text: str, buckets: int) -> np.ndarray:
    """Bucket ids (1..buckets-1; 0 is padding) of the word unigrams and bigrams of ``text``."""
    words = _TOKEN.findall(text.lower())
    grams = words + [a + " " + b for a, b in zip(words, words[1:])]
    return np.array([zlib.crc32(g.encode()) % (buckets - 1) + 1 for g in grams], dtype=np.int64)


def load_dialogues(path: Path, buckets: int) -> Dialogues:
    conversations = [c for c in read_conversations(path) if c.outcome is not None]
    bags = [[np.unique(hashed_grams(t.text, buckets), return_counts=True) for t in c.turns] for c in conversations]
    n, t_max = len(conversations), max(c.num_turns for c in conversations)
    k_max = max(max(len(ids) for ids, _ in bag) for bag in bags)
    gram_ids = np.zeros((n, t_max, k_max), np.int32)
    gram_counts = np.zeros((n, t_max, k_max), np.float32)
    customer = np.zeros((n, t_max), np.float32)
    valid = np.zeros((n, t_max), bool)
    for c, (conv, bag) in enumerate(zip(conversations, bags)):
        for t, (ids, counts) in enumerate(bag):
            gram_ids[c, t, :len(ids)] = ids
            gram_counts[c, t, :len(ids)] = counts
            customer[c, t] = conv.turns[t].speaker == "customer"
        valid[c, :conv.num_turns] = True
    return Dialogues([c.id for c in conversations], np.array([c.outcome for c in conversations]),
                     np.array([c.num_turns for c in conversations]), gram_ids, gram_counts, customer, valid,
                     [[t.text for t in c.turns] for c in conversations],
                     [[t.speaker for t in c.turns] for c in conversations])


def fit_idf(gram_ids: np.ndarray, buckets: int, min_df: int) -> np.ndarray:
    """``idf[b] = log((1 + n) / (1 + df_b)) + 1`` over the ``n`` conversations given (scikit-learn's smooth idf),
    0 where ``df_b < min_df``: an n-gram the training conversations do not show (often enough) has no weight."""
    df = np.zeros(buckets)
    for conversation in gram_ids:
        df[np.unique(conversation[conversation > 0])] += 1
    idf = np.log((1 + len(gram_ids)) / (1 + df)) + 1
    idf[df < min_df] = 0.0
    idf[0] = 0.0
    return idf.astype(np.float32)


def init_params(key, config: ProbeConfig):
    width = config.dim * (1 + 2 * len(DECAYS)) + 2
    k1, k2, k3 = jax.random.split(key, 3)
    return {"bag": jax.random.normal(k1, (config.buckets, config.dim)) * 0.01,
            "hidden": jax.random.normal(k2, (width, 64)) / np.sqrt(width), "hidden_bias": jnp.zeros(64),
            "out": jax.random.normal(k3, (64,)) / 8, "out_bias": jnp.zeros(()), "skip": jnp.zeros(width),
            "wide": jnp.zeros(config.buckets if config.wide else 1), "wide_mix": jnp.zeros(2 * len(DECAYS))}


def logits(params, idf, gram_ids, gram_counts, customer, valid, dropout_key=None):
    """``[n, T]`` logits; turn t reads turns 1..t only (lower-triangular recency weights)."""
    steps = gram_ids.shape[1]
    weight = jnp.where(gram_counts > 0, (1 + jnp.log(jnp.maximum(gram_counts, 1))) * idf[gram_ids], 0.0)
    weight = weight / jnp.maximum(jnp.linalg.norm(weight, axis=-1, keepdims=True), 1e-6)
    turn = jnp.einsum("ntk,ntkh->nth", weight, params["bag"][gram_ids])
    lag = jnp.arange(steps)[:, None] - jnp.arange(steps)[None, :]
    recency = jnp.where(lag >= 0, jnp.asarray(DECAYS)[:, None, None] ** jnp.maximum(lag, 0), 0.0)  # [R, T, T]
    parts = [turn]
    mask = valid.astype(jnp.float32)
    for group in (mask, mask * customer):
        total = jnp.einsum("rts,ns,nsh->ntrh", recency, group, turn)
        norm = jnp.einsum("rts,ns->ntr", recency, group)[..., None]
        parts.append((total / jnp.maximum(norm, 1e-6)).reshape(turn.shape[:2] + (-1,)))
    position = jnp.broadcast_to(jnp.log1p(jnp.arange(1, steps + 1, dtype=jnp.float32)), customer.shape)
    x = jnp.concatenate(parts + [position[..., None], customer[..., None]], axis=-1)
    hidden = jax.nn.gelu(x @ params["hidden"] + params["hidden_bias"])
    if dropout_key is not None:
        hidden = hidden * jax.random.bernoulli(dropout_key, 0.7, hidden.shape) / 0.7
    logit = hidden @ params["out"] + params["out_bias"] + x @ params["skip"]
    if params["wide"].shape[0] > 1:  # wide & deep: pooled per-turn linear scores of the TF-IDF rows
        score = jnp.einsum("ntk,ntk->nt", weight, params["wide"][gram_ids])[..., None]  # [n, T, 1]
        pools = []
        for group in (mask, mask * customer):
            total = jnp.einsum("rts,ns,nsh->ntrh", recency, group, score)[..., 0]
            norm = jnp.einsum("rts,ns->ntr", recency, group)
            pools.append(total / jnp.maximum(norm, 1e-6))
        pooled = jnp.concatenate(pools, axis=-1)  # [n, T, 2R]; the plain mean of all turns enters with weight 1
        logit = logit + pooled[..., len(DECAYS) - 1] + pooled @ params["wide_mix"]
    return logit


def train_fold(data: Dialogues, train: np.ndarray, config: ProbeConfig):
    """Parameters (best inner-split epoch) and the idf, fitted on conversations ``train`` only."""
    rng = np.random.default_rng(config.seed)
    inner = rng.random(len(train)) < 0.2
    fit, check = train[~inner], train[inner]
    idf = jnp.asarray(fit_idf(data.gram_ids[fit], config.buckets, config.min_df))
    optimizer = optax.multi_transform(
        {"deep": optax.adamw(config.learning_rate, weight_decay=config.weight_decay),
         "wide": optax.adam(config.wide_learning_rate)},
        lambda params: {name: "wide" if name.startswith("wide") else "deep" for name in params})

    def loss(params, rows, key):
        logit = logits(params, idf, *rows[:4], dropout_key=key)
        per_turn = optax.sigmoid_binary_cross_entropy(logit, jnp.broadcast_to(rows[4][:, None], logit.shape))
        return (per_turn * rows[3]).sum() / rows[3].sum() + config.wide_l2 * jnp.sum(params["wide"] ** 2)

    @jax.jit
    def step(params, state, rows, key):
        grads = jax.grad(loss)(params, rows, key)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = init_params(jax.random.PRNGKey(config.seed), config)
    state, key = optimizer.init(params), jax.random.PRNGKey(config.seed + 1)
    best = (np.inf, params)
    for _ in range(config.epochs):
        order = rng.permutation(fit)
        for start in range(0, len(order), config.batch_conversations):
            rows = order[start:start + config.batch_conversations]
            key, sub = jax.random.split(key)
            params, state = step(params, state, _rows(data, rows), sub)
        predicted = predict(params, idf, data, check)
        score = metrics.log_loss(predicted[data.valid[check]], np.repeat(data.outcome[check], data.lengths[check]))
        if score < best[0]:
            best = (score, params)
    return best[1], idf


def _rows(data: Dialogues, rows: np.ndarray):
    return (data.gram_ids[rows], data.gram_counts[rows], data.customer[rows], data.valid[rows],
            data.outcome[rows].astype(np.float32))


_predict = jax.jit(lambda params, idf, *rows: jax.nn.sigmoid(logits(params, idf, *rows)))


def predict(params, idf, data: Dialogues, rows: np.ndarray, block: int = 64) -> np.ndarray:
    """``[len(rows), T]`` probabilities."""
    return np.concatenate([np.asarray(_predict(params, idf, *_rows(data, rows[s:s + block])[:4]))
                           for s in range(0, len(rows), block)])


def auc_table(turn_index: np.ndarray, last: np.ndarray, outcome: np.ndarray, probability: np.ndarray) -> dict:
    """AUC by turn index (1-based, conversations still running), at the last turn, and the mean over 4-12."""
    table = {k: metrics.roc_auc(probability[turn_index == k - 1], outcome[turn_index == k - 1]) for k in POINTS}
    table["last"] = metrics.roc_auc(probability[last], outcome[last])
    table["mean_4_12"] = float(np.mean([table[k] for k in (4, 6, 8, 12)]))
    return table


def probe(config: ProbeConfig) -> dict[str, dict]:
    data = load_dialogues(config.data, config.buckets)
    fold = stratified_folds(data.ids, data.outcome, config.folds, config.seed)
    probability = np.zeros(data.valid.shape, np.float32)
    for f in range(config.folds):
        params, idf = train_fold(data, np.flatnonzero(fold != f), config)
        probability[fold == f] = predict(params, idf, data, np.flatnonzero(fold == f))
    conversation, turn_index = np.nonzero(data.valid)
    outcome, last = data.outcome[conversation], turn_index == data.lengths[conversation] - 1
    tables = {"ngram_bag": auc_table(turn_index, last, outcome, probability[conversation, turn_index])}
    if config.baselines:
        from salesrl_jax.baselines.fit import fit_baselines
        from salesrl_jax.baselines.prefixes import PrefixTable

        rows = len(conversation)
        table = PrefixTable(data.ids, data.texts, data.speakers, conversation.astype(np.int32),
                            turn_index.astype(np.int32), data.lengths[conversation].astype(np.int32),
                            outcome.astype(np.int8), np.zeros((rows, 1), np.float32), np.zeros((rows, 1), np.float32))
        pooled = {m: np.zeros(rows) for m in TFIDF}
        for f in range(config.folds):
            fitted = fit_baselines(table, np.flatnonzero(fold != f), np.flatnonzero(fold == f), methods=TFIDF,
                                   seed=config.seed)
            for m, p in fitted.probs.items():
                pooled[m][fitted.rows] = p
        tables.update({m: auc_table(turn_index, last, outcome, p) for m, p in pooled.items()})
    return tables


def main() -> None:
    config = help_text.cli(ProbeConfig)
    tables = probe(config)
    columns = [*POINTS, "last", "mean_4_12"]
    print("| method | " + " | ".join(f"turn {c}" if isinstance(c, int) else c for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, table in tables.items():
        print(f"| {name} | " + " | ".join(f"{table[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()

"""The model's structure: every field is static (changing one changes the compiled program)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Structure of the SalesRLAgent model. Ablations switch components off here."""

    turn_dim: int = 128
    """Width of a turn's projected embedding (the history pools live in this space)."""
    bag_dim: int = 16
    """Width of the n-gram embedding bag, and so of the turn vector and its history pools, when the text is sparse
    n-grams (embedder.kind ngrams; turn_dim is then unused). Its 2^18 rows are the model's largest parameter and
    every optimizer step updates all of them: 16 trains about 7x faster than 128 (measured)."""
    bag_basis: Literal["random", "lsa"] = "random"
    """How the n-gram bag's kernel starts (sparse n-gram text). random: small normal rows, learned from the labels
    alone. lsa: the top ``bag_dim`` right singular vectors of the training split's row-normalised tf-idf turn matrix
    (latent semantic analysis, salesrl_jax.train.bag_basis): the turn vector starts as the turn's coordinates on the
    directions in which the training turns' words vary most, found without labels. Meant with bag_trainable off."""
    bag_trainable: bool = True
    """Train the n-gram bag's kernel with the rest of the model. False keeps it at its starting basis: no gradient
    reaches its 2^18 x bag_dim entries and the optimizer neither moves, decays nor keeps moments for them.
    Measured with bag_basis lsa on the two real development corpora (3 fold assignments, docs/benchmarks.md, session
    36): pretraining runs 3.3x faster; CaSiNo is level at every turn, PersuasionForGood 0.010-0.012 AUC lower
    at turns 2-3 and within 0.003 from turn 4 on. Not the default for that reason; an option for faster runs."""
    wide_text: bool = True
    """With sparse n-gram text: a wide term beside the deep path, a whole-dialogue linear model on the turns' raw
    tf-idf vectors (the customer's turns with weights of their own besides) read on the running mean of turns 1..t
    with a gain fitted on its out-of-fold logits, whose logit the heads add to theirs (salesrl_jax.models.bag);
    fitted on every labelled conversation before the deep model (cross-fitted: the validation split reads each
    conversation with weights fitted without it), which trains beside its out-of-fold logits
    (salesrl_jax.train.wide_fit). Measured by salesrl crossval, last-turn AUC: PersuasionForGood 0.719 (0.666
    without), CaSiNo 0.656 (0.617). No effect on dense embeddings. Runs saved before it existed load with it
    off."""
    history: Literal["weighted", "mean", "none"] = "weighted"
    """How past turns enter the state. weighted: the paper's recency x learned-importance weighted
    average; mean: plain running average; none: only the current turn."""
    decay_half_lives: tuple[float, ...] = (1.0, 4.0, 16.0)
    """Initial recency half-lives, in turns, of the weighted history pools (learned afterwards)."""
    learned_importance: bool = True
    """Weight each past turn by a learned importance score (weighted history only)."""
    speaker_pools: bool = True
    """Keep a separate history pool of the customer's turns beside the pool of all turns."""
    pool_features: bool = True
    """The history pools average each turn's features with its text vector, so the state after a rep's turn still
    holds the customer's last turns' features (sentiment, cues, questions, length), not only the current turn's.
    Measured on the 100k/20k simulator benchmark (docs/benchmarks.md, session 20): last-turn AUC 0.865 -> 0.867
    (0.007 from the oracle) and +0.006-0.019 at turns 2-14; the n-gram path after the rep's turns +0.06 (turn 3
    0.600 -> 0.665). Costs 4-12% of inference and PPO throughput at 3072-d. Runs saved before it existed load with it
    off."""
    use_text: bool = True
    """Read the turn's text (its embedding, or its n-gram bag). False: a features-only model (the paper's "minus
    embeddings" row): the turn vector is projected from the turn features instead, and the text is never read."""
    use_features: bool = True
    """Feed the turn features (speaking time, questions, sentiment, cues) to the state."""
    use_engagement: bool = True
    """Feed the customer-engagement features (response time, length ratio, questions asked, cue counts)."""
    use_position: bool = True
    """Feed the turn position and the speaker."""
    feed_prediction: bool = False
    """Feed the previous turn's prediction into the state (the agent sees what it said before)."""
    state_dim: int = 128
    """Width of the encoder state every head reads."""
    hidden_dim: int = 256
    """Width of the encoder's hidden layer."""
    head_hidden: int = 64
    """Hidden width of the value and ensemble heads."""
    ensemble_size: int = 5
    """Number of ensemble probability heads (their disagreement is the uncertainty signal); 0 for none."""
    min_concentration: float = 2.0
    """Lower bound of the policy's Beta concentration alpha + beta (keeps the policy unimodal)."""

    def __post_init__(self) -> None:
        if self.history == "weighted" and not self.decay_half_lives:
            raise ValueError("model.decay_half_lives must list at least one half-life for weighted history")
        if any(h <= 0 for h in self.decay_half_lives):
            raise ValueError(f"model.decay_half_lives must be positive, got {self.decay_half_lives}")
        for name in ("turn_dim", "bag_dim", "state_dim", "hidden_dim", "head_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.ensemble_size < 0:
            raise ValueError(f"model.ensemble_size must be >= 0, got {self.ensemble_size}")

"""Typed, documented configuration of the sales-conversation simulator."""

from __future__ import annotations

import dataclasses

from salesrl_jax.sim.industries import INDUSTRY_NAMES


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. Defaults match the paper's data: 15 industries, 3-27 turns, median ~8, ~44% converted."""

    num_conversations: int = 20_000
    """How many conversations to generate."""
    seed: int = 0
    """Same seed and shard size, same bytes."""
    industries: tuple[str, ...] = INDUSTRY_NAMES
    """Industries to draw conversations from (uniformly)."""
    exclude_industries: tuple[str, ...] = ()
    """Industries held out of this run (generate them separately for out-of-domain tests)."""
    industry_dynamics: float = 0.0
    """How much each industry's buyers differ in how they answer the rep: the standard deviation of the
    industry's own offsets to the customer's response logits (`industry_dynamics` in salesrl_jax/sim/dynamics.py).
    0, the default: industries differ in their population, prices and words, and share the dynamics. 0.5-2: what
    works differs by industry too, so a model trained on some industries errs more on the others (docs/benchmarks.md,
    session 25)."""
    target_conversion_rate: float = 0.44
    """Expected share of converted conversations; the outcome bias is calibrated to it exactly (in expectation)."""
    max_turns: int = 27
    """Length cap in turns (the cap is reached after (max_turns - 1) // 2 rep/customer exchanges)."""
    pace: float = 1.0
    """> 1 shortens conversations (reps close sooner, customers decide sooner); < 1 lengthens them."""
    wrap_up_prob: float = 0.5
    """Probability that the rep says a closing line after the customer ends the conversation."""
    noise: float = 0.3
    """Text noise in [0, 1]: fillers, typos, lower-casing."""
    ambiguity: float = 0.2
    """Share of turns rendered with a neutral paraphrase that hides the act."""
    shard_size: int = 50_000
    """Conversations per output shard (part of what fixes the bytes of a seed)."""

    def __post_init__(self) -> None:
        problems = []
        if self.num_conversations < 1:
            problems.append(f"num_conversations must be >= 1, got {self.num_conversations}")
        if self.max_turns < 3:
            problems.append(f"max_turns must be >= 3, got {self.max_turns}")
        if not 0.02 <= self.target_conversion_rate <= 0.98:
            problems.append(f"target_conversion_rate must lie in [0.02, 0.98], got {self.target_conversion_rate}")
        if not 0.0 <= self.industry_dynamics <= 3.0:
            problems.append(f"industry_dynamics must lie in [0, 3], got {self.industry_dynamics}")
        if self.pace <= 0:
            problems.append(f"pace must be > 0, got {self.pace}")
        for name in ("wrap_up_prob", "noise", "ambiguity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.shard_size < 1:
            problems.append(f"shard_size must be >= 1, got {self.shard_size}")
        unknown = sorted((set(self.industries) | set(self.exclude_industries)) - set(INDUSTRY_NAMES))
        if unknown:
            problems.append(f"unknown industries {unknown}; known: {', '.join(INDUSTRY_NAMES)}")
        if not self.included_industries and not unknown:
            problems.append("no industries left after exclude_industries")
        if problems:
            raise ValueError("invalid simulator config: " + "; ".join(problems))

    @property
    def included_industries(self) -> tuple[str, ...]:
        return tuple(name for name in self.industries if name not in set(self.exclude_industries))

    @property
    def max_exchanges(self) -> int:
        return (self.max_turns - 1) // 2

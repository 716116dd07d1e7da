"""The typed, documented configuration of a guidance training run (``salesrl guidance train --help``).

A config file (``configs/guidance/*.py``) defines ``get_config() -> GuidanceConfig``; a variant imports the default
and overrides fields (``dataclasses.replace``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

from salesrl_jax.io.python_file import call_in_file
from salesrl_jax.sim.config import SimulatorConfig


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """PPO for the rep's next act in the simulator environment (`salesrl_jax.env`), PureJaxRL's shape: the
    whole run one jitted function, seeds vmapped."""

    name: str = "default"
    """A label for reports."""
    seeds: tuple[int, ...] = (0,)
    """Seeds trained together in one program (vmapped); the first is the one saved as the policy."""
    simulator: SimulatorConfig = SimulatorConfig()
    """The customers: industries, length cap, pace (the environment draws them as the simulator does)."""
    observation: Literal["acts", "model"] = "acts"
    """What the policy reads (`salesrl_jax.guidance.views`). acts: the dialogue acts so far and the position.
    model: the encoder state of the conversion model at ``model``, computed from rendered, embedded utterances:
    exactly what a `Scorer` session holds, so the policy can guide live conversations (`salesrl score --guidance`)."""
    model: str | None = None
    """Run directory of `salesrl train` whose encoder state the policy reads (observation model)."""
    bank_variants: int = 8
    """Rendered utterances per act (per industry, and per interest level for the customer's) in the view's bank."""
    time_cost: float = 0.0
    """Reward subtracted per exchange played: > 0 asks for shorter calls (the sale is worth 1)."""
    reward: Literal["expected", "sale"] = "expected"
    """sale: the drawn outcome at the end; expected: its probability given how the call ended (the same
    expected return, so the same optimum, with less variance)."""
    num_envs: int = 512
    """Conversations stepped in parallel."""
    num_steps: int = 16
    """Exchanges per conversation slot in each rollout (finished conversations are replaced at once)."""
    total_steps: int = 2_000_000
    """Environment steps (exchanges) per seed."""
    update_epochs: int = 4
    """Passes of clipped-surrogate updates over each rollout."""
    num_minibatches: int = 8
    """Minibatches each pass splits a rollout's num_envs x num_steps transitions into."""
    learning_rate: float = 1e-3
    """Adam's step size at the start (see anneal_lr)."""
    anneal_lr: bool = True
    """Linear decay of the learning rate to 0 over the run."""
    gamma: float = 1.0
    """Episodic and undiscounted: the return is the sale (minus the time cost)."""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation: 0 uses the critic's one-step target, 1 the whole return."""
    clip_eps: float = 0.2
    """epsilon of PPO's clipped surrogate: an action's probability ratio is clipped to [1 - eps, 1 + eps] (and the
    critic's value moves at most eps from the rollout's)."""
    entropy_coef: float = 0.01
    """Weight of the policy's entropy bonus in the loss (keeps it exploring)."""
    value_coef: float = 0.5
    """Weight in the loss of the critics' squared errors: the state value's and the taken act's estimate's (the
    per-act estimates the guidance reports)."""
    max_grad_norm: float = 0.5
    """Global gradient norm each update is clipped to."""
    hidden: int = 64
    """Width of the actor's and the critic's two hidden layers (64 and 128 reach the same conversion, 0.565 after
    2M steps; 64 runs PPO at 1.6x the rate: 146k against 90k steps/s on 2 cores)."""
    eval_conversations: int = 100_000
    """Conversations of the A/B test against the scripted rep after training (common random numbers)."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("num_envs", "num_steps", "total_steps", "update_epochs", "num_minibatches", "hidden",
                     "eval_conversations", "bank_variants"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_envs * self.num_steps % self.num_minibatches:
            problems.append(f"num_envs x num_steps ({self.num_envs * self.num_steps}) must be a multiple of "
                            f"num_minibatches ({self.num_minibatches})")
        if self.observation == "model" and not self.model:
            problems.append("observation model needs model: the run directory of a trained conversion model")
        if self.time_cost < 0:
            problems.append(f"time_cost must be >= 0, got {self.time_cost}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds must be distinct and at least one, got {self.seeds}")
        if problems:
            raise ValueError("invalid guidance config: " + "; ".join(problems))

    @property
    def num_updates(self) -> int:
        return max(self.total_steps // (self.num_envs * self.num_steps), 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "GuidanceConfig":
        import dacite

        return dacite.from_dict(cls, json.loads(text), config=dacite.Config(cast=[tuple], strict=True))


def load_guidance_config(path: str | Path | None) -> GuidanceConfig:
    """``get_config()`` of a guidance config file (the default when ``path`` is None); problems name the file."""
    if path is None:
        return GuidanceConfig()
    return call_in_file(path, "get_config", GuidanceConfig, "guidance config file")

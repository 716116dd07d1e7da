"""Where a training run is: the typed cursor saved in every checkpoint's meta, so a kill resumes exactly."""

from __future__ import annotations

import dataclasses
from typing import Literal

Phase = Literal["pretrain", "ppo", "done"]


@dataclasses.dataclass(frozen=True)
class RunPosition:
    """The next unit of work. Everything a run does is a pure function of the config and this cursor."""

    phase: Phase = "pretrain"
    epoch: int = 0  # pretraining: the epoch under way
    chunk: int = 0  # pretraining: the next chunk of that epoch
    update: int = 0  # PPO: the next update
    seq: int = 0  # units done in the whole run: the metrics log's line key (lines past it are dropped on resume)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "RunPosition":
        return cls(**raw)

    def advance(self, **changes) -> "RunPosition":
        """One more unit done, with ``changes`` to the cursor."""
        return dataclasses.replace(self, seq=self.seq + 1, **changes)

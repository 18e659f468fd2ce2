"""The rollout record and its event log.

A rollout is plain, immutable data: the spec it was started with, where it stands, and the
counters its gates have run up. Everything that ever happened to it is an append-only event
with the values the decision was made on, so "why did it do that?" always has an answer.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from canary.events import PauseCause, RollbackCause
from config.spec import RolloutDocument, RolloutSpec, Step


class Phase(StrEnum):
    PENDING = "pending"
    SHIFTING = "shifting"
    BAKING = "baking"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    PROMOTING = "promoting"
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def live(self) -> bool:
        return self not in TERMINAL


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})
LIVE = frozenset(Phase) - TERMINAL


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetState(Frozen):
    """One target of the rollout as the engine last verified it."""

    key: str
    kind: str
    stable: str | None = None  # recorded when the rollout starts
    weight: float = 0.0  # the canary weight last read back
    restored: bool = False  # rollback verified on this target


class Counters(Frozen):
    failures: int = 0  # whole rollout
    inconclusive: int = 0  # this step; reset on resume
    consecutive_errors: int = 0  # reset by any evaluation without an error


class HookState(Frozen):
    """Where the rollout's hooks stand (spec.hooks)."""

    passed: tuple[str, ...] = ()  # answered PASS at their point (this step's, for step hooks)
    ran_at: datetime | None = None  # the check time this step's hooks last ran for
    errors: int = 0  # hook runs in a row with an ERROR; reset by a run without one


class Rollout(Frozen):
    id: str
    document: RolloutDocument
    phase: Phase = Phase.PENDING
    step: int = 0
    weight: float = 0.0  # canary weight verified on every target
    targets: tuple[TargetState, ...]
    bake_elapsed: float = 0.0  # seconds of the current step's bake watched so far
    watching_since: datetime | None = None  # start of the current watched stretch
    next_check_at: datetime | None = None
    retry_at: datetime | None = None  # the failed action is tried again then
    attempts: int = 0  # attempts of the current action that failed in a row
    failing_since: datetime | None = None  # first of those failures: the retry budget's start
    counters: Counters = Field(default_factory=Counters)
    hooks: HookState = Field(default_factory=HookState)
    paused_reason: str | None = None
    paused_cause: PauseCause | None = None
    reason: str | None = None  # why it is rolling back, or why it ended
    cause: RollbackCause | None = None  # why it is rolling back (or rolled back), as data
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    idempotency_key: str | None = None
    version: int = 0  # optimistic lock, bumped by the store on every save

    @property
    def spec(self) -> RolloutSpec:
        return self.document.spec

    @property
    def name(self) -> str:
        return self.document.metadata.name

    @property
    def current_step(self) -> Step:
        return self.spec.steps[min(self.step, len(self.spec.steps) - 1)]

    @property
    def last_step(self) -> bool:
        return self.step >= len(self.spec.steps) - 1

    @property
    def started(self) -> bool:
        return all(t.stable is not None for t in self.targets)

    def bake_remaining(self, now: datetime) -> float:
        watched = self.bake_elapsed
        if self.watching_since is not None:
            watched += (now - self.watching_since).total_seconds()
        return max(0.0, self.current_step.bake - watched)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "phase": self.phase.value,
            "step": self.step + 1,
            "steps": len(self.spec.steps),
            "weight": self.weight,
            "reason": self.reason or self.paused_reason,
        }


class NewEvent(Frozen):
    """An event about to be appended; the store gives it its sequence number."""

    kind: str  # an EventKind (a str, so the store needs no vocabulary of its own)
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = None
    # The step (1-based) and weight the event speaks of, when not those of the saved record
    # (an evaluation that completes a step belongs to that step, not the next).
    step: int | None = None
    weight: float | None = None


class Event(Frozen):
    rollout_id: str
    seq: int
    at: datetime
    kind: str
    step: int  # 1-based, as people count
    weight: float
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = None


def new_rollout_id(now: datetime) -> str:
    """Sortable by creation time (milliseconds), unique by 40 random bits: 22 hex digits."""
    return f"{int(now.timestamp() * 1000):012x}{secrets.token_hex(5)}"

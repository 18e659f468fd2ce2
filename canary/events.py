"""The vocabulary of the record: event kinds, causes and action errors, as data.

Metrics, notifiers, the API and the CLI read why something happened from these values,
never from a message: a message is worded for people and may change, these may not. The
enum values are the strings stored in events since the first release, so a store written
before them reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from strategies.base import ConflictError, StrategyError, TemporaryError


class EventKind(StrEnum):
    ROLLOUT_CREATED = "rollout.created"
    ROLLOUT_STARTED = "rollout.started"
    ROLLOUT_FAILED = "rollout.failed"  # preflight refused: nothing was changed
    ROLLOUT_PAUSED = "rollout.paused"
    ROLLOUT_RESUMED = "rollout.resumed"
    ROLLOUT_SUCCEEDED = "rollout.succeeded"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back"
    PREFLIGHT_FAILED = "preflight.failed"  # one attempt; retried
    STEP_STARTED = "step.started"
    STEP_AWAITING_APPROVAL = "step.awaiting_approval"
    BAKE_STARTED = "bake.started"
    BAKE_EXTENDED = "bake.extended"
    TRAFFIC_SHIFTING = "traffic.shifting"  # write-ahead intent
    TRAFFIC_SHIFTED = "traffic.shifted"
    TRAFFIC_SHIFT_FAILED = "traffic.shift_failed"  # one attempt; retried
    TRAFFIC_DRIFT = "traffic.drift"
    ANALYSIS_EVALUATED = "analysis.evaluated"
    PROMOTION_STARTED = "promotion.started"
    PROMOTION_CALLING = "promotion.calling"  # write-ahead intent
    PROMOTION_FAILED = "promotion.failed"  # one attempt; retried
    ROLLBACK_STARTED = "rollback.started"
    ROLLBACK_CALLING = "rollback.calling"  # write-ahead intent
    ROLLBACK_FAILED = "rollback.failed"  # one attempt; retried until restored
    COMMAND_PROMOTE = "command.promote"
    COMMAND_PAUSE = "command.pause"
    COMMAND_RESUME = "command.resume"
    COMMAND_ABORT = "command.abort"
    DAEMON_RESUMED = "daemon.resumed"
    HOOK_ANSWERED = "hook.answered"  # one hook's answer, with its values

    @property
    def command(self) -> str | None:
        """The command's name for a ``command.*`` kind, else None."""
        return COMMAND_NAMES.get(self)


COMMAND_NAMES = {
    EventKind.COMMAND_PROMOTE: "promote",
    EventKind.COMMAND_PAUSE: "pause",
    EventKind.COMMAND_RESUME: "resume",
    EventKind.COMMAND_ABORT: "abort",
}

INTENTS = frozenset(
    {EventKind.TRAFFIC_SHIFTING, EventKind.PROMOTION_CALLING, EventKind.ROLLBACK_CALLING}
)
"""Write-ahead records, stored before a backend call: noise in a timeline."""

ENDINGS = frozenset(
    {EventKind.ROLLOUT_SUCCEEDED, EventKind.ROLLOUT_ROLLED_BACK, EventKind.ROLLOUT_FAILED}
)


class RollbackCause(StrEnum):
    """Why a rollout rolls back: in ``rollback.started`` data and on the record."""

    GATE_FAILED = "gate_failed"  # failed evaluations beyond failure_limit
    PROVIDER_ERRORS = "provider_errors"  # unmeasurable evaluations beyond the limit
    INCONCLUSIVE = "inconclusive"  # on_inconclusive: rollback
    ABORTED = "aborted"  # a person
    SHIFT_FAILED = "shift_failed"  # refused, or still failing when the retry budget ran out
    PROMOTION_FAILED = "promotion_failed"  # likewise for the promotion


class PauseCause(StrEnum):
    """Why a rollout is paused: in ``rollout.paused`` data and on the record."""

    DRIFT = "drift"  # a split this daemon did not write
    MANUAL = "manual"  # a person
    INCONCLUSIVE = "inconclusive"  # on_inconclusive: pause
    GATE_FAILED = "gate_failed"  # on_failure: pause


class ErrorKind(StrEnum):
    """What a failed backend call asks the engine to do (see strategies/base.py)."""

    TEMPORARY = "temporary"  # try again after the delay
    TIMEOUT = "timeout"  # no answer within backend_timeout: try again
    CONFLICT = "conflict"  # the target kept changing under our own split: try again
    PERMANENT = "permanent"  # a person must fix something first

    @property
    def retryable(self) -> bool:
        return self is not ErrorKind.PERMANENT


@dataclass(frozen=True)
class ActionError:
    """One target's failed backend call, as the machine and the record see it."""

    kind: ErrorKind
    target: str  # the target's key
    message: str
    delay: float = 0.0  # the backend's hint: not before this many seconds

    @classmethod
    def of(cls, target: str, exc: StrategyError) -> ActionError:
        """Classify a strategy's error; one that does not say it is retryable is not."""
        if isinstance(exc, TemporaryError):
            return cls(ErrorKind.TEMPORARY, target, str(exc), exc.delay)
        if isinstance(exc, ConflictError):
            return cls(ErrorKind.CONFLICT, target, str(exc))
        return cls(ErrorKind.PERMANENT, target, str(exc))  # PermanentError, or unclassified

    @classmethod
    def timeout(cls, target: str, seconds: float) -> ActionError:
        return cls(ErrorKind.TIMEOUT, target, f"no answer within {seconds:g}s")

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def to_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "target": self.target,
            "message": self.message,
            "delay": self.delay,
        }

    def __str__(self) -> str:
        return f"{self.target}: {self.message}"

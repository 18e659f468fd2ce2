"""What a target kind declares: the one place a new kind of target is described.

A kind is one module (``strategies/lambda_alias.py`` is the model) ending in a ``KIND =
TargetKind(...)`` line, and one line in ``strategies/registry.py``. From these declarations
come the spec's union of targets, the list of kinds in error messages, the JSON Schema and
the README's table, so none of them is kept by hand.

What a kind needs from the daemon is its own ``clients`` factory (settings in, a client
object out), not a shared catch-all context: the daemon calls each distinct factory once
and hands the same object to every kind and provider that names it (the AWS kinds and the
CloudWatch provider share one ``AwsClients``). Factories must not load an SDK: the SDK is
loaded on the first call that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from config.targets import TargetBase
from strategies.base import Strategy

T = TypeVar("T", bound=TargetBase)
C = TypeVar("C")


@dataclass(frozen=True)
class TargetKind(Generic[T, C]):
    """One kind of target: its spec model, its strategy and what it needs from the daemon."""

    name: str
    """The ``kind`` users write; must equal the ``Literal`` of ``spec.kind``."""
    spec: type[T]
    """The pydantic model of one target of this kind (a ``TargetBase``)."""
    summary: str
    """One line for the README's table of kinds: what it shifts."""
    clients: Callable[[Any], C]
    """Settings -> the client object the builder and ``canonical`` use; made once per daemon."""
    build: Callable[[T, str | None, C], Strategy]
    """(target, stable version recorded at the start or None, clients) -> the strategy."""
    canonical: Callable[[T, C], T]
    """The target in its one canonical form (defaults filled in), so one piece of traffic
    has one key. Raises ``CanonicalError`` when it cannot be made canonical."""


class CanonicalError(ValueError):
    """A target cannot be given its canonical form (e.g. no region anywhere); names the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

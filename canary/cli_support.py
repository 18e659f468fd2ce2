"""What every ``canary`` command shares: its exit codes and how it fails.

Exit codes are part of the interface, since CI branches on them. Users never see a
traceback: a spec error lists its problems, an ``Exit`` prints its message, and anything
unexpected prints one line and how to get the details (``CANARY_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from config.errors import SpecError

# The README's "Exit codes" table lists every refusal under its code (tests/test_readme.py).
EXIT_OK = 0  # success: the rollout succeeded, the command was applied, the spec is valid
EXIT_OUTCOME = 1  # not as asked: rolled back, failed, a 409 (busy target, command refused in
# its phase, quarantined rollout, idempotency key reused), a 500, --expect not met
EXIT_USAGE = 2  # bad usage (a malformed rollout id or --url too), an invalid spec or
# setting, an unknown rollout id (404), a request the daemon could not take (400/413/415/422)
EXIT_TIMEOUT = 3  # `rollout start --wait --timeout` ran out (the rollout goes on)
EXIT_UNREACHABLE = 4  # the daemon (or a backend) could not be reached (502-504 too), or
# refused the token (401/403)

F = TypeVar("F", bound=Callable[..., Any])


class Exit(Exception):
    """Stop with ``code`` after printing ``message`` (and ``details``) to stderr."""

    def __init__(self, code: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []


def stop(code: int, message: str) -> NoReturn:
    raise Exit(code, message)


def friendly(func: F) -> F:
    """Turn spec errors into their problem list and anything unexpected into one line."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpecError as exc:
            click.echo("error: invalid input", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(EXIT_USAGE)
        except Exit as exc:
            click.echo(str(exc), err=True)
            for line in exc.details:
                click.echo(f"  {line}", err=True)
            sys.exit(exc.code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("CANARY_DEBUG"):
                raise
            click.echo(
                f"error: {type(exc).__name__}: {exc} (set CANARY_DEBUG=1 for details)", err=True
            )
            sys.exit(EXIT_OUTCOME)

    return wrapper  # type: ignore[return-value]

"""Real servers for integration tests: find their binaries, pick ports, wait for readiness.

A test that needs a server binary which is not installed is skipped with the reason, so a
laptop without Prometheus can still run the rest. CI installs every binary and sets
``CANARY_REQUIRE_SERVICES=1``: there a missing binary fails the test, so an integration
test can never pass by silently not running.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

REQUIRE_SERVICES = "CANARY_REQUIRE_SERVICES"
T = TypeVar("T")


def require_binary(name: str, extra_dirs: Sequence[str] = ()) -> str:
    """The path of ``name`` (on PATH, or in ``extra_dirs``, which may be globs); else skip.

    Under ``CANARY_REQUIRE_SERVICES=1`` a missing binary fails the test instead.
    """
    found = shutil.which(name)
    for pattern in extra_dirs:
        if found is not None:
            break
        for directory in sorted(glob.glob(pattern), reverse=True):
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                found = candidate
                break
    if found is not None:
        return found
    where = "PATH" + (f" or {', '.join(extra_dirs)}" if extra_dirs else "")
    reason = f"{name} is not installed (not on {where})"
    if os.environ.get(REQUIRE_SERVICES) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_SERVICES}=1 requires it", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.2
) -> T:
    """Poll ``check`` until it returns something other than None (or False); fail after
    ``timeout`` seconds saying what was awaited. Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # not up yet: connection refused, 503, ...
            last = exc
        else:
            if result is not None and result is not False:
                return result
        time.sleep(every)
    suffix = f" (last error: {last})" if last is not None else ""
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}{suffix}", pytrace=False)

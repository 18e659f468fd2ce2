"""Random backend faults in front of moto: throttling, 5xx and timeouts, at a given rate.

``motoproxy.AwsProxy`` answers scripted faults (the next N matching requests); a flaky
cloud API is not scripted. ``FaultProxy`` adds faults drawn at random for a share of the
Lambda API requests (``rate``, 0.3 = 30%), each one of:

* **throttle**: 429 ``TooManyRequestsException`` with ``Retry-After``, as Lambda throttles;
* **5xx**: 500 ``ServiceException``, 502 or 503, shaped as Lambda sends them;
* **timeout**: the connection hangs for ``stall`` seconds and is closed without an answer.
  Half of them reach moto first, as a request AWS received whose answer was lost on the
  way back: the client cannot tell whether its write happened (the dangerous case for an
  alias write, which the RevisionId check then has to catch).

Only the Lambda API (the traffic backend) is faulted by default; ``paths`` widens it.
Everything injected is counted in ``injected`` by kind, so a run can show it happened.
The seed makes a run repeatable as far as the order of requests allows.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter

from motoproxy import DROP, AwsProxy, _error

LAMBDA = r"^/2015-03-31/functions/"
KINDS = ("throttle", "5xx", "timeout")


def _quiet(request: object, client_address: object) -> None:
    """A killed daemon resets its connections: not worth a traceback on stderr."""


class FaultProxy(AwsProxy):
    def __init__(
        self,
        upstream: str,
        rate: float = 0.0,
        *,
        seed: int = 0,
        stall: float = 1.0,
        paths: str = LAMBDA,
    ) -> None:
        super().__init__(upstream)
        self.rate = rate
        self.stall = stall
        self.paths = re.compile(paths)
        self.injected: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._draw = threading.Lock()
        self._server.handle_error = _quiet  # type: ignore[method-assign]

    def _pick(self, path: str) -> str | None:
        if not self.rate or not self.paths.search(path):
            return None
        with self._draw:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(KINDS)
            if kind == "timeout" and self._random.random() < 0.5:
                kind = "timeout-after-write"
            self.injected[kind] += 1
        return kind

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        kind = self._pick(path)
        if kind == "throttle":
            status, out_headers, out = _error(429, "TooManyRequestsException", "Rate exceeded")
            return status, [*out_headers, ("Retry-After", "1")], out
        if kind == "5xx":
            status = self._random.choice((500, 502, 503))
            code = "ServiceException" if status == 500 else "ServiceUnavailableException"
            return _error(status, code, "injected backend failure")
        if kind == "timeout-after-write":
            super().handle(method, path, headers, body)  # it lands; the answer is lost
        if kind is not None and kind.startswith("timeout"):
            time.sleep(self.stall)
            return DROP
        return super().handle(method, path, headers, body)

    def heal(self) -> None:
        """The backend recovers: no more faults, random or scripted."""
        self.rate = 0.0
        with self._lock:
            self._faults.clear()

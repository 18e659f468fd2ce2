"""A small HTTP proxy in front of moto's server: what moto leaves out, and injected faults.

moto 5 (checked in its source, ``moto/awslambda/models.py``: "The RevisionId parameter is
not yet implemented") gives an alias one RevisionId for life and ignores the one an
``UpdateAlias`` sends, so a stale write never fails there. The proxy implements the
documented contract on top: every successful alias write gets a new RevisionId, and an
``UpdateAlias`` that carries a stale one is answered 412 PreconditionFailedException,
shaped as Lambda sends it, without reaching moto. moto also does not store a function's
``DeadLetterConfig``; ``dead_letter`` adds it to a version's configuration as Lambda
returns it. moto without Docker answers an Invoke with the next queued payload but never
with a function error; ``function_errors`` marks the next invocations of a function as
Lambda marks a function that raised (the ``X-Amz-Function-Error`` header).

Faults are answered in place of the next matching requests (``fail``): throttling (429),
access denied (403), and so on. ``hold`` delays alias writes, so that a test can kill a
daemon while its UpdateAlias is in flight; the held request still reaches moto afterwards,
as a request already sent to AWS would.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ALIAS = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/([^/?]+)")
ALIASES = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/?$")
CONFIGURATION = re.compile(r"^/2015-03-31/functions/([^/]+)/configuration$")
INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
STALE = (
    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/"
    "GetAlias API to retrieve the latest Revision Id"
)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    times: int


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


class AwsProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.revisions: dict[str, str] = {}
        self.dead_letter: dict[tuple[str, str], str] = {}
        self.function_errors: dict[str, int] = {}  # function -> invocations that "raise"
        self.hold = 0.0
        self.holding = 0  # alias writes being held right now
        self.seen: list[Seen] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._write = threading.Lock()  # alias writes: revision check and write are one step
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> AwsProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.revisions.clear()
            self.dead_letter.clear()
            self.function_errors.clear()
            self.seen.clear()
            self._faults.clear()
            self.hold = 0.0

    def fail(
        self, method: str, path: str, status: int, code: str, message: str = "", times: int = 1
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` with an error."""
        fault = Fault(method, re.compile(path), status, code, message or code, times)
        with self._lock:
            self._faults.append(fault)

    def count(self, method: str, path: str, status: int | None = None, ok: bool = False) -> int:
        """Requests answered so far; ``status`` or ``ok`` (2xx) narrow it down."""
        pattern = re.compile(path)
        with self._lock:
            return sum(
                1
                for s in self.seen
                if s.method == method
                and pattern.search(s.path)
                and (status is None or s.status == status)
                and (not ok or 200 <= s.status < 300)
            )

    # ------------------------------------------------------------ the proxying

    def _fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method == method and fault.path.search(path):
                    fault.times -= 1
                    return fault
        return None

    def _revision(self, key: str, renew: bool = False) -> str:
        with self._lock:
            if renew or key not in self.revisions:
                self.revisions[key] = str(uuid.uuid4())
            return self.revisions[key]

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        fault = self._fault(method, path)
        if fault is not None:
            return _error(fault.status, fault.code, fault.message)
        alias = ALIAS.match(path)
        if alias and method == "PUT":
            with self._write:
                key = f"{alias.group(1)}/{alias.group(2)}"
                sent = json.loads(body or b"{}").get("RevisionId")
                if sent is not None and sent != self._revision(key):
                    return _error(412, "PreconditionFailedException", STALE)
                if self.hold:
                    with self._lock:
                        self.holding += 1
                    time.sleep(self.hold)
                    with self._lock:
                        self.holding -= 1
                status, out_headers, out = self._forward(method, path, headers, body)
                if status < 300:
                    out = _with(out, RevisionId=self._revision(key, renew=True))
                return status, out_headers, out
        status, out_headers, out = self._forward(method, path, headers, body)
        if status < 300 and alias and method == "GET":
            out = _with(out, RevisionId=self._revision(f"{alias.group(1)}/{alias.group(2)}"))
        created = ALIASES.match(path)
        if status < 300 and created and method == "POST":
            name = json.loads(out)["Name"]
            out = _with(out, RevisionId=self._revision(f"{created.group(1)}/{name}", renew=True))
        invoke = INVOKE.match(urlsplit(path).path)
        if status < 300 and invoke and method == "POST":
            with self._lock:
                raised = self.function_errors.get(invoke.group(1), 0)
                if raised:
                    self.function_errors[invoke.group(1)] = raised - 1
            if raised:  # Lambda's answer when the function raised: 200, the header, the error
                out_headers = [*out_headers, ("X-Amz-Function-Error", "Unhandled")]
        configuration = CONFIGURATION.match(urlsplit(path).path)
        if status < 300 and configuration and method == "GET":
            qualifier = parse_qs(urlsplit(path).query).get("Qualifier", ["$LATEST"])[0]
            arn = self.dead_letter.get((configuration.group(1), qualifier))
            if arn is not None:
                out = _with(out, DeadLetterConfig={"TargetArn": arn})
        return status, out_headers, out


def _with(body: bytes, **fields: Any) -> bytes:
    data = json.loads(body)
    data.update(fields)
    return json.dumps(data).encode()


def _error(status: int, code: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    return status, headers, json.dumps({"Type": "User", "message": message}).encode()


_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}

# What ``handle`` returns to hang up without answering (a timeout, seen from the client).
DROP: tuple[int, list[tuple[str, str]], bytes] = (0, [], b"")


def _handler(proxy: AwsProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            try:
                status, out_headers, out = proxy.handle(self.command, self.path, headers, body)
            except OSError as exc:
                status, out_headers, out = _error(502, "BadGateway", str(exc))
            with proxy._lock:
                proxy.seen.append(Seen(self.command, self.path, status))
            if (status, out_headers, out) == DROP:
                self.close_connection = True  # no answer at all: the client sees a timeout
                return
            try:
                self.send_response(status)
                for name, value in out_headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:  # the client is gone (a killed daemon): the write still happened
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler

"""``canary serve`` as a subprocess, the way an operator runs it: helpers for the tests that
need a live daemon (health, signals, settings, the CLI against a real API)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from services import free_port

CANARY = [sys.executable, "-m", "canary"]


def daemon_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A daemon's environment: its own SQLite store, JSON logs, and anonymous access unless
    tokens are given (a daemon refuses to start with neither)."""
    base = {
        **os.environ,
        "CANARY_STORE_URL": f"sqlite:///{tmp_path}/canary.db",
        "CANARY_LOG_FORMAT": "json",
        "CANARY_AWS_REGION": "us-east-1",  # targets without a region are filled in with it
    }
    if "CANARY_TOKENS" not in env:
        base["CANARY_ALLOW_ANONYMOUS"] = "true"
    return base | env


def serve(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CANARY, "serve"],
        env=daemon_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_healthy(port: int, proc: subprocess.Popen[str]) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return dict(json.loads(r.read()))
        except OSError:
            time.sleep(0.1)
    raise AssertionError("daemon never became healthy")


def token_setting(tokens: dict[str, tuple[str, str]]) -> str:
    """CANARY_TOKENS for ``{name: (secret, role)}``."""
    return json.dumps(
        [
            {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "role": role}
            for name, (secret, role) in tokens.items()
        ]
    )


class Daemon:
    """A daemon on a fixed port whose log goes to a file (a pipe nobody reads would fill)."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = daemon_env(tmp_path, CANARY_LISTEN=f"127.0.0.1:{self.port}", **env)
        self.log_path = tmp_path / "daemon.log"
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self) -> Daemon:
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [*CANARY, "serve"], env=self.env, stdout=self._log, stderr=self._log, text=True
        )
        wait_healthy(self.port, self.proc)
        return self

    def stop(self) -> int:
        """SIGTERM, and the exit code once it has stopped."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        if self._log is not None:
            self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text()

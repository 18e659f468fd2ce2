"""The ``webhook`` hook: POST the rollout's state as JSON; the HTTP status is the verdict.

2xx is PASS (unless the JSON answer says ``{"status": "fail", "message": "..."}``), 4xx is
FAIL (the test said no), 5xx, a timeout or no connection is ERROR (no answer: tried again
up to ``retries``). Every request is signed: ``X-Canary-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``<X-Canary-Timestamp>.<body>`` with ``CANARY_WEBHOOK_SECRET``, so a
receiver can tell canary from anyone who found the URL, and refuse a replay by the
timestamp. Secrets and headers (an API key) come from the daemon's settings, never from the
spec: a spec is read by many and stored in the record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from analysis.base import Verdict
from analysis.hooks.kind import (
    HookAnswer,
    HookCall,
    HookError,
    HookKind,
    HookSpec,
    excerpt,
    fail_message,
)
from analysis.kind import no_clients

SIGNATURE_HEADER = "X-Canary-Signature"
TIMESTAMP_HEADER = "X-Canary-Timestamp"


class WebhookHook(HookSpec):
    kind: Literal["webhook"]
    url: str = Field(
        min_length=1, max_length=2048, description="http(s) URL the payload is POSTed to"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value.split("//", 1)[1]) < 1:
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. https://tests.example/smoke")
        return value


class WebhookSettings(BaseModel):
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="signs every webhook hook request (HMAC-SHA256); webhook hooks need it",
    )
    webhook_headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='headers added to every webhook hook request, JSON: {"Authorization": "..."}',
    )

    @field_validator("webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("is shorter than 16 characters; use a random secret of 32 or more")
        return value


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of ``X-Canary-Signature`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookCaller:
    def __init__(self, secret: bytes, headers: dict[str, str]) -> None:
        self._secret = secret
        self._headers = headers
        self._session: Any = None

    def __repr__(self) -> str:  # never show the secret or the headers' values
        return f"WebhookCaller(headers={sorted(self._headers)})"

    async def call(self, hook: WebhookHook, call: HookCall) -> HookAnswer:
        import aiohttp

        body = json.dumps(call.payload(), separators=(",", ":")).encode()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "canary-hooks/1",
            TIMESTAMP_HEADER: str(call.timestamp),
            SIGNATURE_HEADER: signature(self._secret, call.timestamp, body),
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                hook.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                location = response.headers.get("Location", "?")
                raw = await response.content.read(64 * 1024)
        except aiohttp.ClientError as exc:
            raise HookError(f"{hook.url} unreachable: {type(exc).__name__}: {exc}") from None
        text = raw.decode("utf-8", "replace")
        detail = {"status": status, "body": excerpt(text)}
        if status >= 500:
            raise HookError(f"{hook.url} answered {status}: {excerpt(text, 120)}", detail)
        if 300 <= status < 400:  # not followed: a test endpoint that moved is a spec to fix
            raise HookError(
                f"{hook.url} answered {status} (a redirect to {location}, not followed); give "
                "the final URL in the hook",
                detail,
                retryable=False,
            )
        if 200 <= status < 300:
            failed, message = fail_message(text)
            if failed:
                said = f": {message}" if message else ""
                return HookAnswer(Verdict.FAIL, f"answered {status} with status fail{said}", detail)
            return HookAnswer(Verdict.PASS, f"answered {status}", detail)
        said = f": {excerpt(text, 200)}" if text.strip() else ""
        return HookAnswer(Verdict.FAIL, f"answered {status}{said}", detail)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def build(settings: WebhookSettings, clients: None) -> WebhookCaller | None:
    if settings.webhook_secret is None:
        return None
    headers = {k: v.get_secret_value() for k, v in settings.webhook_headers.items()}
    return WebhookCaller(settings.webhook_secret.get_secret_value().encode(), headers)


HOOK = HookKind(
    name="webhook",
    summary="POSTs the rollout's state as signed JSON; 2xx PASS, 4xx FAIL, 5xx/timeout ERROR",
    spec=WebhookHook,
    settings=WebhookSettings,
    clients=no_clients,
    build=build,
    unconfigured="set CANARY_WEBHOOK_SECRET (it signs every request) to turn on webhook hooks",
)

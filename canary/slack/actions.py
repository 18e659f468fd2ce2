"""The Promote / Pause / Abort buttons: who pressed one, may they, and acting on it.

Slack signs every request to the interactivity URL; that signature is the only proof it
came from Slack, so it is checked before anything is read: ``v0=HMAC-SHA256(signing secret,
"v0:{timestamp}:{body}")``, compared in constant time; a timestamp more than 5 minutes
from now is refused, and so is a signature already seen (a replay). Slack wants an answer
within 3 seconds, so the request is acknowledged at once and the command runs after, in a
task of ``SlackActions``. Who may press is the allowlist (``CANARY_SLACK_ALLOWLIST``):
Slack user ids, or user groups (their members, asked of Slack), each with an API role;
promote, pause and abort need ``operate`` as on the API. A refusal reaches only the
person who pressed (an ephemeral message through the payload's ``response_url``). The
command is recorded with the Slack user as its actor, so the message and its thread say
who did what.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from canary.engine import Engine
from canary.machine import Command, CommandName, CommandRejected
from canary.store.base import NotFound
from config.settings import Settings, SlackGrant

log = structlog.get_logger("canary.slack")

MAX_AGE = 300  # seconds: Slack's advice for refusing old (replayed) requests
BUTTONS = {"promote": "operate", "pause": "operate", "abort": "operate"}
RANK = {"read": 0, "deploy": 1, "operate": 2}
BUTTONS_BY_NAME: dict[str, CommandName] = {"promote": "promote", "pause": "pause", "abort": "abort"}


class Refused(Exception):
    """The request is not one Slack signed just now; the message says which check failed."""


class BadPayload(Exception):
    """Signed by Slack, but not a button press canary knows."""


@dataclass(frozen=True)
class Press:
    """One button press, as read from a verified payload."""

    command: CommandName
    rollout_id: str
    user_id: str
    user_name: str
    response_url: str | None

    @property
    def actor(self) -> str:
        return f"{self.user_name} (slack {self.user_id})"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Verifier:
    """Checks ``X-Slack-Signature``; remembers signatures for ``MAX_AGE`` to refuse replays."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._seen: dict[str, float] = {}  # signature -> when it may be forgotten

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        given = headers.get("X-Slack-Signature", "")
        if not given:
            raise Refused("X-Slack-Signature is required")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise Refused("X-Slack-Request-Timestamp must be a Unix time in seconds")
        if abs(now - int(timestamp)) > MAX_AGE:
            raise Refused("X-Slack-Request-Timestamp is more than 5 minutes from now")
        expected = signature(self._secret, timestamp, body)
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise Refused("X-Slack-Signature does not match the body")
        self._seen = {sig: until for sig, until in self._seen.items() if until > now}
        if given in self._seen:
            raise Refused("this request was already received (a replay)")
        self._seen[given] = int(timestamp) + MAX_AGE


def read_press(body: bytes) -> Press:
    """The button press in an interactivity payload (``payload=<json>``, form-encoded)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = json.loads(form["payload"][0])
        action = payload["actions"][0]
        user = payload["user"]
        command, rollout_id = action["action_id"], action["value"]
        user_id = user["id"]
        user_name = user.get("username") or user.get("name") or user_id
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        raise BadPayload("not a block_actions payload with a canary button") from None
    if payload.get("type") != "block_actions" or command not in BUTTONS:
        raise BadPayload(f"not a canary button: {str(command)[:40]!r}")
    response_url = payload.get("response_url")
    return Press(
        BUTTONS_BY_NAME[command],
        str(rollout_id),
        str(user_id),
        str(user_name),
        response_url if isinstance(response_url, str) else None,
    )


class SlackActions:
    """Acts on verified button presses, after the request was acknowledged."""

    def __init__(
        self, settings: Settings, engine: Engine, client: AsyncWebClient | None = None
    ) -> None:
        assert settings.slack_signing_secret is not None
        self.verifier = Verifier(settings.slack_signing_secret.get_secret_value())
        self._allowlist: list[SlackGrant] = list(settings.slack_allowlist)
        self._engine = engine
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return self._engine.clock.now().timestamp()

    def start(self, press: Press) -> None:
        """Act on ``press`` in a task of its own: the request is answered meanwhile."""
        task = asyncio.create_task(self._act(press), name="canary-slack-action")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Let presses being acted on finish (they are short), then return."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def role_of(self, user_id: str) -> str | None:
        """The highest role the allowlist gives this user, directly or through a group."""
        roles = [g.role for g in self._allowlist if g.slack == user_id]
        for grant in self._allowlist:
            if grant.slack.startswith("S") and await self._in_group(user_id, grant.slack):
                roles.append(grant.role)
        return max(roles, key=RANK.__getitem__) if roles else None

    async def _in_group(self, user_id: str, group: str) -> bool:
        if self._client is None:
            return False
        try:
            answer = await self._client.usergroups_users_list(usergroup=group)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack.group_unknown", group=group, error=type(exc).__name__)
            return False
        users = answer.get("users") or []
        return user_id in users

    async def _act(self, press: Press) -> None:
        try:
            role = await self.role_of(press.user_id)
            needed = BUTTONS[press.command]
            if role is None:
                log.warning("slack.action_refused", user=press.user_id, command=press.command)
                await self._tell(press, "you are not on canary's Slack allowlist; ask an operator")
                return
            if RANK[role] < RANK[needed]:
                log.warning("slack.action_refused", user=press.user_id, command=press.command)
                await self._tell(
                    press, f"{press.command} needs role {needed}; you have role {role}"
                )
                return
            reason = "pressed in Slack"
            try:
                await self._engine.command(
                    press.rollout_id, Command(press.command, press.actor, reason=reason)
                )
            except CommandRejected as exc:
                await self._tell(press, f"{press.command} refused: {exc}")
            except NotFound:
                await self._tell(press, f"rollout {press.rollout_id} is no longer known")
        except Exception as exc:  # a press must never take the daemon down
            log.warning("slack.action_failed", command=press.command, error=repr(exc))

    async def _tell(self, press: Press, text: str) -> None:
        """An ephemeral reply: only the person who pressed sees it."""
        if press.response_url is None:
            return
        body = {"response_type": "ephemeral", "replace_original": False, "text": text}
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(press.response_url, json=body) as answer,
            ):
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack.reply_failed", error=type(exc).__name__)

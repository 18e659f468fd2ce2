"""The Promote / Pause / Abort buttons, through the real HTTP endpoint.

Each press is signed as Slack signs it (v0, HMAC-SHA256 over ``v0:timestamp:body`` with the
signing secret) and posted to ``/api/v1/slack/actions`` of a real app; the rollout runs on
the real engine, and its Slack message (through slack_sdk to the local double) shows who did
what. A refused press changes nothing and tells only the person who pressed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from api_rig import token_specs
from helpers import document
from slackdouble import SlackDouble
from test_slack import TOKEN, Waits, healthy

from analysis.scripted import ScriptedProvider
from canary.api import openapi
from canary.api.app import build_app
from canary.clock import RealClock
from canary.engine import Engine
from canary.model import Phase, Rollout
from canary.slack import Delivery, build_notifier
from canary.slack.actions import signature
from canary.store import MemoryStore
from config.settings import Settings
from strategies.memory import MemoryFleet

ROOT = Path(__file__).parent.parent
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/api/v1/slack/actions"
APPROVAL = [{"weight": 10, "approval": True}, {"weight": 100}]


class ButtonRig:
    def __init__(self, double: SlackDouble) -> None:
        self.double = double
        self.settings = Settings(
            tokens=token_specs(),
            aws_region="us-east-1",
            slack_bot_token=TOKEN,
            slack_channel="#deploys",
            slack_api_url=double.api_url,
            slack_signing_secret=SECRET,
            slack_allowlist=[
                {"slack": "U0ANA", "role": "operate"},
                {"slack": "U0RITA", "role": "read"},
                {"slack": "S0ONCALL", "role": "operate"},
            ],
        )
        double.groups["S0ONCALL"] = ["U0BOB"]
        self.store = MemoryStore()
        notifier = build_notifier(self.settings, self.store, None, Delivery(sleep=Waits()))
        assert notifier is not None
        self.engine = Engine(
            self.store,
            RealClock(),
            MemoryFleet(stable="1").factory,
            {"cloudwatch": ScriptedProvider(healthy)},
            notifiers=[notifier],
        )
        self.client: TestClient[Any, Any] = TestClient(
            TestServer(build_app(self.engine, self.settings))
        )

    async def submit(self) -> Rollout:
        r = await self.engine.submit(document(steps=APPROVAL), actor="ci")
        return await self.wait_for(lambda: self.store.get(r.id), Phase.AWAITING_APPROVAL)

    async def wait_for(self, get: Callable[[], Any], phase: Phase) -> Rollout:
        async with asyncio.timeout(10):
            while True:
                r: Rollout = await get()
                if r.phase == phase:
                    return r
                await asyncio.sleep(0.01)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while True:
                if check():
                    return
                await asyncio.sleep(0.01)

    async def press(
        self,
        command: str,
        rollout_id: str,
        user: str = "U0ANA",
        *,
        secret: str = SECRET,
        age: float = 0,
        body: bytes | None = None,
        timestamp: str | None = None,
    ) -> tuple[int, bytes, str]:
        """Post a press as Slack would: the status, the exact body sent, a problem's detail."""
        if body is None:
            payload = {
                "type": "block_actions",
                "user": {"id": user, "username": user.removeprefix("U0").lower()},
                "actions": [{"action_id": command, "value": rollout_id, "type": "button"}],
                "response_url": self.double.response_url(f"{user}-{command}"),
            }
            body = urlencode({"payload": json.dumps(payload)}).encode()
        timestamp = timestamp or str(int(time.time() - age))
        response = await self.client.post(
            URL,
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature(secret, timestamp, body),
            },
        )
        detail = (await response.json())["detail"] if response.status != 200 else ""
        return response.status, body, detail


@pytest.fixture
async def rig() -> AsyncIterator[ButtonRig]:
    async with SlackDouble(TOKEN) as double:
        rig = ButtonRig(double)
        await rig.engine.start()
        await rig.client.start_server()
        try:
            yield rig
        finally:
            await rig.client.close()
            await rig.engine.stop()


async def commands(rig: ButtonRig, rollout_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.kind, e.actor)
        for e in await rig.store.events(rollout_id)
        if e.kind.startswith("command.")
    ]


async def test_the_message_carries_the_buttons_and_abort_asks_first(rig: ButtonRig) -> None:
    r = await rig.submit()
    await rig.until(lambda: any(m.updates for m in rig.double.top_level()))
    (message,) = rig.double.top_level()
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    by_action = {e["action_id"]: e for e in actions["elements"]}
    assert list(by_action) == ["promote", "pause", "abort"]
    assert all(e["value"] == r.id for e in by_action.values())
    assert by_action["abort"]["confirm"]["title"]["text"] == "Abort this rollout?"
    assert "confirm" not in by_action["promote"]


async def test_a_valid_press_acts_and_the_message_shows_who(rig: ButtonRig) -> None:
    r = await rig.submit()
    status, _, _ = await rig.press("promote", r.id, "U0ANA")
    assert status == 200

    await rig.wait_for(lambda: rig.store.get(r.id), Phase.SUCCEEDED)
    assert await commands(rig, r.id) == [("command.promote", "ana (slack U0ANA)")]
    await rig.engine.stop()  # delivers what is queued
    (message,) = rig.double.top_level()
    assert "promote by ana (slack U0ANA)" in message.shown
    assert ":bust_in_silhouette: Promote by ana (slack U0ANA)" in [
        m.text for m in rig.double.thread(message)
    ]
    assert not [b for b in message.blocks if b["type"] == "actions"], "no buttons once ended"
    assert rig.double.ephemeral == []


async def test_a_member_of_an_allowed_user_group_may_abort(rig: ButtonRig) -> None:
    r = await rig.submit()
    status, _, _ = await rig.press("abort", r.id, "U0BOB")
    assert status == 200

    done = await rig.wait_for(lambda: rig.store.get(r.id), Phase.ROLLED_BACK)
    assert done.reason == "aborted by bob (slack U0BOB): pressed in Slack"
    assert await commands(rig, r.id) == [("command.abort", "bob (slack U0BOB)")]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"secret": "not-the-signing-secret"}, "X-Slack-Signature does not match the body"),
        ({"age": 301}, "X-Slack-Request-Timestamp is more than 5 minutes from now"),
        ({"age": -301}, "X-Slack-Request-Timestamp is more than 5 minutes from now"),
        ({"timestamp": "yesterday"}, "X-Slack-Request-Timestamp must be a Unix time"),
    ],
    ids=["wrong secret", "stale timestamp", "future timestamp", "not a timestamp"],
)
async def test_a_request_not_signed_by_slack_just_now_is_refused(
    rig: ButtonRig, change: dict[str, Any], why: str
) -> None:
    r = await rig.submit()
    status, _, detail = await rig.press("promote", r.id, **change)

    assert status == 401
    assert detail.startswith(f"not a request signed by Slack: {why}")
    assert (await rig.store.get(r.id)).phase == Phase.AWAITING_APPROVAL
    assert await commands(rig, r.id) == []
    assert rig.double.ephemeral == []


async def test_a_replayed_press_is_refused(rig: ButtonRig) -> None:
    r = await rig.submit()
    timestamp = str(int(time.time()))
    status, body, _ = await rig.press("pause", r.id, timestamp=timestamp)
    assert status == 200
    await rig.wait_for(lambda: rig.store.get(r.id), Phase.PAUSED)

    status, _, detail = await rig.press("pause", r.id, timestamp=timestamp, body=body)

    assert status == 401
    assert detail == "not a request signed by Slack: this request was already received (a replay)"
    assert await commands(rig, r.id) == [("command.pause", "ana (slack U0ANA)")]


@pytest.mark.parametrize(
    ("user", "told"),
    [
        ("U0EVE", "you are not on canary's Slack allowlist; ask an operator"),
        ("U0RITA", "promote needs role operate; you have role read"),
    ],
    ids=["unknown user", "user without the role"],
)
async def test_a_press_by_someone_not_allowed_is_refused_to_them_alone(
    rig: ButtonRig, user: str, told: str
) -> None:
    r = await rig.submit()
    status, _, _ = await rig.press("promote", r.id, user)
    assert status == 200, "acknowledged: Slack shows nothing but our ephemeral answer"

    await rig.until(lambda: bool(rig.double.ephemeral))
    assert rig.double.ephemeral == [
        {"response_type": "ephemeral", "replace_original": False, "text": told}
    ]
    assert (await rig.store.get(r.id)).phase == Phase.AWAITING_APPROVAL
    assert await commands(rig, r.id) == []


async def test_a_press_the_phase_does_not_allow_is_explained_to_the_presser(
    rig: ButtonRig,
) -> None:
    r = await rig.submit()
    await rig.press("abort", r.id)
    await rig.wait_for(lambda: rig.store.get(r.id), Phase.ROLLED_BACK)
    status, _, _ = await rig.press("promote", r.id)
    assert status == 200

    await rig.until(lambda: bool(rig.double.ephemeral))
    (answer,) = rig.double.ephemeral
    assert answer["text"].startswith("promote refused: ")


async def test_without_a_signing_secret_there_are_no_buttons() -> None:
    settings = Settings(tokens=token_specs())
    engine = Engine(MemoryStore(), RealClock(), MemoryFleet(stable="1").factory, {})
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(engine, settings)))
    await client.start_server()
    try:
        timestamp = str(int(time.time()))
        response = await client.post(
            URL,
            data=b"payload=%7B%7D",
            headers={
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature(SECRET, timestamp, b"payload=%7B%7D"),
            },
        )
        assert response.status == 404
        assert "CANARY_SLACK_SIGNING_SECRET" in (await response.json())["detail"]
    finally:
        await client.close()


def test_the_app_manifest_points_slack_at_this_route_with_the_scopes_used() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-app-manifest.yaml").read_text())
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlsplit(interactivity["request_url"]).path == URL
    assert URL in openapi.document()["paths"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage and chat.update; public channels; allowlisted user groups' members
    assert scopes == {"chat:write", "chat:write.public", "usergroups:read"}

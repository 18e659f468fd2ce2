"""The probes of issue 8, kept: every bad input a client can send gets a 4xx problem that
names what is wrong, and changes nothing (no rollout stored, no traffic moved, no command
applied).

The app is served by ``ApiRunner`` on a local port, as the daemon serves it, and each
request is written as raw bytes: a client library would refuse to send most of these
(a NUL in a header, a non-UTF-8 token, full-width digits in Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import web
from api_rig import TOKENS, ApiRig, spec_data

from canary.api.app import ApiRunner
from canary.model import Phase, Rollout

API = "/api/v1"
CI = TOKENS["ci"][0].encode()
ANA = TOKENS["ana"][0].encode()
YAML = "application/yaml"
JSON = "application/json"
DEPTH = 50_000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), (
            self.status,
            self.headers,
            self.body[:300],
        )
        assert self.headers.get("x-request-id"), "every problem carries X-Request-Id"
        data: dict[str, Any] = json.loads(self.body)
        assert data["status"] == self.status
        assert "Traceback" not in self.body.decode("utf-8", "replace")
        return data

    def paths(self) -> list[str]:
        return [e["path"] for e in self.problem().get("errors", [])]


@dataclass
class Live:
    rig: ApiRig
    host: str = ""
    port: int = 0
    runner: ApiRunner | None = field(default=None)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        token: bytes | None = CI,
        content_type: str | None = None,
        headers: list[bytes] = (),  # type: ignore[assignment]
    ) -> Answer:
        lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {self.host}".encode()]
        if token is not None:
            lines.append(b"Authorization: Bearer " + token)
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}".encode())
        lines += [*headers, f"Content-Length: {len(body)}".encode(), b"Connection: close"]
        return await self.raw(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    async def raw(self, data: bytes) -> Answer:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(data)
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return Answer(int(status_line.split()[1]), headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_text, _, rest = data.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    rig = ApiRig()
    await rig.client.close()  # its test server is never started: ApiRunner serves the app
    runner = ApiRunner(rig.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    await rig.engine.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Live(rig, host, port, runner)
    finally:
        await runner.cleanup()
        await rig.engine.stop()


# ---------------------------------------------------------------- start: the spec's numbers


def with_(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with the field at dotted ``path`` set to ``value``."""
    data = copy.deepcopy(spec_data(steps=[{"weight": 10, "bake": "5m"}, {"weight": 100}]))
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


def as_yaml(data: dict[str, Any], replace: tuple[str, str] | None = None) -> bytes:
    text = yaml.safe_dump(data, sort_keys=False)
    if replace is not None:
        assert replace[0] in text, text
        text = text.replace(replace[0], replace[1])
    return text.encode()


def as_json(data: dict[str, Any], replace: tuple[str, str] | None = None) -> bytes:
    text = json.dumps(data)
    if replace is not None:
        assert replace[0] in text, text
        text = text.replace(replace[0], replace[1])
    return text.encode()


STATISTICAL = {
    "name": "p95",
    "provider": "cloudwatch",
    "query": "latency",
    "stable_query": "stable_latency",
    "statistical": {"confidence": 0.99, "step": "1m"},
}

# (case, body, content type, status, the field the problem names)
START_CASES: list[tuple[str, bytes, str, int, str]] = [
    (
        "yaml bake .inf",
        as_yaml(with_("spec.steps.0.bake", "BAKE"), ("BAKE", ".inf")),
        YAML,
        422,
        "spec.steps[0].bake",
    ),
    (
        "json bake 1e999",
        as_json(with_("spec.steps.0.bake", "BAKE"), ('"BAKE"', "1e999")),
        JSON,
        422,
        "spec.steps[0].bake",
    ),
    (
        "json bake NaN",
        as_json(with_("spec.steps.0.bake", "BAKE"), ('"BAKE"', "NaN")),
        JSON,
        422,
        "spec.steps[0].bake",
    ),
    (
        "json bake -Infinity",
        as_json(with_("spec.steps.0.bake", "BAKE"), ('"BAKE"', "-Infinity")),
        JSON,
        422,
        "spec.steps[0].bake",
    ),
    (
        "json interval NaN",
        as_json(with_("spec.analysis.interval", "I"), ('"I"', "NaN")),
        JSON,
        422,
        "spec.analysis.interval",
    ),
    (
        "yaml window 1.0e+300",
        as_yaml(with_("spec.analysis.gates.0.window", "W"), ("W", "1.0e+300")),
        YAML,
        422,
        "spec.analysis.gates[0].window",
    ),
    (
        "interval 1ms",
        as_json(with_("spec.analysis.interval", "1ms")),
        JSON,
        422,
        "spec.analysis.interval",
    ),
    (
        "interval 2h",
        as_json(with_("spec.analysis.interval", "2h")),
        JSON,
        422,
        "spec.analysis.interval",
    ),
    ("bake 8 days", as_json(with_("spec.steps.0.bake", "192h")), JSON, 422, "spec.steps[0].bake"),
    (
        "bake in full-width digits",
        as_json(with_("spec.steps.0.bake", "５m")),
        JSON,
        422,
        "spec.steps[0].bake",
    ),
    (
        "bake 8 days in seconds",
        as_json(with_("spec.steps.0.bake", 8 * 86400)),
        JSON,
        422,
        "spec.steps[0].bake",
    ),
    (
        "window 2 days",
        as_json(with_("spec.analysis.gates.0.window", "48h")),
        JSON,
        422,
        "spec.analysis.gates[0].window",
    ),
    (
        "statistical step 2h",
        as_json(
            with_(
                "spec.analysis.gates.0",
                STATISTICAL | {"window": "1d", "statistical": {"step": "2h"}},
            )
        ),
        JSON,
        422,
        "spec.analysis.gates[0].statistical.step",
    ),
    (
        "confidence that would never finish",
        as_json(
            with_(
                "spec.analysis.gates.0",
                STATISTICAL | {"statistical": {"confidence": 0.99999999999}},
            )
        ),
        JSON,
        422,
        "spec.analysis.gates[0].statistical.confidence",
    ),
    (
        "lambda version in full-width digits",
        as_json(with_("spec.targets.0.version", "４２")),
        JSON,
        422,
        "spec.targets[0].version",
    ),
    ("weight true", as_json(with_("spec.steps.0.weight", True)), JSON, 422, "spec.steps[0].weight"),
    (
        "yaml weight true",
        as_yaml(with_("spec.steps.0.weight", True)),
        YAML,
        422,
        "spec.steps[0].weight",
    ),
    ("weight text", as_json(with_("spec.steps.0.weight", "10")), JSON, 422, "spec.steps[0].weight"),
    (
        "weight NaN",
        as_json(with_("spec.steps.0.weight", "W"), ('"W"', "NaN")),
        JSON,
        422,
        "spec.steps[0].weight",
    ),
    (
        "approval yes",
        as_json(with_("spec.steps.0.approval", "yes")),
        JSON,
        422,
        "spec.steps[0].approval",
    ),
    (
        "failure_limit true",
        as_json(with_("spec.analysis.failure_limit", True)),
        JSON,
        422,
        "spec.analysis.failure_limit",
    ),
    (
        "failure_limit huge",
        as_json(with_("spec.analysis.failure_limit", 10**12)),
        JSON,
        422,
        "spec.analysis.failure_limit",
    ),
    (
        "max Infinity",
        as_json(with_("spec.analysis.gates.0.max", "M"), ('"M"', "Infinity")),
        JSON,
        422,
        "spec.analysis.gates[0].max",
    ),
    (
        "max true",
        as_json(with_("spec.analysis.gates.0.max", True)),
        JSON,
        422,
        "spec.analysis.gates[0].max",
    ),
    (
        "min_samples 1.5",
        as_json(with_("spec.analysis.gates.0.min_samples", 1.5)),
        JSON,
        422,
        "spec.analysis.gates[0].min_samples",
    ),
    # ---- bodies no parser may choke on
    (
        "json nested 50,000 deep",
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        JSON,
        400,
        "",
    ),
    ("yaml nested 50,000 deep", b"a: " + b"[" * DEPTH + b"]" * DEPTH, YAML, 400, ""),
    ("yaml block nested 50,000 deep", b"- " * DEPTH + b"x", YAML, 400, ""),
    (
        "yaml alias bomb",
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode()
            for i in range(6)
        ),
        YAML,
        400,
        "",
    ),
    ("integer of 5000 digits", b'{"apiVersion": ' + b"1" * 5000 + b"}", JSON, 400, ""),
    ("yaml list as a key", b"? [a, b]\n: 1\n", YAML, 400, ""),
    (
        "json key given twice",
        as_json(spec_data()).replace(b'"kind": "Rollout"', b'"kind": "Rollout", "kind": "Rollout"'),
        JSON,
        400,
        "",
    ),
    (
        "lone surrogate in a label",
        as_json(with_("metadata.labels", {"team": "S"}), ('"S"', '"caf\\ud800"')),
        JSON,
        400,
        "metadata.labels.team",
    ),
    (
        "lone surrogate in a name",
        as_json(with_("metadata.name", "S"), ('"S"', '"\\udce9"')),
        JSON,
        400,
        "metadata.name",
    ),
    # ---- what the body is said to be
    ("form-urlencoded", b"apiVersion=canary%2Fv1", "application/x-www-form-urlencoded", 415, ""),
    (
        "multipart",
        b"--b\r\nContent-Disposition: form-data; name=spec\r\n\r\n{}\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
        415,
        "",
    ),
    ("image/png", as_json(spec_data()), "image/png", 415, ""),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "path"),
    [case[1:] for case in START_CASES],
    ids=[case[0] for case in START_CASES],
)
async def test_a_bad_start_is_refused_naming_the_field_and_changes_nothing(
    live: Live, body: bytes, content_type: str, status: int, path: str
) -> None:
    answer = await live.request("POST", f"{API}/rollouts", body, content_type=content_type)
    assert answer.status == status, answer.body[:500]
    problem = answer.problem()
    if path:
        assert path in answer.paths(), problem
    if status == 400 and not path:
        assert any(
            words in problem["detail"]
            for words in ("32 levels", "100000 values", "4300 digits", "must be text", "twice")
        ), problem
    assert await live.rig.store.list() == [], "nothing may be stored"
    assert live.rig.fleet.backends == {}, "no traffic may move"


async def test_a_start_without_content_type_is_415(live: Live) -> None:
    answer = await live.request("POST", f"{API}/rollouts", as_json(spec_data()))
    assert answer.status == 415
    assert "application/json" in answer.problem()["detail"]
    assert await live.rig.store.list() == []


async def test_the_good_spec_of_these_cases_is_accepted(live: Live) -> None:
    """The cases above differ from an accepted spec only in the field they name."""
    good = with_("spec.steps.0.bake", "168h")
    answer = await live.request("POST", f"{API}/rollouts", as_yaml(good), content_type=YAML)
    assert answer.status == 201, answer.body[:500]


async def test_a_100000_character_name_is_not_echoed_back_whole(live: Live) -> None:
    body = as_json(with_("metadata.name", "x" * 100_000))
    answer = await live.request("POST", f"{API}/rollouts", body, content_type=JSON)
    assert answer.status == 422
    assert "metadata.name" in answer.paths()
    assert len(answer.body) < 2000, f"{len(answer.body)} bytes echoed"
    assert "100002 characters" in answer.body.decode()


async def test_many_problems_are_capped(live: Live) -> None:
    data = spec_data(steps=[{"weight": True} for _ in range(100)])
    answer = await live.request("POST", f"{API}/rollouts", as_json(data), content_type=JSON)
    assert answer.status == 422
    assert len(answer.problem()["errors"]) <= 50
    assert len(answer.body) < 20_000


# ---------------------------------------------------------------- commands


async def baking(live: Live) -> Rollout:
    r = await live.rig.submit()
    return await live.rig.wait_phase(r.id, Phase.BAKING)


# (case, command, body, content type, status, the field the problem names)
COMMAND_CASES: list[tuple[str, str, bytes, str, int, str]] = [
    ("promote full 'yes'", "promote", b'{"full": "yes"}', JSON, 422, "full"),
    ("promote full 1", "promote", b'{"full": 1}', JSON, 422, "full"),
    ("promote full 'true'", "promote", b'{"full": "true"}', JSON, 422, "full"),
    ("pause nested 50,000 deep", "pause", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, JSON, 400, ""),
    ("pause array 50,000 deep", "pause", b"[" * DEPTH + b"]" * DEPTH, JSON, 400, ""),
    ("pause reason lone surrogate", "pause", b'{"reason": "a\\ud800"}', JSON, 400, "reason"),
    ("pause as a form", "pause", b"reason=look", "application/x-www-form-urlencoded", 415, ""),
    ("promote as yaml", "promote", b"full: true", YAML, 415, ""),
    ("abort reason NaN", "abort", b'{"reason": NaN}', JSON, 422, "reason"),
]


@pytest.mark.parametrize(
    ("command", "body", "content_type", "status", "path"),
    [case[1:] for case in COMMAND_CASES],
    ids=[case[0] for case in COMMAND_CASES],
)
async def test_a_bad_command_is_refused_naming_the_field_and_changes_nothing(
    live: Live, command: str, body: bytes, content_type: str, status: int, path: str
) -> None:
    r = await baking(live)
    before = await live.rig.store.events(r.id)
    answer = await live.request(
        "POST", f"{API}/rollouts/{r.id}/{command}", body, token=ANA, content_type=content_type
    )
    assert answer.status == status, answer.body[:500]
    problem = answer.problem()
    if path:
        assert path in answer.paths(), problem
    after = await live.rig.store.get(r.id)
    assert (after.phase, after.step, after.weight) == (Phase.BAKING, 0, 10.0)
    events = await live.rig.store.events(r.id)
    assert not [e for e in events[len(before) :] if e.kind.startswith("command.")]


# ---------------------------------------------------------------- query, headers, tokens

FULL_WIDTH_10 = quote("１０")  # percent-encoded, as a client sends it


async def test_full_width_digits_are_not_a_limit(live: Live) -> None:
    path = f"{API}/rollouts?limit={FULL_WIDTH_10}"
    answer = await live.request("GET", path)
    assert answer.status == 400
    assert "query.limit" in answer.paths()


async def test_full_width_digits_are_not_an_events_limit_nor_a_last_event_id(live: Live) -> None:
    r = await baking(live)
    path = f"{API}/rollouts/{r.id}/events?limit={FULL_WIDTH_10}"
    answer = await live.request("GET", path)
    assert answer.status == 400
    assert "query.limit" in answer.paths()
    header = b"Last-Event-ID: " + "１２".encode()
    answer = await live.request("GET", f"{API}/rollouts/{r.id}/events", headers=[header])
    assert answer.status == 400
    assert "header.Last-Event-ID" in answer.paths()


PROTECTED = [
    ("GET", f"{API}/rollouts"),
    ("POST", f"{API}/rollouts"),
    ("GET", f"{API}/rollouts/0123456789abcdef012345"),
    ("GET", f"{API}/rollouts/0123456789abcdef012345/events"),
    ("POST", f"{API}/rollouts/0123456789abcdef012345/promote"),
    ("POST", f"{API}/rollouts/0123456789abcdef012345/abort"),
]


@pytest.mark.parametrize("token", [b"caf\xe9", b"\xff\xfe", "café".encode()], ids=repr)
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_a_token_that_is_not_ascii_is_401_on_every_route(
    live: Live, method: str, path: str, token: bytes
) -> None:
    answer = await live.request(method, path, token=token)
    assert answer.status == 401, answer.body[:300]
    assert "ASCII" in answer.problem()["detail"]


@pytest.mark.parametrize(
    "header",
    [b"X-Note: a\x00b", b"X-Big: " + b"a" * 9000, b"X-Bad\x01Name: 1"],
    ids=["NUL in a value", "over 8 KB", "control character in a name"],
)
async def test_a_header_aiohttp_cannot_parse_is_a_problem_with_a_request_id(
    live: Live, header: bytes
) -> None:
    answer = await live.request("GET", f"{API}/rollouts", headers=[header])
    assert 400 <= answer.status < 500
    problem = answer.problem()
    assert problem["request_id"] == answer.headers["x-request-id"]
    assert "header" in problem["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_head_on_the_health_routes(live: Live, path: str) -> None:
    answer = await live.request("HEAD", path, token=None)
    assert answer.status == 200
    assert answer.body == b""

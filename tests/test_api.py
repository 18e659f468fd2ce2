"""The HTTP API as a CI job or an operator meets it: roles, idempotent starts, errors as
problem+json, the event stream, readiness and metrics. The real app, engine and store run
in-process on the real clock, with in-memory targets (tests/api_rig.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import structlog
from api_rig import ROLE_TOKEN, ApiRig, as_role, auth, spec_data

from canary.machine import Command
from canary.model import Phase
from canary.store import MemoryStore
from config.settings import Settings

API = "/api/v1"
ROLES = ("read", "deploy", "operate")
RANK = {"read": 0, "deploy": 1, "operate": 2}

# (method, path, role needed or None for public, success status)
ROUTES: list[tuple[str, str, str | None, int]] = [
    ("GET", "/healthz", None, 200),
    ("GET", "/readyz", None, 200),
    ("GET", "/metrics", None, 200),
    ("GET", f"{API}/openapi.json", None, 200),
    ("POST", f"{API}/rollouts", "deploy", 201),
    ("GET", f"{API}/rollouts", "read", 200),
    ("GET", f"{API}/rollouts/{{id}}", "read", 200),
    ("GET", f"{API}/rollouts/{{id}}/events", "read", 200),
    ("GET", f"{API}/whoami", "read", 200),
    ("POST", f"{API}/rollouts/{{id}}/promote", "operate", 200),
    ("POST", f"{API}/rollouts/{{id}}/pause", "operate", 200),
    ("POST", f"{API}/rollouts/{{id}}/resume", "operate", 200),
    ("POST", f"{API}/rollouts/{{id}}/abort", "operate", 200),
]
BODIES: dict[str, Any] = {
    "promote": {},
    "pause": {"reason": "looking at a graph"},
    "resume": {},
    "abort": {"reason": "wrong build"},
}


def route_id(route: tuple[str, str, str | None, int]) -> str:
    return f"{route[0]} {route[1]}"


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert body["type"].startswith("urn:canary:problem:")
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in json.dumps(body)
    return body


@pytest.mark.parametrize("caller", [None, "bogus", *ROLES])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_every_route_for_every_role(
    route: tuple[str, str, str | None, int], caller: str | None
) -> None:
    method, path, needed, success = route
    async with ApiRig() as rig:
        r = await rig.submit()
        r = await rig.wait_phase(r.id, Phase.BAKING)
        command = path.rsplit("/", 1)[-1]
        if command == "resume":
            await rig.client.post(f"{API}/rollouts/{r.id}/pause", headers=auth("ana"))
            r = await rig.wait_phase(r.id, Phase.PAUSED)
        headers: dict[str, str] = {}
        if caller == "bogus":
            headers = {"Authorization": "Bearer not-a-known-token"}
        elif caller is not None:
            headers = as_role(caller)
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "POST" and command == "rollouts":
            kwargs["json"] = spec_data("other-function")
        elif method == "POST":
            kwargs["json"] = BODIES[command]
        before = await rig.store.events(r.id)

        response = await rig.client.request(method, path.format(id=r.id), **kwargs)

        if needed is None:
            assert response.status == success, await response.text()
            return
        if caller in (None, "bogus"):
            body = await problem(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "token" in body["detail"]
        elif RANK[caller] < RANK[needed]:
            body = await problem(response, 403)
            assert f"needs role {needed}" in body["detail"]
        else:
            assert response.status == success, await response.text()
        after = await rig.store.events(r.id)
        commands = [e for e in after[len(before) :] if e.kind.startswith("command.")]
        if method == "POST" and command != "rollouts":
            if response.status == success:  # recorded under the token's name
                assert [(e.kind, e.actor) for e in commands] == [
                    (f"command.{command}", ROLE_TOKEN[caller or ""])
                ]
            else:
                assert commands == [], "a refused command changes nothing"
        if method == "POST" and command == "rollouts":
            listed = await rig.store.list()
            assert len(listed) == (2 if response.status == success else 1)


async def test_start_records_the_token_name_as_creator() -> None:
    async with ApiRig() as rig:
        response = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=auth("ci"))
        body = await response.json()
        assert response.status == 201
        assert response.headers["Location"] == f"{API}/rollouts/{body['id']}"
        assert body["created_by"] == "ci"
        events = await rig.store.events(body["id"])
        assert events[0].actor == "ci"


async def test_anonymous_access_only_when_allowed() -> None:
    settings = Settings(tokens=[], allow_anonymous=True)
    async with ApiRig(settings=settings) as rig:
        response = await rig.client.post(f"{API}/rollouts", json=spec_data())
        assert response.status == 201
        rid = (await response.json())["id"]
        await rig.wait_phase(rid, Phase.BAKING)
        response = await rig.client.post(f"{API}/rollouts/{rid}/abort", json={"reason": "demo"})
        assert response.status == 200
        events = await rig.store.events(rid)
        assert any(e.kind == "command.abort" and e.actor == "anonymous" for e in events)
        # a presented token is still checked: a wrong one is refused, not made anonymous
        response = await rig.client.get(f"{API}/rollouts", headers={"Authorization": "Bearer x"})
        await problem(response, 401)


async def test_authorization_header_must_be_bearer() -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(
            f"{API}/rollouts", headers={"Authorization": "Basic dXNlcjpwYXNz"}
        )
        body = await problem(response, 401)
        assert "Bearer <token>" in body["detail"]


# ---------------------------------------------------------------- idempotent starts


async def test_same_key_and_spec_returns_the_same_rollout_with_200() -> None:
    async with ApiRig() as rig:
        headers = {**auth("ci"), "Idempotency-Key": "pipeline-77"}
        first = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=headers)
        retry = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=headers)
        assert (first.status, retry.status) == (201, 200)
        assert (await first.json())["id"] == (await retry.json())["id"]
        assert retry.headers["Location"] == first.headers["Location"]
        assert len(await rig.store.list()) == 1


async def test_same_spec_as_yaml_or_json_is_the_same_request() -> None:
    async with ApiRig() as rig:
        headers = {**auth("ci"), "Idempotency-Key": "k-1"}
        first = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=headers)
        yaml_text = (
            "apiVersion: canary/v1\nkind: Rollout\nmetadata: {name: checkout}\nspec:\n"
            "  targets: [{kind: lambda-alias, function: checkout, alias: live, version: '2'}]\n"
            "  analysis:\n    interval: 30s\n    gates:\n"
            "      - {name: error-rate, provider: cloudwatch, query: errors, max: 0.01}\n"
        )
        retry = await rig.client.post(
            f"{API}/rollouts",
            data=yaml_text,
            headers={**headers, "Content-Type": "application/yaml"},
        )
        assert (first.status, retry.status) == (201, 200), await retry.text()


async def test_metadata_build_is_the_key_when_no_header_is_sent() -> None:
    async with ApiRig() as rig:
        data = spec_data(build="1234")
        first = await rig.client.post(f"{API}/rollouts", json=data, headers=auth("ci"))
        retry = await rig.client.post(f"{API}/rollouts", json=data, headers=auth("ci"))
        assert (first.status, retry.status) == (201, 200)
        assert (await retry.json())["idempotency_key"] == "build:checkout:1234"
        # another service deployed by the same build is another rollout
        other = spec_data("payments", build="1234", name="payments")
        third = await rig.client.post(f"{API}/rollouts", json=other, headers=auth("ci"))
        assert third.status == 201, await third.text()


async def test_same_key_with_another_spec_is_409_naming_the_rollout() -> None:
    async with ApiRig() as rig:
        headers = {**auth("ci"), "Idempotency-Key": "pipeline-78"}
        first = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=headers)
        changed = spec_data(steps=[{"weight": 50, "bake": "1m"}, {"weight": 100}])
        second = await rig.client.post(f"{API}/rollouts", json=changed, headers=headers)
        body = await problem(second, 409)
        assert body["rollout_id"] == (await first.json())["id"]
        assert "different spec" in body["detail"]
        assert len(await rig.store.list()) == 1


class RacingStore(MemoryStore):
    """Holds the first two key lookups until both have happened: two retries in a race."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = asyncio.Barrier(2)
        self.lookups = 0

    async def find_by_key(self, idempotency_key: str) -> Any:
        found = await super().find_by_key(idempotency_key)
        self.lookups += 1
        if self.lookups <= 2:
            await self.barrier.wait()
        return found


async def test_two_identical_starts_racing_create_one_rollout() -> None:
    store = RacingStore()
    async with ApiRig(store=store) as rig:
        headers = {**auth("ci"), "Idempotency-Key": "race"}
        responses = await asyncio.gather(
            *(rig.client.post(f"{API}/rollouts", json=spec_data(), headers=headers) for _ in "ab")
        )
        assert sorted(r.status for r in responses) == [200, 201]
        ids = {(await r.json())["id"] for r in responses}
        assert len(ids) == 1
        assert len(await store.list()) == 1
        assert store.lookups == 3, "the loser looked its key up again after DuplicateKey"


async def test_a_target_held_by_a_live_rollout_is_409_naming_it() -> None:
    async with ApiRig() as rig:
        first = await rig.client.post(f"{API}/rollouts", json=spec_data(), headers=auth("ci"))
        changed = spec_data(steps=[{"weight": 50}, {"weight": 100}])
        second = await rig.client.post(f"{API}/rollouts", json=changed, headers=auth("ci"))
        body = await problem(second, 409)
        live = (await first.json())["id"]
        assert body["rollout_id"] == live
        assert live in body["detail"]
        assert body["target"] == "lambda-alias/us-east-1/checkout/live"


# ---------------------------------------------------------------- errors


async def test_invalid_spec_is_422_with_every_problem_by_path() -> None:
    async with ApiRig() as rig:
        data = spec_data(steps=[{"weight": 50}, {"weight": 40}])
        data["spec"]["stpes"] = []
        response = await rig.client.post(f"{API}/rollouts", json=data, headers=auth("ci"))
        body = await problem(response, 422)
        paths = {e["path"]: e["message"] for e in body["errors"]}
        assert "spec.steps[1].weight" in paths
        assert paths["spec.stpes"].startswith("unknown field 'stpes'; did you mean 'steps'?")
        assert await rig.store.list() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "JSON syntax error"),
        (b"spec: [unclosed", "YAML syntax error"),
        (b"\xff\xfe", "not UTF-8"),
        (b"", "empty"),
        (b"- a\n- b\n", "mapping"),
    ],
)
async def test_unreadable_body_is_400_naming_the_problem(body: bytes, expected: str) -> None:
    async with ApiRig() as rig:
        headers = {**auth("ci"), "Content-Type": "application/yaml"}
        response = await rig.client.post(f"{API}/rollouts", data=body, headers=headers)
        status = 422 if expected == "mapping" else 400
        found = await problem(response, status)
        assert expected in found["detail"]


async def test_body_over_1_mib_is_413() -> None:
    async with ApiRig() as rig:
        response = await rig.client.post(
            f"{API}/rollouts",
            data=b"#" * (1024 * 1024 + 1),
            headers={**auth("ci"), "Content-Type": "application/yaml"},
        )
        await problem(response, 413)


async def test_unknown_route_and_wrong_method_are_problems() -> None:
    async with ApiRig() as rig:
        body = await problem(await rig.client.get("/api/v2/rollouts"), 404)
        assert "/api/v1/openapi.json" in body["detail"]
        response = await rig.client.delete(f"{API}/rollouts", headers=auth("ana"))
        body = await problem(response, 405)
        assert response.headers["Allow"] == "GET, POST"


async def test_unknown_rollout_is_404() -> None:
    async with ApiRig() as rig:
        for path in ("0123456789abcdef012345", "not-an-id"):
            await problem(
                await rig.client.get(f"{API}/rollouts/{path}", headers=auth("reader")), 404
            )
            response = await rig.client.post(
                f"{API}/rollouts/{path}/abort", json={"reason": "x"}, headers=auth("ana")
            )
            await problem(response, 404)


async def test_command_out_of_phase_is_409_with_the_phase() -> None:
    async with ApiRig() as rig:
        r = await rig.submit()
        await rig.wait_phase(r.id, Phase.BAKING)
        response = await rig.client.post(f"{API}/rollouts/{r.id}/resume", headers=auth("ana"))
        body = await problem(response, 409)
        assert body["phase"] == "baking"
        assert "it is not paused" in body["detail"]


@pytest.mark.parametrize(
    ("command", "body", "status", "path"),
    [
        ("abort", {}, 422, "reason"),
        ("abort", {"reason": ""}, 422, "reason"),
        ("promote", {"full": "yes please"}, 422, "full"),
        ("pause", {"why": "x"}, 422, "why"),
        ("promote", [], 400, None),
    ],
)
async def test_bad_command_body_names_the_field(
    command: str, body: Any, status: int, path: str | None
) -> None:
    async with ApiRig() as rig:
        r = await rig.submit()
        await rig.wait_phase(r.id, Phase.BAKING)
        response = await rig.client.post(
            f"{API}/rollouts/{r.id}/{command}", json=body, headers=auth("ana")
        )
        found = await problem(response, status)
        if path is not None:
            assert [e["path"] for e in found["errors"]] == [path]
        assert (await rig.store.get(r.id)).phase == Phase.BAKING


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("phase=nope", "phase"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("before=zzz", "before"),
        ("phse=baking", "phse"),
    ],
)
async def test_bad_list_parameters_are_400(query: str, name: str) -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(f"{API}/rollouts?{query}", headers=auth("reader"))
        body = await problem(response, 400)
        assert body["errors"][0]["path"] == f"query.{name}"


async def test_a_cursor_naming_no_rollout_is_404() -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(
            f"{API}/rollouts?before=0123456789abcdef012345", headers=auth("reader")
        )
        body = await problem(response, 404)
        assert "next_before" in body["detail"]


async def test_an_unexpected_error_is_a_500_problem_with_a_request_id_and_no_trace() -> None:
    class Broken(MemoryStore):
        async def list(self, **kwargs: Any) -> Any:
            raise RuntimeError("disk on fire at /secret/path")

    async with ApiRig(store=Broken()) as rig:
        with structlog.testing.capture_logs() as logs:
            response = await rig.client.get(f"{API}/rollouts", headers=auth("reader"))
        body = await problem(response, 500)
        assert "disk on fire" not in json.dumps(body)
        assert body["request_id"] == response.headers["X-Request-Id"]
        logged = [e for e in logs if e["event"] == "api.unexpected_error"]
        assert logged
        assert logged[0]["request_id"] == body["request_id"]


# ---------------------------------------------------------------- reading


async def test_list_filters_and_pages() -> None:
    async with ApiRig() as rig:
        ids = []
        for fn in ("a-fn", "b-fn", "c-fn"):
            ids.append((await rig.submit(spec_data(fn))).id)
        await rig.engine.command(ids[0], Command("abort", "t"))
        await rig.wait_phase(ids[0], Phase.ROLLED_BACK)
        response = await rig.client.get(f"{API}/rollouts?limit=2", headers=auth("reader"))
        page = await response.json()
        assert [r["id"] for r in page["items"]] == [ids[2], ids[1]]
        response = await rig.client.get(
            f"{API}/rollouts?limit=2&before={page['next_before']}", headers=auth("reader")
        )
        last = await response.json()
        assert [r["id"] for r in last["items"]] == [ids[0]]
        assert last["next_before"] is None
        response = await rig.client.get(f"{API}/rollouts?phase=rolled_back", headers=auth("reader"))
        assert [r["id"] for r in (await response.json())["items"]] == [ids[0]]
        target = "lambda-alias/default-region/b-fn/live"
        response = await rig.client.get(f"{API}/rollouts?target={target}", headers=auth("reader"))
        assert [r["id"] for r in (await response.json())["items"]] == [ids[1]]


async def test_a_rollout_says_why_it_rolled_back_or_paused_as_data() -> None:
    async with ApiRig() as rig:
        aborted = (await rig.submit(spec_data("a-fn"))).id
        paused = (await rig.submit(spec_data("b-fn"))).id
        await rig.wait_phase(aborted, Phase.BAKING)
        await rig.engine.command(aborted, Command("abort", "ana", reason="bad build"))
        await rig.engine.command(paused, Command("pause", "ana"))
        await rig.wait_phase(aborted, Phase.ROLLED_BACK)
        response = await rig.client.get(f"{API}/rollouts/{aborted}", headers=auth("reader"))
        body = await response.json()
        assert (body["cause"], body["paused_cause"]) == ("aborted", None)
        response = await rig.client.get(f"{API}/rollouts/{paused}", headers=auth("reader"))
        body = await response.json()
        assert (body["phase"], body["cause"], body["paused_cause"]) == ("paused", None, "manual")
        response = await rig.client.get(f"{API}/rollouts/{aborted}/events", headers=auth("reader"))
        started = [e for e in (await response.json())["items"] if e["kind"] == "rollback.started"]
        assert started[0]["data"]["cause"] == "aborted"


async def test_events_as_json_pages() -> None:
    async with ApiRig() as rig:
        r = await rig.submit()
        await rig.wait_phase(r.id, Phase.BAKING)
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events?limit=2", headers=auth("reader")
        )
        page = await response.json()
        assert [e["seq"] for e in page["items"]] == [1, 2]
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events?after={page['next_after']}", headers=auth("reader")
        )
        rest = await response.json()
        assert rest["items"][0]["seq"] == 3
        assert rest["items"][-1]["kind"] == "bake.started"


# ---------------------------------------------------------------- the event stream


async def read_sse(response: Any, stop: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, id, data) messages until ``stop(messages)`` or the stream ends."""
    messages: list[tuple[str, str | None, dict[str, Any]]] = []
    kind, ident, data = "message", None, []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line == "":
            if data:
                messages.append((kind, ident, json.loads("\n".join(data))))
                if stop(messages):
                    return messages
            kind, ident, data = "message", None, []
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
    return messages


APPROVAL = [{"weight": 50, "approval": True}, {"weight": 100}]


async def test_stream_resumes_after_a_lost_connection_without_gaps_or_repeats() -> None:
    async with ApiRig() as rig:
        r = await rig.submit(spec_data(steps=APPROVAL))
        sse = {**auth("reader"), "Accept": "text/event-stream"}
        response = await rig.client.get(f"{API}/rollouts/{r.id}/events", headers=sse)
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await read_sse(response, lambda m: m[-1][2]["kind"] == "step.awaiting_approval")
        response.close()  # the connection is lost here
        seen = int(first[-1][1] or 0)
        assert [int(m[1] or 0) for m in first] == list(range(1, seen + 1))

        promote = await rig.client.post(f"{API}/rollouts/{r.id}/promote", headers=auth("ana"))
        assert promote.status == 200
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events", headers={**sse, "Last-Event-ID": str(seen)}
        )
        rest = await read_sse(response, lambda m: m[-1][0] == "end")
        events = [m for m in rest if m[0] == "message"]
        assert [int(m[1] or 0) for m in events] == list(range(seen + 1, seen + 1 + len(events)))
        assert events[0][2]["kind"] == "command.promote"
        assert events[-1][2]["kind"] == "rollout.succeeded"
        assert rest[-1][0] == "end"
        assert rest[-1][2]["rollout"]["phase"] == "succeeded"
        stored = await rig.store.events(r.id)
        assert len(stored) == seen + len(events)


async def test_stream_of_an_ended_rollout_replays_and_ends() -> None:
    async with ApiRig() as rig:
        r = await rig.submit(spec_data(steps=[{"weight": 100}]))
        await rig.wait_phase(r.id, Phase.SUCCEEDED)
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events?after=2",
            headers={**auth("reader"), "Accept": "text/event-stream"},
        )
        messages = await read_sse(response, lambda m: False)
        assert messages[0][1] == "3"
        assert messages[-1][0] == "end"


async def test_stream_sends_keep_alives_while_nothing_happens() -> None:
    async with ApiRig(heartbeat=0.05) as rig:
        r = await rig.submit(spec_data(steps=APPROVAL))
        await rig.wait_phase(r.id, Phase.AWAITING_APPROVAL)
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events",
            headers={**auth("reader"), "Accept": "text/event-stream", "Last-Event-ID": "1000"},
        )
        lines = []
        async with asyncio.timeout(5):
            while len([x for x in lines if x.startswith(b": keep-alive")]) < 2:
                lines.append(await response.content.readline())
        response.close()


async def test_a_stream_whose_store_fails_midway_ends_and_is_logged() -> None:
    class Flaky(MemoryStore):
        reads = 0

        async def events(self, rollout_id: str, after: int = 0, limit: int = 1000) -> Any:
            Flaky.reads += 1
            if Flaky.reads > 1:
                raise RuntimeError("database is locked")
            return await super().events(rollout_id, after, limit)

    async with ApiRig(store=Flaky()) as rig:
        r = await rig.submit(spec_data(steps=[{"weight": 100}]))
        await rig.wait_phase(r.id, Phase.SUCCEEDED)
        with structlog.testing.capture_logs() as logs:
            response = await rig.client.get(
                f"{API}/rollouts/{r.id}/events",
                headers={**auth("reader"), "Accept": "text/event-stream"},
            )
            messages = await read_sse(response, lambda m: False)
        assert response.status == 200
        assert messages[0][1] == "1"
        assert all(kind != "end" for kind, _, _ in messages), "cut short, so no end event"
        assert any(e["event"] == "api.stream_failed" for e in logs)


async def test_stream_with_a_bad_last_event_id_is_400() -> None:
    async with ApiRig() as rig:
        r = await rig.submit()
        response = await rig.client.get(
            f"{API}/rollouts/{r.id}/events",
            headers={**auth("reader"), "Accept": "text/event-stream", "Last-Event-ID": "abc"},
        )
        await problem(response, 400)


# ---------------------------------------------------------------- health, readiness, metrics


async def test_readyz_reports_a_store_that_cannot_be_used() -> None:
    async with ApiRig() as rig:
        assert (await rig.client.get("/readyz")).status == 200
        await rig.store.close()
        body = await problem(await rig.client.get("/readyz"), 503)
        assert "store" in body["detail"]


async def test_readyz_and_healthz_before_the_engine_runs() -> None:
    rig = ApiRig()
    await rig.client.start_server()
    try:
        body = await problem(await rig.client.get("/readyz"), 503)
        assert "engine" in body["detail"]
        assert (await rig.client.get("/healthz")).status == 503
    finally:
        await rig.client.close()


async def test_metrics_are_served_in_prometheus_format() -> None:
    async with ApiRig() as rig:
        r = await rig.submit()
        await rig.wait_phase(r.id, Phase.BAKING)
        response = await rig.client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
        assert 'canary_rollouts{phase="baking"} 1.0' in text
        assert "canary_rollouts_started_total 1.0" in text
        shift = 'canary_backend_call_duration_seconds_count{operation="shift",strategy="memory"}'
        assert f"{shift} 1.0" in text
        assert r.id not in text, "rollout ids are never labels"

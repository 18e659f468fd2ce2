"""The rollout routes: start (idempotent), list, get, commands, and the event log.

A CI job that retries a start after a timeout must never start a second rollout, so a
start carries an idempotency key (the ``Idempotency-Key`` header, else the spec's
``metadata.build``): the same key with the same spec answers 200 with the rollout that
key started; the same key with another spec is a 409. Two identical requests racing each
other are settled by the store's unique key: the loser answers like a retry.

A body is read only when its ``Content-Type`` says JSON (or YAML, for a spec): a form, an
image or no type at all is a 415, so a client never has its mistake guessed into a
rollout. Numbers in the query and in ``Last-Event-ID`` are ASCII digits only.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canary import quarantine
from canary.api.auth import Principal
from canary.api.context import CANONICAL, ENGINE, protected
from canary.api.problems import ProblemError, bad_request
from canary.api.stream import stream_events, stream_rollouts, wants_stream
from canary.api.views import event_data, rollout_detail, rollout_summary
from canary.machine import Command, CommandName, CommandRejected
from canary.model import Phase, Rollout
from canary.store.base import DuplicateKey, NotFound, Quarantined, TargetBusy, Unreadable
from config.errors import Problem, SpecError, problems_from_validation, shown
from config.spec import RolloutDocument, load_data, load_json, parse_document

PREFIX = "/api/v1"
KEY_PATTERN = re.compile(r"^[!-~]{1,200}$")  # printable ASCII, no spaces
ID_PATTERN = re.compile(r"^[0-9a-f]{22}$")
MAX_LIMIT = 200
MAX_SEQ = 2**53 - 1  # the largest integer every JSON client reads exactly


def location(rollout_id: str) -> str:
    return f"{PREFIX}/rollouts/{rollout_id}"


JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def rollout_id_of(request: web.Request) -> str:
    rid = request.match_info["id"]
    if not ID_PATTERN.match(rid):
        raise ProblemError(404, f"no rollout {shown(rid)}; a rollout id is 22 hex digits")
    return rid


async def load(request: web.Request, rid: str) -> Rollout:
    try:
        return await request.app[ENGINE].store.get(rid)
    except Unreadable:
        raise
    except NotFound:
        raise ProblemError(404, f"no rollout {rid!r}") from None


# ---------------------------------------------------------------- bodies


def require_media_type(request: web.Request, accepted: tuple[str, ...], what: str) -> None:
    """415 unless the body's Content-Type is one of ``accepted`` (checked before reading)."""
    given = request.headers.get("Content-Type")
    media = request.content_type if given else None  # aiohttp defaults a missing one
    if media not in accepted:
        raise ProblemError(
            415,
            f"{what} must be sent as {' or '.join(accepted)}; got "
            + (f"Content-Type {shown(media)}" if media else "no Content-Type")
            + f"; send it with Content-Type: {accepted[0]}",
            headers={"Accept-Post": ", ".join(accepted)},
        )


async def read_text(request: web.Request) -> str:
    raw = await request.read()  # over client_max_size: 413, turned into a problem
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"the body is not UTF-8 text (byte {exc.start}); send the spec as UTF-8 JSON or YAML",
            slug="malformed-body",
        ) from None


def summary(problems: list[Problem], shown_at_most: int = 3) -> str:
    """The first problems in one line; ``errors`` carries every one (up to a cap)."""
    text = "; ".join(str(p) for p in problems[:shown_at_most])
    more = len(problems) - shown_at_most
    return text + (f"; and {more} more (see errors)" if more > 0 else "")


def spec_problem(exc: SpecError, *, syntax: bool) -> ProblemError:
    if syntax:
        return ProblemError(
            400,
            summary(exc.problems),
            slug="malformed-body",
            title="The body is not a readable document",
            errors=exc.problems,
        )
    return ProblemError(
        422,
        f"the rollout spec has {len(exc.problems)} problem(s): " + summary(exc.problems),
        errors=exc.problems,
    )


async def read_document(request: web.Request) -> RolloutDocument:
    """The spec in the body: JSON or YAML (415 another type, 400 unreadable, 422 readable but
    invalid)."""
    require_media_type(request, (*JSON_TYPES, *YAML_TYPES), "a rollout spec")
    text = await read_text(request)
    try:
        data = load_data(text, "request body")
    except SpecError as exc:
        raise spec_problem(exc, syntax=True) from None
    try:
        return parse_document(data)
    except SpecError as exc:
        raise spec_problem(exc, syntax=False) from None


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Reason = Field(default=None, min_length=1, max_length=1000)


class PromoteBody(StrictBody):
    # strict: "yes" or 1 must not skip every gate left
    full: bool = Field(
        default=False, strict=True, description="skip the remaining steps and their gates"
    )
    reason: str | None = Reason


class PauseBody(StrictBody):
    reason: str | None = Reason


class ResumeBody(StrictBody):
    pass


class AbortBody(StrictBody):
    reason: str = Field(min_length=1, max_length=1000)


BODIES: dict[CommandName, type[StrictBody]] = {
    "promote": PromoteBody,
    "pause": PauseBody,
    "resume": ResumeBody,
    "abort": AbortBody,
}


async def read_command(request: web.Request, name: CommandName) -> StrictBody:
    text = (await read_text(request)).strip()
    if text:  # an empty body needs no type (some clients send octet-stream with it)
        require_media_type(request, JSON_TYPES, f"the body of {name}")
    try:
        data: Any = load_json(text, "the body") if text else {}
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"the body is not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}",
            slug="malformed-body",
        ) from None
    except SpecError as exc:  # too deep, too big, not Unicode
        raise spec_problem(exc, syntax=True) from None
    if not isinstance(data, dict):
        raise bad_request(
            f"the body of {name} must be a JSON object, e.g. "
            + ('{"reason": "..."}' if name == "abort" else "{}"),
            slug="malformed-body",
        )
    try:
        return BODIES[name].model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc)
        raise ProblemError(
            422,
            f"the {name} body is not valid: " + summary(problems),
            slug="invalid-body",
            title="Invalid command body",
            errors=problems,
        ) from None


# ---------------------------------------------------------------- start


def idempotency_key(request: web.Request, document: RolloutDocument) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        if not KEY_PATTERN.match(header):
            raise bad_request(
                "Idempotency-Key must be 1-200 printable ASCII characters without spaces",
                "header.Idempotency-Key",
            )
        return header
    build = document.metadata.build
    # Scoped by name: two services deployed by one CI build share its build id.
    return f"build:{document.metadata.name}:{build}" if build else None


def replay(existing: Rollout, document: RolloutDocument, key: str) -> web.Response:
    """The answer to a retried start: the same rollout (200), or 409 if the spec differs."""
    if existing.document.to_data() != document.to_data():
        raise ProblemError(
            409,
            f"idempotency key {key!r} already started rollout {existing.id} with a different "
            "spec; use a new key (Idempotency-Key, or metadata.build) for a new rollout",
            slug="idempotency-conflict",
            title="Idempotency key reused with a different spec",
            extra={"rollout_id": existing.id},
        )
    return web.json_response(
        rollout_detail(existing), status=200, headers={"Location": location(existing.id)}
    )


@protected("deploy", "starting a rollout")
async def start(request: web.Request, principal: Principal) -> web.Response:
    engine = request.app[ENGINE]
    document = await read_document(request)
    document = request.app[CANONICAL](document)  # one key per traffic, before comparing
    key = idempotency_key(request, document)
    if key is not None:
        try:
            existing = await engine.store.find_by_key(key)
        except Unreadable as exc:
            raise quarantined_problem(
                exc.quarantined, f"idempotency key {key!r} started it"
            ) from None
        if existing is not None:
            return replay(existing, document, key)
    try:
        rollout = await engine.submit(document, actor=principal.name, idempotency_key=key)
    except DuplicateKey as exc:  # an identical request won the race: answer as its retry
        winner = await engine.store.find_by_key(exc.key)
        if winner is None:  # pragma: no cover - the store just said it exists
            raise
        return replay(winner, document, exc.key)
    except TargetBusy as exc:
        raise ProblemError(
            409,
            str(exc),
            slug="target-busy",
            title="A live rollout already holds the target",
            extra={"rollout_id": exc.rollout_id, "target": exc.target_key},
        ) from None
    return web.json_response(
        rollout_detail(rollout), status=201, headers={"Location": location(rollout.id)}
    )


# ---------------------------------------------------------------- read


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,16}", raw) or not low <= int(raw) <= high:
        raise bad_request(
            f"{name} must be a whole number (ASCII digits) from {low} to {high}, not {shown(raw)}",
            f"query.{name}",
        )
    return int(raw)


@protected("read", "listing rollouts", query=("phase", "target", "limit", "before"))
async def list_rollouts(request: web.Request, principal: Principal) -> web.StreamResponse:
    store = request.app[ENGINE].store
    phase: Phase | None = None
    if "phase" in request.query:
        try:
            phase = Phase(request.query["phase"])
        except ValueError:
            raise bad_request(
                f"unknown phase {shown(request.query['phase'])}; expected one of "
                + ", ".join(p.value for p in Phase),
                "query.phase",
            ) from None
    target = request.query.get("target")
    if wants_stream(request):  # a live list: each change of a rollout, from now on
        paged = sorted({"limit", "before"} & set(request.query))
        if paged:
            raise bad_request(
                f"{paged[0]} pages the JSON list; a stream of changes has no pages (drop it, "
                "or ask for application/json)",
                f"query.{paged[0]}",
            )
        return await stream_rollouts(request, phase.value if phase else None, target)
    limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
    before = request.query.get("before")
    if before is not None and not ID_PATTERN.match(before):
        raise bad_request(
            f"before must be a rollout id (22 hex digits), not {shown(before)}", "query.before"
        )
    try:
        page = await store.list(phase=phase, target=target, limit=limit + 1, before=before)
    except NotFound:  # a well-formed cursor naming nothing: like a page that is not there
        raise ProblemError(
            404,
            f"before names no rollout: {shown(before)}; pass next_before from a previous page",
        ) from None
    more = len(page) > limit
    page = page[:limit]
    return web.json_response(
        {
            "items": [
                rollout_summary(r) if isinstance(r, Rollout) else quarantine.summary(r)
                for r in page
            ],
            "next_before": page[-1].id if more else None,
        }
    )


@protected("read", "reading a rollout")
async def get_rollout(request: web.Request, principal: Principal) -> web.Response:
    try:
        return web.json_response(rollout_detail(await load(request, rollout_id_of(request))))
    except Unreadable as exc:  # its record no longer validates: shown as stored, with why
        return web.json_response(quarantine.detail(exc.quarantined))


@protected("read", "reading a rollout's events", query=("after", "limit"))
async def events(request: web.Request, principal: Principal) -> web.StreamResponse:
    rid = rollout_id_of(request)
    after = int_param(request, "after", 0, 0, MAX_SEQ)
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None:  # a reconnecting event stream says where it stopped
        value = last_id.strip()
        if not re.fullmatch(r"[0-9]{1,15}", value):
            raise bad_request(
                f"Last-Event-ID must be an event's seq (a whole number in ASCII digits), not "
                f"{shown(last_id)}",
                "header.Last-Event-ID",
            )
        after = int(value)
    limit = int_param(request, "limit", 1000, 1, 1000)
    if wants_stream(request):
        return await stream_events(request, rid, after)
    try:
        found = await request.app[ENGINE].store.events(rid, after=after, limit=limit)
    except NotFound:
        raise ProblemError(404, f"no rollout {rid!r}") from None
    return web.json_response(
        {
            "items": [event_data(e) for e in found],
            "next_after": found[-1].seq if found else after,
        }
    )


# ---------------------------------------------------------------- commands


async def command(request: web.Request, principal: Principal, name: CommandName) -> web.Response:
    rid = rollout_id_of(request)
    body = await read_command(request, name)
    try:
        rollout = await request.app[ENGINE].command(
            rid,
            Command(
                name,
                principal.name,
                full=bool(getattr(body, "full", False)),
                reason=getattr(body, "reason", None),
            ),
        )
    except Unreadable as exc:  # its record no longer validates: only an abort applies
        try:
            detail = await quarantine.command(
                request.app[ENGINE],
                exc.quarantined,
                name,
                actor=principal.name,
                reason=getattr(body, "reason", None),
            )
        except quarantine.Refused as refused:
            raise quarantined_problem(exc.quarantined, str(refused)) from None
        return web.json_response(detail)
    except NotFound:
        raise ProblemError(404, f"no rollout {rid!r}") from None
    except CommandRejected as exc:
        current = await load(request, rid)
        raise ProblemError(
            409,
            str(exc),
            slug="command-rejected",
            title="The command does not apply in the rollout's phase",
            extra={"phase": current.phase.value},
        ) from None
    return web.json_response(rollout_detail(rollout))


def quarantined_problem(q: Quarantined, detail: str) -> ProblemError:
    return ProblemError(
        409,
        detail if q.id in detail else f"rollout {q.id} is quarantined: {detail}",
        slug="rollout-quarantined",
        title="The rollout's stored record no longer validates",
        extra={"rollout_id": q.id, "phase": q.phase},
    )


def command_handler(name: CommandName) -> Any:
    @protected("operate", f"{name} (a command)")
    async def handler(request: web.Request, principal: Principal) -> web.Response:
        return await command(request, principal, name)

    handler.__name__ = name
    return handler


COMMANDS: tuple[Literal["promote", "pause", "resume", "abort"], ...] = (
    "promote",
    "pause",
    "resume",
    "abort",
)


def routes() -> list[web.RouteDef]:
    by_id = f"{PREFIX}/rollouts/{{id}}"
    return [
        web.post(f"{PREFIX}/rollouts", start),
        web.get(f"{PREFIX}/rollouts", list_rollouts, allow_head=False),
        web.get(by_id, get_rollout, allow_head=False),
        web.get(f"{by_id}/events", events, allow_head=False),
        *(web.post(f"{by_id}/{name}", command_handler(name)) for name in COMMANDS),
    ]

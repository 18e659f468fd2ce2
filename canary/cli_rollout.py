"""``canary rollout ...``: the API from a terminal or a CI job.

A CI job branches on the exit code, so each outcome has its own: 0 the rollout succeeded
(or the command was applied), 1 it rolled back or failed (or the daemon refused with a
409: busy target, command refused in the rollout's phase, quarantined rollout), 2 bad
usage (a malformed rollout id or ``--url`` included) or an invalid spec, 3 ``--wait`` ran
out of ``--timeout`` (the rollout goes on), 4 the daemon could not be reached or refused the
token. With ``--output json`` stdout is always JSON, a refusal included (the daemon's
problem). ``--wait`` survives a daemon restart: it reconnects the event stream where it
left off until the rollout ends or the timeout passes. A rollout id is checked before any
request and escaped into the path, so no argument can reach another route.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from canary.cli_support import (
    EXIT_OK,
    EXIT_OUTCOME,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Exit,
    friendly,
    stop,
)
from canary.client import (
    DEFAULT_URL,
    ApiError,
    Client,
    StreamEnd,
    StreamEvent,
    StreamLost,
    Unreachable,
    check_rollout_id,
    check_url,
)
from canary.model import Event
from canary.timeline import QUIET, describe, offset
from config.durations import display_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def exit_code_of(error: ApiError) -> int:
    if error.status in (401, 403):
        return EXIT_UNREACHABLE
    if error.status in (400, 404, 405, 406, 413, 415, 422):
        return EXIT_USAGE
    if error.status in (502, 503, 504):
        return EXIT_UNREACHABLE
    return EXIT_OUTCOME


def _hint(error: ApiError) -> str:
    if error.status == 401:
        return "; check --token / CANARY_TOKEN"
    if error.status == 403:
        return "; use a token with the role named above"
    return ""


def run_api(coro: Coroutine[Any, Any, T], output: str = "text") -> T:
    """Run ``coro``; API errors and unreachable daemons become exit codes with a message.

    With ``--output json`` the refusal is also printed on stdout as a problem (RFC 9457,
    as the daemon sent it: a busy target's problem names the live rollout's id), so a
    script reading stdout always gets JSON.
    """
    try:
        return asyncio.run(coro)
    except ApiError as exc:
        if output == "json":
            emit_json({"status": exc.status} | exc.problem)
        if exc.errors:  # one line per problem, each with its field's path
            raise Exit(
                exit_code_of(exc),
                f"error: {exc.problem.get('title', 'invalid request')} (HTTP {exc.status})",
                [f"{e.get('path') or '(document)'}: {e.get('message')}" for e in exc.errors],
            ) from None
        raise Exit(exit_code_of(exc), f"error: {exc}{_hint(exc)}") from None
    except Unreachable as exc:
        if output == "json":
            emit_json(
                {
                    "type": "urn:canary:problem:unreachable",
                    "title": "The daemon could not be reached",
                    "detail": str(exc),
                }
            )
        raise Exit(EXIT_UNREACHABLE, f"error: {exc}; check --url / CANARY_URL") from None


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    why = check_url(value)
    if why is not None:
        raise click.BadParameter(f"{value!r} is not the daemon's address: {why}")
    return value


def _rollout_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    why = check_rollout_id(value)
    if why is not None:
        raise click.BadParameter(f"{value!r} is not a rollout id: {why}")
    return value


def rollout_id_argument(func: F) -> F:
    """The ROLLOUT_ID argument, checked before any request (an id never names a route)."""
    return click.argument("rollout_id", callback=_rollout_id)(func)


def connection(func: F) -> F:
    """--url, --token and --output on every rollout command."""
    options = [
        click.option(
            "--url",
            envvar="CANARY_URL",
            default=DEFAULT_URL,
            show_default=True,
            callback=_url,
            help="the daemon's address [env CANARY_URL]",
        ),
        click.option(
            "--token",
            envvar="CANARY_TOKEN",
            default=None,
            help="bearer token [env CANARY_TOKEN]",
        ),
        click.option(
            "--output",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: machine-readable on stdout",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def describe_rollout(r: dict[str, Any]) -> str:
    quarantine = r.get("quarantine")
    if quarantine:  # its stored record no longer validates: the daemon does not run it
        return f"{r['id']}  {r['name']}  {r['phase']}  QUARANTINED: {quarantine['error']}"
    text = (
        f"{r['id']}  {r['name']}  {r['phase']}  step {r['step']}/{r['steps']}  "
        f"canary {r['weight']:g}%"
    )
    why = r.get("reason") or r.get("paused_reason")
    return f"{text}  ({why})" if why else text


class Progress:
    """Prints events as the timeline does: time since start, step, weight, decision."""

    def __init__(self, rollout: dict[str, Any], *, verbose: bool, json_lines: bool) -> None:
        self.start = datetime.fromisoformat(rollout["created_at"])
        self.steps = rollout["steps"]
        self.verbose = verbose
        self.json_lines = json_lines

    def show(self, data: dict[str, Any], err: bool = False) -> None:
        if self.json_lines:
            click.echo(json.dumps(data), err=err)
            return
        event = Event.model_validate(data)
        if event.kind in QUIET and not self.verbose:
            return
        click.echo(
            f"{offset(event.at, self.start):>8}  {event.step:>2}/{self.steps:<2}  "
            f"{event.weight:>5g}%  {describe(event)}",
            err=err,
        )


async def follow(
    client: Client,
    rollout: dict[str, Any],
    progress: Progress,
    *,
    limit: float | None,
    output: str,
) -> dict[str, Any]:
    """Print the rollout's events until it ends; the final summary.

    Exit 3 after ``limit`` seconds, with the rollout as it is then on stdout (JSON output),
    so a CI script can still read its id and decide to abort it.
    """
    err = output == "json"

    async def watch() -> dict[str, Any]:
        async for item in client.follow(rollout["id"]):
            if isinstance(item, StreamEvent):
                progress.show(item.data, err=err)
            elif isinstance(item, StreamLost):
                click.echo(
                    f"  (event stream lost: {item.reason}; reconnecting in {item.delay:g}s)",
                    err=True,
                )
            elif isinstance(item, StreamEnd):
                return item.rollout
        raise AssertionError("the stream ended without an end event")  # pragma: no cover

    try:
        return await asyncio.wait_for(watch(), limit)
    except TimeoutError:
        seen, now = "", rollout
        try:
            now = await asyncio.wait_for(client.get(rollout["id"]), 10)
            seen = f"; it is {now['phase']} at step {now['step']}/{now['steps']}"
        except (ApiError, Unreachable, TimeoutError):
            pass
        if output == "json":
            emit_json(now)
        stop(
            EXIT_TIMEOUT,
            f"timed out after {display_duration(limit or 0)} waiting for rollout "
            f"{rollout['id']}{seen}. It goes "
            f"on without you: `canary rollout status {rollout['id']}`, or abort it with "
            f"`canary rollout abort {rollout['id']} --reason ...`",
        )


def outcome_code(final: dict[str, Any]) -> int:
    return EXIT_OK if final["phase"] == "succeeded" else EXIT_OUTCOME


def report_end(final: dict[str, Any], output: str) -> None:
    if output == "json":
        emit_json(final)
    else:
        click.echo(f"final: {describe_rollout(final)}")


# ---------------------------------------------------------------- commands


@click.group()
def rollout() -> None:
    """Start, watch and steer rollouts through the daemon's API.

    \b
    Exit codes: 0 succeeded (or done), 1 rolled back / failed / refused (409),
    2 usage, bad id or --url, invalid spec, 3 --wait timed out,
    4 daemon unreachable or token refused.
    """


@rollout.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False))
@click.option("--wait", is_flag=True, help="follow the rollout until it ends; exit 0 or 1")
@click.option("--timeout", help="with --wait: give up after this long (e.g. 45m); exit 3")
@click.option(
    "--idempotency-key",
    help="retries with the same key never start a second rollout (default: metadata.build)",
)
@click.option("-v", "--verbose", is_flag=True, help="also show write-ahead intents")
@connection
@friendly
def start(
    path: str,
    wait: bool,
    timeout: str | None,
    idempotency_key: str | None,
    verbose: bool,
    url: str,
    token: str | None,
    output: str,
) -> None:
    """Start the rollout in a spec file (YAML or JSON)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        stop(EXIT_USAGE, f"error: cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    limit = _duration(timeout) if timeout is not None else None
    is_json = path.endswith(".json")

    async def go() -> int:
        async with Client(url, token) as client:
            created, r = await client.start(text, yaml=not is_json, idempotency_key=idempotency_key)
            note = "started" if created else "already started with this key (a retry)"
            if output == "text" or wait:
                click.echo(f"{note}: {describe_rollout(r)}", err=output == "json")
            if not wait:
                if output == "json":
                    emit_json(r)
                return EXIT_OK
            progress = Progress(r, verbose=verbose, json_lines=False)
            final = await follow(client, r, progress, limit=limit, output=output)
            report_end(final, output)
            return outcome_code(final)

    sys.exit(run_api(go(), output))


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError:
        stop(EXIT_USAGE, f"error: --timeout {text!r} is not a duration; e.g. 45m or 1h30m")
    if seconds <= 0:
        stop(EXIT_USAGE, "error: --timeout must be longer than 0s")
    return seconds


@rollout.command()
@rollout_id_argument
@connection
@friendly
def status(rollout_id: str, url: str, token: str | None, output: str) -> None:
    """Show one rollout: phase, step, weight, targets."""

    async def go() -> dict[str, Any]:
        async with Client(url, token) as client:
            return await client.get(rollout_id)

    r = run_api(go(), output)
    if output == "json":
        emit_json(r)
        return
    click.echo(describe_rollout(r))
    if r.get("quarantine"):
        click.echo(f"  what to do: {r['quarantine']['fix']}")
    for t in r["targets"]:
        stable = t["stable"] or "?"
        click.echo(f"  {t['key']}: stable {stable}, canary {t['weight']:g}%")
    click.echo(f"  created {r['created_at']} by {r['created_by'] or '?'}")


@rollout.command(name="list")
@click.option("--phase", help="only rollouts in this phase")
@click.option("--target", help="only rollouts of this target key")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@connection
@friendly
def list_(
    phase: str | None, target: str | None, limit: int, url: str, token: str | None, output: str
) -> None:
    """List rollouts, newest first."""
    params = {"limit": str(limit)}
    if phase:
        params["phase"] = phase
    if target:
        params["target"] = target

    async def go() -> dict[str, Any]:
        async with Client(url, token) as client:
            return await client.list_rollouts(**params)

    page = run_api(go(), output)
    if output == "json":
        emit_json(page)
        return
    if not page["items"]:
        click.echo("no rollouts")
    for r in page["items"]:
        click.echo(describe_rollout(r))


def operate_command(
    name: str,
    doc: str,
    body: Callable[..., dict[str, Any]],
    *options: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> None:
    """Register ``canary rollout NAME ID [OPTIONS]``: POST the command, print the rollout."""

    def run(rollout_id: str, url: str, token: str | None, output: str, **given: Any) -> None:
        async def go() -> dict[str, Any]:
            async with Client(url, token) as client:
                return await client.command(rollout_id, name, body(**given))

        r = run_api(go(), output)
        if output == "json":
            emit_json(r)
        else:
            click.echo(f"{name}: {describe_rollout(r)}")

    run.__doc__ = doc
    command: Callable[..., Any] = connection(friendly(run))
    for option in reversed(options):
        command = option(command)
    rollout.command(name=name)(rollout_id_argument(command))


operate_command(
    "promote",
    "Move to the next step now (or, with --full, to 100%).",
    lambda full: {"full": full},
    click.option("--full", is_flag=True, help="skip every remaining step: straight to 100%"),
)
operate_command(
    "pause",
    "Pause: traffic stays, the bake clock stops.",
    lambda reason: {"reason": reason} if reason else {},
    click.option("--reason", help="recorded with the pause"),
)
operate_command(
    "resume", "Resume a paused rollout: re-apply its weight, continue the bake.", lambda: {}
)
operate_command(
    "abort",
    "Abort: every target goes back to its stable version.",
    lambda reason: {"reason": reason},
    click.option("--reason", required=True, help="why; recorded in the rollout's events"),
)


@rollout.command()
@rollout_id_argument
@click.option("--follow", "follow_", is_flag=True, help="keep printing until it ends; exit 0/1")
@click.option("-v", "--verbose", is_flag=True, help="also show write-ahead intents")
@connection
@friendly
def events(
    rollout_id: str, follow_: bool, verbose: bool, url: str, token: str | None, output: str
) -> None:
    """Print a rollout's events (JSON lines with --output json)."""

    async def go() -> int:
        async with Client(url, token) as client:
            r = await client.get(rollout_id)
            progress = Progress(r, verbose=verbose, json_lines=output == "json")
            if not follow_ or r.get("quarantine"):  # a quarantined rollout is never run
                for data in await client.events(rollout_id):
                    progress.show(data)
                if not follow_:
                    return EXIT_OK
                click.echo(f"{describe_rollout(r)}: nothing to follow", err=True)
                return EXIT_OUTCOME if r["live"] else outcome_code(r)
            final = await follow(client, r, progress, limit=None, output="text")
            if output == "text":
                click.echo(f"final: {describe_rollout(final)}")
            return outcome_code(final)

    sys.exit(run_api(go(), output))

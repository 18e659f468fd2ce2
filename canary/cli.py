"""The ``canary`` command.

Exit codes are part of the interface, since CI pipelines branch on them: 0 success, 1 the
rollout (or simulation, or preflight) did not come out as asked, 2 bad usage or an invalid
spec, 3 ``rollout start --wait`` timed out (the rollout goes on), 4 the daemon or a backend
could not be reached, or refused the token. Users never see a traceback: an
unexpected error prints one line and how to get the details (CANARY_DEBUG=1).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from canary import __version__
from canary.cli_rollout import rollout
from canary.cli_support import EXIT_OK, EXIT_OUTCOME, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE
from canary.cli_support import friendly as _friendly

__all__ = ["EXIT_OK", "EXIT_OUTCOME", "EXIT_TIMEOUT", "EXIT_UNREACHABLE", "EXIT_USAGE", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="canary")
def cli() -> None:
    """Progressive delivery: move a release to 100% of traffic in steps, judged on metrics."""


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings")
@_friendly
def serve(config_file: str | None) -> None:
    """Run the daemon: the engine, the store and the HTTP API."""
    from canary.daemon import run_daemon
    from config.settings import load_settings

    settings = load_settings(config_file)
    sys.exit(asyncio.run(run_daemon(settings)))


@cli.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--preflight", is_flag=True, help="also check every target and metric provider (read-only)"
)
@click.option(
    "--rate",
    callback=lambda _c, _p, v: _rate(v),
    help="requests per target, e.g. 20/min: also say how long the plan takes and whether "
    "its gates can judge (exit 1 if not)",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@_friendly
def validate(path: str, preflight: bool, rate: float | None, output: str) -> None:
    """Check a rollout spec and print each target's key; with --preflight, ask the backends."""
    from canary.estimate import estimate
    from config.settings import load_settings
    from config.spec import load_file

    document = load_file(path)
    plan = estimate(document, rate) if rate is not None else None
    settings = load_settings() if preflight else None
    document, notes = _canonical(document, settings)
    problems: list[str] = []
    if preflight:
        problems = notes + asyncio.run(_preflight(document, settings))
        notes = []
    keys = [t.key() for t in document.spec.targets]
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "valid": not problems,
                    "name": document.metadata.name,
                    "targets": keys,
                    "problems": problems,
                    "notes": notes,
                }
                | ({"estimate": plan.to_data()} if plan is not None else {})
            )
        )
    else:
        for problem in problems:
            click.echo(f"preflight: {problem}", err=True)
        for note in notes:
            click.echo(f"note: {note}", err=True)
        if not problems:
            click.echo(
                f"ok: {document.metadata.name}: {', '.join(keys)}; plan {document.describe_plan()}"
            )
        if plan is not None:
            click.echo("\n".join(plan.lines()))
    if problems or (plan is not None and not plan.can_judge):
        sys.exit(EXIT_OUTCOME)


def _rate(value: str | None) -> float | None:
    """``--rate`` in requests per second, or a usage error saying how to write it."""
    from canary.estimate import parse_rate

    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _canonical(document: Any, settings: Any) -> tuple[Any, list[str]]:
    """The document as a daemon with these settings would store it, and why not if not."""
    from config.errors import SpecError
    from config.settings import load_settings
    from config.spec import canonical_document
    from strategies.registry import Clients

    try:
        clients = Clients(settings if settings is not None else load_settings())
    except SpecError as exc:  # this machine's CANARY_* settings; the daemon has its own
        return document, [f"keys not made canonical, the settings here are invalid: {exc}"]
    try:
        return canonical_document(document, clients), []
    except SpecError as exc:
        return document, [
            f"{p} (the key shown is not the one the daemon will use)" for p in exc.problems
        ]
    finally:
        clients.close()


async def _preflight(document: Any, settings: Any) -> list[str]:
    from analysis.health import ProviderHealth
    from canary.daemon import build_providers, close_providers, unconfigured
    from strategies.base import StrategyError
    from strategies.registry import Clients, create_strategy

    clients = Clients(settings)
    problems = []
    providers = build_providers(settings, clients)
    try:
        for index, target in enumerate(document.spec.targets):
            try:
                strategy = create_strategy(target, None, clients)
                await strategy.validate()
            except StrategyError as exc:
                problems.append(f"spec.targets[{index}] ({target.key()}): {exc}")
        health = ProviderHealth(providers, unconfigured(settings, providers))
        problems += [
            f"spec.analysis: {p}" for p in await health.problems(document.spec.analysis.gates)
        ]
    finally:
        clients.close()
        close_providers(providers)
    return problems


@cli.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False))
@click.option("--scenario", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--expect",
    type=click.Choice(["succeeded", "rolled_back", "paused", "awaiting_approval", "failed"]),
    help="exit 1 unless the rollout ends in this phase",
)
@click.option(
    "--rate",
    callback=lambda _c, _p, v: _rate(v),
    help="requests per target, e.g. 20/min: also estimate the plan's length at that rate",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@click.option("-v", "--verbose", is_flag=True, help="also show write-ahead intents")
@_friendly
def simulate(
    path: str, scenario: str, expect: str | None, rate: float | None, output: str, verbose: bool
) -> None:
    """Dry-run a spec against scripted metrics on a virtual clock, and print the timeline."""
    from canary import logs
    from canary.estimate import estimate
    from canary.simulate import simulate as run
    from canary.timeline import outcome, render
    from config.scenario import load_scenario
    from config.spec import load_file

    logs.configure(level="warning", fmt="console")
    document = load_file(path)
    script = load_scenario(scenario)
    result = asyncio.run(run(document, script))
    plan = estimate(document, rate) if rate is not None else None
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "rollout": result.rollout.summary(),
                    "events": [e.model_dump(mode="json") for e in result.events],
                    "virtual_seconds": result.virtual_seconds,
                    "wall_seconds": result.wall_seconds,
                    "notes": result.notes,
                }
                | ({"estimate": plan.to_data()} if plan is not None else {}),
                indent=2,
            )
        )
    else:
        title = f"simulation of {document.metadata.name}"
        if script.description:
            title += f" — {script.description}"
        click.echo(title)
        click.echo("\n".join(render(result.rollout, result.events, verbose=verbose)))
        for note in result.notes:
            click.echo(f"note: {note}")
        click.echo(outcome(result.rollout))
        click.echo(
            f"simulated {result.virtual_seconds / 60:.1f} min in {result.wall_seconds:.2f} s"
        )
        if plan is not None:
            click.echo("\n".join(plan.lines()))
    if expect is not None and result.rollout.phase.value != expect:
        click.echo(f"expected {expect}, got {result.rollout.phase.value}", err=True)
        sys.exit(EXIT_OUTCOME)


@cli.command()
@click.option(
    "--linger",
    is_flag=True,
    help="keep the daemon and its dashboard up after the rollouts, until Ctrl-C",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="the dashboard's port on 127.0.0.1 (0: any free port)",
)
@_friendly
def demo(linger: bool, port: int) -> None:
    """Two Lambda rollouts against a local AWS emulator: one promoted, one rolled back.

    Prints the dashboard's URL (and a token made up for the run) while they run."""
    from canary.demo import main as run_demo

    sys.exit(run_demo(linger=linger, port=port))


cli.add_command(rollout)


def main() -> None:
    cli(prog_name="canary")

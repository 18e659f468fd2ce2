"""The JSON Schema of a rollout document, for editors and for checks before a spec is sent.

The schema is derived from the pydantic models in ``config.spec`` and kept in the repository
as ``config/schema.json``. Regenerate it after changing the models::

    python -m config.schema > config/schema.json

and check that the stored copy is current (exit status 1 when it is not)::

    python -m config.schema --check

The README's tables of target kinds, metric providers and presets are derived from the same
declarations; ``python -m config.schema --tables`` prints them (a test keeps the README's
copy equal to them).

The schema describes the shape of a document (fields, types, enums, required fields).
canary's own validator checks more: names, versions, regions, increasing weights, unique
gate names, presets per provider. A document that passes the schema can still be refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.spec import RolloutDocument

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "canary Rollout (apiVersion canary/v1)"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
REGENERATE = "python -m config.schema > config/schema.json"


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of what a user may write: field aliases, input types."""
    generated = RolloutDocument.model_json_schema(by_alias=True, mode="validation")
    result: dict[str, Any] = {"$schema": SCHEMA_DIALECT, **generated, "title": TITLE}
    return result


def render(document: dict[str, Any] | None = None) -> str:
    """The schema as stored: pretty-printed, sorted keys, one trailing newline."""
    return json.dumps(schema() if document is None else document, indent=2, sort_keys=True) + "\n"


def check(path: Path | None = None) -> str | None:
    """``None`` when ``path`` (default: config/schema.json) is current, otherwise why not."""
    path = SCHEMA_PATH if path is None else path
    try:
        stored = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}; run: {REGENERATE}"
    if stored != render():
        return f"{path} is stale; run: {REGENERATE}"
    return None


def tables() -> str:
    """The README's tables of kinds, providers and presets, from their declarations."""
    from analysis.hooks.registry import HOOKS
    from analysis.registry import PROVIDERS
    from strategies.registry import KINDS, PLANNED

    lines = ["| kind | what it shifts | module |", "|---|---|---|"]
    for kind in KINDS:
        module = kind.build.__module__.replace(".", "/") + ".py"
        lines.append(f"| `{kind.name}` | {kind.summary} | `{module}` |")
    for name, issue in PLANNED.items():
        lines.append(f"| `{name}` | not available in this version (refused): the {issue} issue | |")
    lines += ["", "| provider | how it measures | statistical checks | its settings |"]
    lines.append("|---|---|---|---|")
    for provider in PROVIDERS:
        series = "yes" if provider.series else "no (one value per window): use `relative`"
        own = provider.settings.model_fields if provider.settings is not None else {}
        settings = ", ".join(f"`CANARY_{name.upper()}`" for name in own) or "none of its own"
        lines.append(f"| `{provider.name}` | {provider.summary} | {series} | {settings} |")
    lines += ["", "| preset | provider | value | unit |", "|---|---|---|---|"]
    for provider in PROVIDERS:
        for preset in provider.presets:
            unit = preset.unit or ("ratio, 0 to 1" if preset.rate else "")
            lines.append(f"| `{preset.name}` | `{provider.name}` | {preset.summary} | {unit} |")
    lines += ["", "| hook kind | what it asks | points | its settings |", "|---|---|---|---|"]
    for hook in HOOKS:
        points = "gate points only" if hook.gate_only else "any point"
        own = hook.settings.model_fields if hook.settings is not None else {}
        named = [f"`CANARY_{name.upper()}`" for name in own] + ([hook.uses] if hook.uses else [])
        settings = ", ".join(named) or "none of its own"
        lines.append(f"| `{hook.name}` | {hook.summary} | {points} | {settings} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--check"]:
        problem = check(SCHEMA_PATH)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
        print(f"{SCHEMA_PATH} is up to date", file=sys.stderr)
        return 0
    if args == ["--tables"]:
        sys.stdout.write(tables())
        return 0
    if args:
        print(
            "usage: python -m config.schema > config/schema.json\n"
            "       python -m config.schema --check\n"
            "       python -m config.schema --tables",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's recipes and tables, held to what the code does.

A newcomer copies the token recipe, reads the exit-code table to write a CI job, and looks
up the target key that ``--target`` takes: each is checked here against the real thing.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from canary.api.problems import GENERIC
from canary.cli_rollout import exit_code_of
from canary.client import RETRYABLE, ApiError
from config.spec import load_file
from strategies.registry import kind_names

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after ``heading``."""
    rest = README[README.index(heading) :]
    rows = re.search(r"(^\|.*\|\n)+", rest, re.MULTILINE)
    assert rows is not None, f"no table after {heading!r}"
    lines = rows.group(0).splitlines()[2:]  # below the header and its rule
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_token_recipe_prints_only_the_hex_of_the_secret() -> None:
    block = re.search(r"```sh\n(secret=.*?sha256sum.*?)```", README, re.DOTALL)
    assert block is not None
    run = subprocess.run(
        ["bash", "-c", block.group(1) + 'echo "$secret"'],
        capture_output=True,
        text=True,
        check=True,
    )
    printed, secret = run.stdout.splitlines()
    assert printed == hashlib.sha256(secret.encode()).hexdigest()


def test_the_exit_code_table_names_every_refusal_of_the_daemon() -> None:
    by_status: dict[int, int] = {}
    for code, _, when in table_after("**Exit codes.**"):
        for status in re.findall(r"HTTP (\d{3})", when):
            by_status[int(status)] = int(code.strip("`"))
    answered = {status for status in GENERIC if status >= 400} | set(RETRYABLE)
    assert answered <= set(by_status), f"not in the table: {sorted(answered - set(by_status))}"
    for status, code in by_status.items():
        assert exit_code_of(ApiError(status, {})) == code, f"HTTP {status}"


@pytest.mark.parametrize(
    "example",
    sorted(p.name for p in (ROOT / "config" / "examples").glob("*.yaml")),
)
def test_every_example_targets_key_has_the_documented_form(example: str) -> None:
    forms = {kind.strip("`"): key.strip("`") for kind, key in table_after("**Target keys.**")}
    assert set(forms) == set(kind_names()), "one row per available kind"
    for target in load_file(ROOT / "config" / "examples" / example).spec.targets:
        pattern = re.sub(r"<[a-z_]+>", "[^/]+", re.escape(forms[target.kind]))
        assert re.fullmatch(pattern, target.key()), (target.key(), forms[target.kind])

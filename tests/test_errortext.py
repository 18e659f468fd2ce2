"""A backend's error body as one line (strategies.errortext): what every event shows."""

from __future__ import annotations

import pytest

from strategies.errortext import MAX_LINE, one_line, reduce_error

MOTO_500 = """<!doctype html>
<html lang=en>
<title>500 Internal Server Error</title>
<h1>Internal Server Error</h1>
<p>The server encountered an internal error and was unable to complete your request.</p>
"""


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (MOTO_500, "500 Internal Server Error"),
        ("<html><body><h1>Service &amp; gateway down</h1></body></html>", "Service & gateway down"),
        ("<html><body><p>\n  upstream\n  timed out </p></body></html>", "upstream timed out"),
        (
            "Traceback (most recent call last):\n  File x\nKeyError: 'a'",
            "Traceback (most recent call last):",
        ),
        ("\n\n  Rate   exceeded \n", "Rate exceeded"),
        ("a < b and c > d", "a < b and c > d"),  # not markup: kept as it is
        ("", ""),
    ],
)
def test_a_body_becomes_one_line(body: str, line: str) -> None:
    assert one_line(body) == line


def test_a_long_line_is_cut_with_an_ellipsis() -> None:
    line = one_line("x" * 1000)
    assert len(line) == MAX_LINE
    assert line.endswith("…")


@pytest.mark.parametrize(
    ("code", "body", "text"),
    [
        ("ThrottlingException", "Rate exceeded", "ThrottlingException: Rate exceeded"),
        (500, MOTO_500, "500 Internal Server Error"),  # the line already names the code
        ("AccessDenied", "", "AccessDenied"),
        ("AccessDenied", "AccessDenied", "AccessDenied"),
        (None, "boom\nmore", "boom"),
    ],
)
def test_reduce_error_gives_the_code_and_one_line(
    code: str | int | None, body: str, text: str
) -> None:
    assert reduce_error(code, body) == text

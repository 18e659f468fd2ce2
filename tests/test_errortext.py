"""A backend's error body as one line (strategies.errortext): what every event shows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
import structlog.testing

from strategies.errortext import MAX_LINE, one_line, reduce_error


@contextmanager
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    """Every log event, debug included, whatever level an earlier test configured."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logged:
            yield logged
    finally:
        structlog.configure(**before)


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


def test_the_whole_body_goes_to_the_debug_log() -> None:
    with debug_logs() as logged:
        reduce_error(500, MOTO_500, action="cloudwatch:GetMetricData")
    [event] = [e for e in logged if e["event"] == "backend.error_body"]
    assert event["body"] == MOTO_500
    assert event["log_level"] == "debug"
    assert event["action"] == "cloudwatch:GetMetricData"

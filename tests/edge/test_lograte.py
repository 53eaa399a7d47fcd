"""The log rate limiter: one record per kind per interval, the rest counted in one summary line."""
from __future__ import annotations

import logging

import pytest

from edge.lograte import RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def logged():
    """(logger, filter, clock, list of the messages that reached the handler)."""
    clock = Clock()
    filt = RateLimitFilter(interval_s=10.0, max_kinds=4, clock=clock)
    out: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    handler = Keep()
    handler.addFilter(filt)
    logger = logging.getLogger("test.lograte")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, filt, clock, out
    logger.removeHandler(handler)


def test_one_line_per_kind_per_interval_then_a_count(logged):
    logger, filt, clock, out = logged
    for i in range(1000):   # the per-connection detail differs; the kind is the template
        logger.warning("Invalid HTTP request from %s", f"10.0.0.{i % 250}")
    assert out == ["Invalid HTTP request from 10.0.0.0"]
    clock.t = 10.5
    assert filt.flush() == 1
    assert out[1].endswith("(999 more like this in the last 10 s)")
    assert filt.flush(force=True) == 0   # nothing new held back


def test_kinds_are_limited_separately_and_exceptions_by_type(logged):
    logger, _filt, _clock, out = logged
    for _ in range(5):
        logger.warning("a %d", 1)
        logger.warning("b %d", 2)
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            logger.error("accept failed", exc_info=True)
        try:
            raise ValueError("x")
        except ValueError:
            logger.error("accept failed", exc_info=True)
    assert out == ["a 1", "b 2", "accept failed", "accept failed"]


def test_next_interval_lets_one_through_and_summarises_the_last(logged):
    logger, _filt, clock, out = logged
    for _ in range(3):
        logger.warning("x")
    clock.t = 11
    logger.warning("x")
    assert out[0] == "x" and "2 more like this" in out[1] and out[2] == "x"


def test_kinds_are_bounded(logged):
    logger, filt, _clock, out = logged
    for i in range(100):   # an attacker choosing what gets logged cannot grow the filter
        logger.warning("kind %d" % i, extra={"rate_key": f"k{i}"})
    assert len(filt._kinds) <= 5 and len(out) <= 5


def test_rate_key_names_the_kind(logged):
    logger, _filt, _clock, out = logged
    logger.error("first text", extra={"rate_key": "same"})
    logger.error("other text", extra={"rate_key": "same"})
    assert out == ["first text"]

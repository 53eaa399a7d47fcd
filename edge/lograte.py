"""Rate-limited logging: one line per kind of event per interval, with a count of the rest.

Why: under a connection flood every connection can fail the same way (a garbage request, a
client gone mid-body, EMFILE on accept). Logged one by one, with tracebacks, that wrote 203 MB
in under a minute (issue 13). A kind is the logger, the level, the message template (not the
formatted text, so the per-connection address does not make each line new) and the exception
type; a record may name its kind itself with ``extra={"rate_key": ...}``. The first record of a
kind in an interval goes through as it is; the rest are counted and summarised in one line
("... 1234 more like this in the last 10 s") by `flush`, which the server calls every interval.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

# a record with this attribute set is let through: it is a summary, or its source limits itself
SUMMARY_ATTR = "snn_rate_limited"


class RateLimitFilter(logging.Filter):
    """A handler filter: let one record per kind through per `interval_s`; count the others.

    Put the same instance on every handler: a record that reaches two handlers is decided once.
    At most `max_kinds` kinds are tracked; past that, new kinds share one overflow kind, so the
    filter's own memory stays bounded whatever an attacker makes the server log.
    """

    def __init__(self, interval_s: float = 10.0, max_kinds: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = float(interval_s)
        self.max_kinds = int(max_kinds)
        self.clock = clock
        # kind -> [start of its interval, records suppressed in it, a sample record]
        self._kinds: dict[tuple, list] = {}
        self.suppressed_total = 0

    def kind(self, record: logging.LogRecord) -> tuple:
        key = getattr(record, "rate_key", None)
        if key is not None:
            return (record.name, record.levelno, str(key))
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        return (record.name, record.levelno, str(record.msg)[:200], exc)

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_snn_rate_pass", None)
        if decided is not None:
            return decided
        if getattr(record, SUMMARY_ATTR, False):
            record._snn_rate_pass = True
            return True
        key = self.kind(record)
        now = self.clock()
        state = self._kinds.get(key)
        if state is None and len(self._kinds) >= self.max_kinds:
            key = ("(other)", record.levelno, "log records of kinds beyond the tracked ones")
            state = self._kinds.get(key)
        if state is None or now - state[0] >= self.interval_s:
            if state is not None and state[1]:
                self._emit_summary(key, state, now)
            self._kinds[key] = [now, 0, None]
            record._snn_rate_pass = True
            return True
        state[1] += 1
        state[2] = record
        self.suppressed_total += 1
        record._snn_rate_pass = False
        return False

    def flush(self, force: bool = False) -> int:
        """Summarise every kind whose interval is over (all of them with `force`) in one line
        each, and forget kinds that have been quiet for a whole interval. Returns lines written."""
        now = self.clock()
        written = 0
        for key, state in list(self._kinds.items()):
            if not force and now - state[0] < self.interval_s:
                continue
            if state[1]:
                self._emit_summary(key, state, now)
                written += 1
                state[0], state[1], state[2] = now, 0, None
            else:
                del self._kinds[key]
        return written

    def _emit_summary(self, key: tuple, state: list, now: float) -> None:
        sample: logging.LogRecord | None = state[2]
        if sample is None:
            return
        try:
            text = sample.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break the summary
            text = str(sample.msg)
        logger = logging.getLogger(sample.name)
        logger.log(sample.levelno, "%s (%d more like this in the last %.0f s)", text.splitlines()[0][:300],
                   state[1], max(now - state[0], 0.0), extra={SUMMARY_ATTR: True})


def install(interval_s: float = 10.0, logger_names: Iterable[str] = ("", "uvicorn", "uvicorn.error",
                                                                     "uvicorn.access")) -> RateLimitFilter:
    """Put one `RateLimitFilter` on every handler of the named loggers ('' is the root) and
    return it. Call after logging is configured (uvicorn configures its loggers in its Config)."""
    filt = RateLimitFilter(interval_s)
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            for old in [f for f in handler.filters if isinstance(f, RateLimitFilter)]:
                handler.removeFilter(old)
            handler.addFilter(filt)
    return filt

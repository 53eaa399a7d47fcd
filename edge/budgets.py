"""What the edge spends on frames that have not authenticated (issue 21 items 3, 4, 8; docs/PROTOCOL.md §6).

An attacker can send datagrams from as many addresses as they like, and spoof any of them,
including a device's own. So nothing here trusts an address alone, and nothing an attacker can
send without a key charges a budget that a device's own frames need:

- **Trusted pairs go first.** A frame whose (source, claimed device id) is the pair that device
  last authenticated from, within `pair_ttl_s`, skips the budgets below; its failures (someone
  spoofing that exact pair) charge only that pair's own failure budget (`pair_fail_rate`), past
  which it is treated like any other frame.
- **A global budget of CPU** (`fail_cpu`: seconds per second, measured around each failed
  verification) bounds what every failing frame together may cost, however many addresses send
  them; past it, untrusted frames are dropped before any decoding (`unverified`).
- **Per claimed device id** (`claim_fail_rate`): frames that fail authentication while claiming
  a device id (the MIC guesses of an online forger) are counted against that id; past its budget,
  untrusted frames claiming it are dropped unverified. A guesser gets at most this many MIC
  checks per second per device, from any number of addresses.
- **Per source** (`source_fail_rate`): one address that keeps failing is dropped before decoding
  (`rate_limited`), so a single source cannot spend the whole global budget.

A device's rate budget (`device_rate`, edge.core) is charged only by frames that authenticated
for it, so failures claiming its id cannot lock it out. The claimed id is read from the frame's
first two bytes (where every DATA block carries it) before any decoding: a frame whose id bits
the link flipped is charged to the wrong id, which only matters under attack.
"""
from __future__ import annotations

import time

from edge.auth import TokenBuckets

UNTRUSTED, TRUSTED = 0, 1


class FailureBudgets:
    """The budgets of unauthenticated work, consulted before a frame is decoded and charged after
    it failed. Not thread-safe: the event loop only."""

    def __init__(self, fail_cpu: float = 0.25, claim_fail_rate: float = 10.0, source_fail_rate: float = 200.0,
                 source_fail_burst: float = 400.0, pair_fail_rate: float = 2000.0,
                 pair_ttl_s: float = 600.0) -> None:
        self.fail_cpu = fail_cpu                  # CPU seconds per second (0: no limit)
        self._cpu_burst = fail_cpu / 5          # a fifth of a second of the budget
        self._cpu_left = self._cpu_burst
        self._cpu_at = time.perf_counter()   # the clock of every `now` here
        self.claims = TokenBuckets(claim_fail_rate, 2 * claim_fail_rate, max_keys=1 << 16)
        self.sources = TokenBuckets(source_fail_rate, source_fail_burst)
        self.pairs = TokenBuckets(pair_fail_rate, 2 * pair_fail_rate, max_keys=1 << 16)
        self.pair_ttl_s = pair_ttl_s
        self._trusted: dict[int, tuple[object, float]] = {}   # device id -> (source, when)

    # --- before decoding -------------------------------------------------------------------

    def check(self, source: object, claim: int, now: float) -> int | str:
        """TRUSTED, UNTRUSTED, or the reason to drop the frame unread ("rate_limited": its source
        is over its failure budget; "unverified": the global or the claimed id's budget is spent)."""
        pair = self._trusted.get(claim)
        if pair is not None and pair[0] == source and now - pair[1] <= self.pair_ttl_s \
                and not self.pairs.empty(claim, now):
            return TRUSTED
        if source is not None and self.sources.empty(source, now):
            return "rate_limited"
        if self.fail_cpu > 0 and self._cpu(now) <= 0:
            return "unverified"
        if self.claims.empty(claim, now):
            return "unverified"
        return UNTRUSTED

    # --- after decoding ----------------------------------------------------------------------

    def failed(self, verdict: int, source: object, claim: int, reason: str, seconds: float, now: float) -> None:
        """Charge a frame that failed authentication (`reason`: the furthest stage it reached)
        for the `seconds` it cost."""
        if verdict == TRUSTED:
            self.pairs.take(claim, now)
            return
        if source is not None:
            self.sources.take(source, now)
        if self.fail_cpu > 0:
            self._cpu(now)
            self._cpu_left -= seconds
        if reason == "auth":            # it reached the MIC for the id it claims: a guess
            self.claims.take(claim, now)

    def authenticated(self, device_id: int, source: object, now: float) -> None:
        """`device_id` authenticated a fresh counter from `source`: that pair is trusted now."""
        self._trusted[device_id] = (source, now)

    def last_source(self, device_id: int) -> object:
        pair = self._trusted.get(device_id)
        return None if pair is None else pair[0]

    def _cpu(self, now: float) -> float:
        """The global CPU budget left (seconds), refilled at `fail_cpu` per second."""
        self._cpu_left = min(self._cpu_burst, self._cpu_left + (now - self._cpu_at) * self.fail_cpu)
        self._cpu_at = now
        return self._cpu_left


def claimed_id(data: bytes) -> int:
    """The device id a DATA frame claims: its first two bytes (-1 when shorter)."""
    return (data[0] << 8 | data[1]) if len(data) >= 2 else -1

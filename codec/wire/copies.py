"""The copies rule (docs/PROTOCOL.md §3.3): header copies and fragments by expected cost.

    plan = cheapest_plan(37, mtu=51, ber=3e-2)        # Plan(copies=1, fragments=1, bytes=49, ...)
    estimate = LinkEstimate()
    estimate.observe(plan_params, answered=False)      # what a transmission's fate says of the link
    ber = estimate.planning_ber(reported_ber)

A device frames each transmission with the (copies, fragments) that minimise the expected bytes
per answered inference, resends included: a transmission of T bytes is answered (at least one
fragment's header reaches the edge, and the REPLY, with as many copies, comes back) with
probability A, independently of the others, so the bytes sent until an answer average T / A.
A comes from a binomial model of the BCH block (t = 4) after the copy vote on an i.i.d. channel.

The BER it plans for is the larger of the one the edge reports in its replies and the one that
best explains the device's own recent transmissions: `LinkEstimate` keeps, on a fixed grid of
BERs, the exponentially decayed log-likelihood of which transmissions were answered and which
timed out under the same model. On an i.i.d. link the two agree; on a bursty one the report,
measured only on headers that survived, is low, and the device's unanswered transmissions say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from codec.wire import bch
from codec.wire.frame import HEADER_COPIES, MAX_FRAGMENTS, REPLY_BLOCK_BYTES, TRUTH_BYTES, block_bytes, fits

__all__ = ["Plan", "block_loss", "plan_cost", "cheapest_plan", "LinkEstimate", "NO_REPORT_BER", "PLAN_TIE",
           "BER_GRID", "ESTIMATE_DECAY"]

NO_REPORT_BER = 1e-2        # the BER a device plans for before the edge has reported one
PLAN_TIE = 1e-9             # costs within this relative margin are equal (then fewer bytes wins)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one transmission of an inference is framed, and what the copies rule expects of it."""

    copies: int
    fragments: int
    bytes: int                  # every byte of every fragment of the transmission
    answered: float             # P(the edge gets at least one fragment's header and the reply returns)
    cost: float                 # expected bytes per answered inference, resends included: bytes / answered


def _binom_tail(n: int, k: int, p: float) -> float:
    """P(Binomial(n, p) > k)."""
    q = 1.0 - p
    return max(0.0, 1.0 - sum(math.comb(n, e) * p ** e * q ** (n - e) for e in range(k + 1)))


def block_loss(ber: float, copies: int, block: int) -> float:
    """P(a block of `block` bytes sent `copies` times is lost) on an i.i.d. channel at `ber`:
    a bit is wrong after the vote when more than half its copies flipped, and the BCH code
    corrects up to bch.T wrong bits (docs/PROTOCOL.md §3.3)."""
    p = min(0.5, max(1e-6, float(ber)))
    voted = sum(math.comb(copies, j) * p ** j * (1.0 - p) ** (copies - j) for j in range(copies // 2 + 1, copies + 1))
    return _binom_tail(8 * block, bch.T, voted)


def plan_cost(payload_bytes: int, copies: int, fragments: int, ber: float, truth: bool = False,
              long_counter: bool = False) -> Plan:
    """The copies rule's figures for one (copies, fragments) choice at `ber` (§3.3)."""
    block = block_bytes(fragments > 1, long_counter)
    size = fragments * copies * block + payload_bytes + (TRUTH_BYTES if truth else 0)
    answered = (1.0 - block_loss(ber, copies, block) ** fragments) * (1.0 - block_loss(ber, copies, REPLY_BLOCK_BYTES))
    return Plan(copies, fragments, size, answered, size / answered if answered > 0 else math.inf)


def cheapest_plan(payload_bytes: int, mtu: int, ber: float | None, truth: bool = False,
                  long_counter: bool = False) -> Plan:
    """The copies and fragments that minimise expected bytes per answered inference at `ber`
    (None: no report yet, NO_REPORT_BER): docs/PROTOCOL.md §3.3. ValueError when nothing fits."""
    ber = NO_REPORT_BER if ber is None else ber
    plans = [plan_cost(payload_bytes, c, k, ber, truth, long_counter)
             for c in HEADER_COPIES for k in range(1, MAX_FRAGMENTS + 1)
             if fits(payload_bytes, mtu, c, k, truth, long_counter)]
    if not plans:
        raise ValueError(f"an MTU of {mtu} bytes leaves no room for {payload_bytes} payload bytes in at most "
                         f"{MAX_FRAGMENTS} fragments, even with 1 header copy")
    best = min(p.cost for p in plans)
    return min((p for p in plans if p.cost <= best * (1.0 + PLAN_TIE)),
               key=lambda p: (p.bytes, p.copies, p.fragments))


BER_GRID = tuple(10.0 ** (-4.0 + g / 16.0) for g in range(57))   # 1e-4 .. 10^-0.5, 16 per decade
ESTIMATE_DECAY = 0.98        # per transmission: the estimate remembers about the last 50


class LinkEstimate:
    """The BER that best explains which of a device's transmissions were answered (§3.3).

    Per grid BER g: l_g <- ESTIMATE_DECAY * l_g + log P(outcome | plan, g), with P(answered) the
    plan's `answered` at g. `ber()` is the grid BER of largest l_g (the smallest on ties), None
    before any outcome."""

    def __init__(self) -> None:
        self.loglik = [0.0] * len(BER_GRID)
        self.outcomes = 0

    def observe(self, payload_bytes: int, copies: int, fragments: int, truth: bool, long_counter: bool,
                answered: bool) -> None:
        for g, ber in enumerate(BER_GRID):
            a = plan_cost(payload_bytes, copies, fragments, ber, truth, long_counter).answered
            p = a if answered else 1.0 - a
            self.loglik[g] = ESTIMATE_DECAY * self.loglik[g] + math.log(max(p, 1e-300))
        self.outcomes += 1

    def ber(self) -> float | None:
        if not self.outcomes:
            return None
        best = max(self.loglik)
        return next(BER_GRID[g] for g, v in enumerate(self.loglik) if v >= best - 1e-9 * abs(best))

    def planning_ber(self, reported: float | None) -> float:
        """The BER the copies rule is evaluated at: max(report, this estimate); NO_REPORT_BER
        while the edge has reported nothing."""
        own = self.ber()
        base = NO_REPORT_BER if reported is None else float(reported)
        return base if own is None else max(base, own)

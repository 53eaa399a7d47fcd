"""Replay protection on the receiving side: one sliding window per provisioned key.

A DATA frame carries only the low 16 bits of its 32-bit counter; the receiver rebuilds the full
value from the highest counter H it authenticated for that device, and the MIC, computed over the
full value, confirms it (docs/PROTOCOL.md §4.3):

* the counter is the unique value with those low bits in ``[H + MAX_GAP − 65535, H + MAX_GAP]``
  (no tie: the interval holds exactly one), within 0..2^32−1;
* a counter above ``H + MAX_GAP`` is refused even when it authenticates (``gap``): it never moves
  the window, so one forged success cannot push a device's counters out of reach; the device is
  told to resynchronise (ERROR RESYNC, §4.7);
* a counter ≤ H − 64, or one of the 64 below H already seen, is a replay.

A new device (no frame yet, absent from the edge's state) has H = −1. A window whose history is
unknown (the edge's replay state was reset) accepts its first authenticated counter whatever it
is. The window is kept per provisioned key, not per entry of any bounded table, so evicting a
device's statistics never reopens its replays.
"""
from __future__ import annotations

WINDOW = 64
MAX_GAP = 1 << 14          # LoRaWAN's MAX_FCNT_GAP (RP002-1.0.4): 16,384
MAX_COUNTER = 0xFFFFFFFF
_FULL = (1 << WINDOW) - 1


class ReplayWindow:
    """The counters one device has used, as far as the receiver can tell.

    `max_gap` None: no gap rule (an insecure edge, whose devices start their counters from the
    clock and whose all-zero key gives no secrecy anyway)."""

    __slots__ = ("top", "bits", "unknown", "max_gap")

    def __init__(self, top: int = -1, *, unknown: bool = False, max_gap: int | None = MAX_GAP) -> None:
        self.top = top          # highest authenticated (or resync-committed) counter, -1 before the first
        self.bits = 0           # bit i set: counter top - i was seen (bit 0 is top itself)
        self.unknown = unknown  # history lost (reset): the first authenticated counter is accepted
        self.max_gap = max_gap

    @classmethod
    def restored(cls, highest: int, **kwargs) -> "ReplayWindow":
        """A window whose every counter up to `highest` counts as used (state read back at start)."""
        window = cls(highest, **kwargs)
        window.bits = _FULL
        return window

    def full_counter(self, low: int) -> int:
        """The 32-bit counter with these low 16 bits (docs/PROTOCOL.md §4.3)."""
        if self.unknown or self.max_gap is None:
            if self.top < 0:
                return low     # nothing to go by: the device starts with a long counter (§4.3)
            base = self.top + (1 << 15)
        else:
            base = self.top + self.max_gap
        value = base - ((base - low) & 0xFFFF)   # the largest value <= base with these low bits
        if value < 0:
            value += 0x10000                     # beyond the gap: refused once it authenticates
        elif value > MAX_COUNTER:
            value -= 0x10000
        return value

    def verdict(self, counter: int) -> str | None:
        """None when `counter` is fresh; "replay" when used already or too old to tell; "gap" when
        beyond the maximum gap (authenticated, but it must not move the window)."""
        if counter > self.top:
            if self.unknown or self.max_gap is None or counter <= self.top + self.max_gap:
                return None
            return "gap"
        age = self.top - counter
        return "replay" if age >= WINDOW or self.bits >> age & 1 else None

    def seen(self, counter: int) -> bool:
        """True when `counter` was used already or is too old to tell (a replay)."""
        return self.verdict(counter) == "replay"

    def mark(self, counter: int) -> None:
        """Record an authenticated counter (call only after `verdict` said None)."""
        self.unknown = False
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & _FULL if shift < WINDOW else 1
            self.top = counter
        else:
            self.bits |= 1 << (self.top - counter)

    def commit_floor(self, floor: int) -> None:
        """A resynchronisation committed `floor`: every counter up to it counts as used (§4.7)."""
        self.unknown = False
        if floor > self.top:
            self.top, self.bits = floor, _FULL
        elif self.top - floor < WINDOW:
            d = self.top - floor            # ages d..63 are the counters up to the floor
            self.bits |= (_FULL >> d) << d

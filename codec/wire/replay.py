"""Replay protection on the receiving side: one sliding window per provisioned key.

A DATA frame carries only the low 16 bits of its 32-bit counter; the receiver rebuilds the full
value from the highest counter it authenticated for that device (the candidate nearest above
or below it, within 2^15), and the MIC, computed over the full value, confirms it. A 64-bit
bitmap remembers which of the 64 counters below the highest were seen: anything older or
already seen is a replay (docs/PROTOCOL.md §4.3). The window is kept per provisioned key, not
per entry of any bounded table, so evicting a device's statistics never reopens its replays.
"""
from __future__ import annotations

WINDOW = 64
_HALF = 1 << 15


class ReplayWindow:
    """The counters one device has used, as far as the receiver can tell."""

    __slots__ = ("top", "bits")

    def __init__(self, top: int = -1) -> None:
        self.top = top    # highest authenticated counter, -1 before the first
        self.bits = 0     # bit i set: counter top - i was seen (bit 0 is top itself)

    def full_counter(self, low: int) -> int:
        """The 32-bit counter with these low 16 bits nearest to the highest seen."""
        if self.top < 0:
            return low
        value = (self.top & ~0xFFFF) | low
        if value + _HALF <= self.top:
            value += 0x10000
        elif value > self.top + _HALF and value >= 0x10000:
            value -= 0x10000
        return value & 0xFFFFFFFF

    def seen(self, counter: int) -> bool:
        """True when `counter` was used already or is too old to tell (a replay)."""
        if counter > self.top:
            return False
        age = self.top - counter
        return age >= WINDOW or bool(self.bits >> age & 1)

    def mark(self, counter: int) -> None:
        """Record an authenticated counter (call only after `seen` said False)."""
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = counter
        else:
            self.bits |= 1 << (self.top - counter)

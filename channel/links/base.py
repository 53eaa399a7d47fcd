"""What every link model offers: a name, an MTU and the time on air of a frame."""
from __future__ import annotations

import abc

from snn.errors import SnnError


class Link(abc.ABC):
    """A physical link: `mtu` payload bytes per frame, `time_on_air_s(n)` per frame of n bytes.

    `mtu` is the largest payload the frame layer should put in one frame (a regional or stack
    limit); `max_payload` is what the PHY can physically carry (>= mtu), so airtime can still be
    computed for frames beyond the policy limit. `duty_cycle` (fraction of time a transmitter may
    be on air; 1.0 = unrestricted) gives the wait after a frame before the next may start.
    """

    name: str = "link"
    mtu: int = 0
    max_payload: int = 0
    bitrate_bps: float = 0.0  # nominal PHY bit rate
    duty_cycle: float = 1.0

    @abc.abstractmethod
    def time_on_air_s(self, n_bytes: int) -> float:
        """Seconds on the air for a frame of n_bytes."""

    def _check_size(self, n_bytes: int) -> int:
        n = int(n_bytes)
        if n < 0:
            raise ValueError(f"{self.name}: frame size must be >= 0 bytes, got {n}")
        if n > self.max_payload:
            raise ValueError(f"{self.name}: {n} bytes exceed the largest frame the PHY carries "
                             f"({self.max_payload} bytes); fragment to the MTU ({self.mtu})")
        return n

    def wait_after_s(self, n_bytes: int) -> float:
        """Silence required after sending n bytes to respect the duty cycle: T_air (1/dc - 1)."""
        if self.duty_cycle >= 1.0:
            return 0.0
        return self.time_on_air_s(n_bytes) * (1.0 / self.duty_cycle - 1.0)

    def fragments(self, n_bytes: int) -> int:
        """Frames needed to carry n bytes of payload at this MTU (ignores per-frame headers)."""
        return max(1, -(-int(n_bytes) // self.mtu))

    def goodput_bps(self) -> float:
        """Payload bit rate when sending full MTU frames back to back (duty cycle applied)."""
        t = self.time_on_air_s(self.mtu) + self.wait_after_s(self.mtu)
        return 8.0 * self.mtu / t

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} mtu={self.mtu}>"


def link_error(name: str, hint: str) -> SnnError:
    return SnnError(f"unknown link {name!r}; {hint}")

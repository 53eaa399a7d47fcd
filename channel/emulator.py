"""The link emulator: what one direction of a lossy link does to a frame.

One `LinkDirection` per direction applies, in order, the loss model (the frame vanishes), the
bit-error model (real bits of the real bytes flip) and the link's airtime (the frame is due after
the frames before it have left the radio, as on a half-duplex link; with a duty cycle, the
transmitter then stays silent for T_air (1/dc - 1)). Both the UDP/serial proxy
(`channel.proxy`) and the in-process `sim://` transport use it, so a benchmark in one process and
a live link between processes damage frames the same way.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from channel.bit_errors import ErrorModel
from channel.links import Link
from channel.loss import LossModel

__all__ = ["DirectionStats", "LinkDirection", "airtime_s"]


def airtime_s(link: Link, n_bytes: int) -> float:
    """Time on air of n bytes on `link`, split into PHY-sized pieces if larger than one frame."""
    n = int(n_bytes)
    if n <= link.max_payload:
        return link.time_on_air_s(n)
    full, rest = divmod(n, link.max_payload)
    return full * link.time_on_air_s(link.max_payload) + (link.time_on_air_s(rest) if rest else 0.0)


@dataclass
class DirectionStats:
    frames: int = 0  # frames handed to this direction
    delivered: int = 0  # frames that reached the other end
    dropped: int = 0  # frames the loss model erased
    bytes: int = 0  # bytes of the frames that were not dropped
    bits_flipped: int = 0

    @property
    def measured_ber(self) -> float:
        return self.bits_flipped / (8 * self.bytes) if self.bytes else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "bits": 8 * self.bytes, "measured_ber": self.measured_ber}


class LinkDirection:
    """Loss, bit errors and airtime of one direction; thread-safe (sim:// calls it from any thread)."""

    def __init__(self, model: ErrorModel | None, loss: LossModel | None, link: Link | None,
                 rng: np.random.Generator, *, delay_s: float = 0.0, duty_cycle: bool = False) -> None:
        self.model, self.loss, self.link, self.rng = model, loss, link, rng
        self.delay_s = float(delay_s)
        self.duty_cycle = bool(duty_cycle) and link is not None
        self.stats = DirectionStats()
        self.busy_until = 0.0
        self._lock = threading.Lock()

    def transmit(self, data: bytes) -> tuple[bytes | None, float]:
        """(the bytes as they arrive, or None if the frame is lost; the monotonic time they are due)."""
        with self._lock:
            self.stats.frames += 1
            if self.loss is not None and self.loss.drop(1, self.rng)[0]:
                self.stats.dropped += 1
                return None, 0.0
            if self.model is not None and self.model.ber > 0 and data:
                out, flipped = self.model.corrupt(np.frombuffer(data, dtype=np.uint8), self.rng)
                data = out.tobytes()
                self.stats.bits_flipped += int(flipped)
            self.stats.bytes += len(data)
            due = time.monotonic() + self.delay_s
            if self.link is not None:
                on_air = airtime_s(self.link, len(data))
                due = max(due, self.busy_until) + on_air
                self.busy_until = due
                if self.duty_cycle:
                    self.busy_until += on_air * (1.0 / self.link.duty_cycle - 1.0)
            return data, due

    def delivered(self) -> None:
        with self._lock:
            self.stats.delivered += 1

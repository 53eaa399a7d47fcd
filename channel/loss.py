"""Frame/fragment loss (erasure) models: which frames never arrive.

    loss = make_loss_model(0.05)               # i.i.d.: each frame lost with probability 0.05
    loss = make_loss_model(0.05, burst=4)      # bursty: losses come in runs of 4 frames on average
    lost = loss.drop(n, rng)                   # bool mask (n,), True = lost

The bursty model is a Gilbert–Elliott chain over frames (good state: delivered, bad state: lost),
with P(loss) = p_gb / (p_gb + p_bg) = p and mean loss-run length 1/p_bg = burst. Its state carries
over between `drop` calls, so calling drop(1) per datagram gives the same statistics as one
drop(n) over the whole sequence.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from snn.errors import SnnError

__all__ = ["LossModel", "IIDLoss", "BurstLoss", "make_loss_model"]


def _check_p(p) -> float:
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise SnnError(f"loss probability must be a number in [0, 1), got {p!r}") from None
    if not 0.0 <= value < 1.0:
        raise SnnError(f"loss probability must lie in [0, 1), got {p!r}")
    return value


class LossModel(abc.ABC):
    p: float = 0.0

    @abc.abstractmethod
    def drop(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Bool mask of length n: True where the frame is lost."""

    def reset(self) -> None:
        """Forget carried state."""


@dataclass
class IIDLoss(LossModel):
    p: float

    def __post_init__(self):
        self.p = _check_p(self.p)

    def drop(self, n, rng):
        if self.p == 0.0:
            return np.zeros(int(n), dtype=bool)
        return rng.random(int(n)) < self.p

    def __str__(self):
        return f"iid loss {self.p:g}"


@dataclass
class BurstLoss(LossModel):
    """Gilbert–Elliott loss: lost runs of mean length `burst` frames, mean loss rate `p`."""

    p: float
    burst: float = 4.0
    _lost: bool | None = field(default=None, init=False)

    def __post_init__(self):
        self.p = _check_p(self.p)
        if not float(self.burst) >= 1.0:
            raise SnnError(f"loss burst length must be >= 1 frame, got {self.burst}")
        self.p_bg = 1.0 / float(self.burst)
        self.p_gb = min(1.0, self.p * self.p_bg / (1.0 - self.p))

    def reset(self):
        self._lost = None

    def drop(self, n, rng):
        n = int(n)
        if self.p == 0.0 or n == 0:
            return np.zeros(n, dtype=bool)
        state = self._lost
        if state is None:
            state = bool(rng.random() < self.p)
        u = rng.random(n)
        out = np.empty(n, dtype=bool)
        # frame-level chain: small n per call (frames, not bits), a plain loop is fine
        for i in range(n):
            out[i] = state
            state = (u[i] >= self.p_bg) if state else (u[i] < self.p_gb)
        self._lost = bool(state)
        return out

    def __str__(self):
        return f"bursty loss {self.p:g} (mean run {self.burst:g} frames)"


def make_loss_model(p: float, burst: float | None = None) -> LossModel:
    """i.i.d. loss at probability p, or bursty (Gilbert–Elliott) when burst > 1 frames is given."""
    if burst is None or float(burst) == 1.0:
        return IIDLoss(p)
    return BurstLoss(p, float(burst))

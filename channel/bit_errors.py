"""Bit-error models on packed bytes: i.i.d. BSC, Gilbert–Elliott bursts, AWGN (BPSK / LoRa).

(The bit-true LoRa physical layer, errors as a LoRa receiver makes them, is `channel.lora_phy`;
it registers "lora-phy": `make_error_model("lora-phy", snr_db=..., sf=...)`.)

Every model flips real bits in real packed frames and reports how many it flipped, per frame:

    model = make_error_model("ge", ber=1e-2, burst=8)
    corrupted, flipped = model.corrupt(frames, rng)   # frames: uint8 (N, nbytes) or (nbytes,)

A row of a 2-D array is one frame (one image). Bits are numbered MSB first inside a byte
(bit 0 of the buffer is ``0x80`` of byte 0), the order of ``np.packbits``.

How it is fast: no uniform is drawn per bit. A Bernoulli(p) process over n bits is sampled as
geometric gaps between successive flips, G_k ~ Geom(p), positions = cumsum(G) - 1, which is exact
(not an approximation) and costs O(n p). The positions are then folded into byte masks with
``np.bitwise_or.reduceat`` and XORed into a copy of the buffer.

Gilbert–Elliott (Gilbert 1960, Elliott 1963) is a two-state Markov chain over bits: in state
G bits flip with probability ``ber_good``, in state B with ``ber_bad``; G→B with ``p_gb`` and
B→G with ``p_bg`` per bit. Sojourn times are geometric, so the chain is sampled run by run:
mean bad run (burst) length 1/p_bg, stationary P(B) = p_gb / (p_gb + p_bg), and mean BER
  ber = P(G) ber_good + P(B) ber_bad.
``GilbertElliott.from_mean(ber, burst)`` inverts this with ber_good=0, ber_bad=0.5 by default.
The chain state carries over from one ``corrupt`` call to the next (frames sent back to back on
one link); ``reset()`` forgets it. Frames of a batch are consecutive on the link.

SNR instead of BER (hard-decision receivers, so the bit errors are i.i.d. given the SNR):
  BPSK over AWGN:  ber = Q(sqrt(2 Eb/N0)) = erfc(sqrt(Eb/N0)) / 2,   snr_db is Eb/N0 in dB;
  LoRa (chirp spread spectrum, non-coherent), Elshabrawy & Robert, IEEE Comm. Letters 2018:
      SER ≈ Q( sqrt(2^(SF+1) γ) − sqrt(2 H_{2^SF − 1}) ),   ber ≈ SER / 2 (uncoded, before the
      Hamming FEC), with γ the per-sample SNR in the channel bandwidth (what an SX127x reports as
      packet SNR) and H_m the m-th harmonic number.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from snn.errors import SnnError
from snn.registry import Registry

__all__ = [
    "ErrorModel", "IIDModel", "GilbertElliott", "make_error_model", "ber_from_snr", "snr_from_ber",
    "q_function", "bernoulli_positions", "apply_flips", "MODELS",
]

MODELS = ("iid", "ge", "awgn", "lora", "lora-phy")


def _check_ber(ber: float, what: str = "BER") -> float:
    try:
        value = float(ber)
    except (TypeError, ValueError):
        raise SnnError(f"{what} must be a number in [0, 0.5], got {ber!r}") from None
    if not 0.0 <= value <= 0.5 or math.isnan(value):
        raise SnnError(f"{what} must lie in [0, 0.5], got {ber!r}")
    return value


# --------------------------------------------------------------------------- sampling primitives

def bernoulli_positions(n_bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted, distinct positions in [0, n_bits) of a Bernoulli(p) process (int64).

    Exact: gaps between successive successes of i.i.d. Bernoulli(p) trials are Geom(p).
    """
    n_bits = int(n_bits)
    if p <= 0.0 or n_bits <= 0:
        return np.empty(0, dtype=np.int64)
    if p >= 1.0:
        return np.arange(n_bits, dtype=np.int64)
    mean = n_bits * p
    chunk = int(mean + 6.0 * math.sqrt(mean) + 16)
    pos = np.cumsum(rng.geometric(p, size=chunk), dtype=np.int64)
    while pos[-1] < n_bits:  # rare: draw more gaps until past the end
        more = np.cumsum(rng.geometric(p, size=chunk), dtype=np.int64) + pos[-1]
        pos = np.concatenate([pos, more])
    pos -= 1
    return pos[: np.searchsorted(pos, n_bits)]


def apply_flips(flat: np.ndarray, positions: np.ndarray) -> None:
    """XOR bit `positions` (sorted, distinct, MSB-first numbering) into the uint8 array in place."""
    if positions.size == 0:
        return
    byte = positions >> 3
    mask = (np.uint8(0x80) >> (positions & 7).astype(np.uint8)).astype(np.uint8)
    starts = np.flatnonzero(np.concatenate(([True], byte[1:] != byte[:-1])))
    # distinct bits of one byte: OR of their masks == XOR of their masks
    flat[byte[starts]] ^= np.bitwise_or.reduceat(mask, starts)


def _as_frames(frames) -> tuple[np.ndarray, bool]:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise TypeError(f"frames must be a uint8 array, got {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"frames must be 1-D (one frame) or 2-D (N frames), got shape {arr.shape}")
    return arr, arr.ndim == 1


# --------------------------------------------------------------------------- models

class ErrorModel(abc.ABC):
    """Base class: subclasses implement `flip_positions(n_bits, rng)`."""

    name: str = "none"
    ber: float = 0.0  # mean bit error rate

    @abc.abstractmethod
    def flip_positions(self, n_bits: int, rng: np.random.Generator) -> np.ndarray:
        """Positions (MSB-first bit indices) of the bits this model flips in n_bits."""

    def corrupt(self, frames, rng: np.random.Generator):
        """Copy of `frames` with bits flipped, and the number flipped per frame.

        frames: uint8 (N, nbytes) -> (copy (N, nbytes), int64 (N,));
                uint8 (nbytes,)   -> (copy (nbytes,), int64 scalar).
        """
        arr, single = _as_frames(frames)
        out = np.array(arr, dtype=np.uint8, copy=True, order="C")
        flat = out.reshape(-1)
        pos = self.flip_positions(flat.size * 8, rng)
        apply_flips(flat, pos)
        if single:
            return out, np.int64(pos.size)
        row_bits = out.shape[1] * 8
        if row_bits == 0:
            return out, np.zeros(out.shape[0], dtype=np.int64)
        counts = np.bincount(pos // row_bits, minlength=out.shape[0]).astype(np.int64)
        return out, counts

    def packet_flip_positions(self, sizes, rng: np.random.Generator) -> np.ndarray:
        """Flipped bit positions when packets of `sizes` bytes are sent back to back, numbered
        over their concatenation. A bit-stream model sees one stream; a packet-level model
        (`channel.lora_phy.LoRaPhy`) codes and damages each packet on its own."""
        return self.flip_positions(int(np.sum(sizes, dtype=np.int64)) * 8, rng)

    def reset(self) -> None:
        """Forget any channel state carried between calls (no-op for memoryless models)."""

    def describe(self) -> str:
        return f"{self.name} BER {self.ber:.3g}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


@dataclass(repr=False)
class IIDModel(ErrorModel):
    """Binary symmetric channel: each bit flips independently with probability `ber`."""

    ber: float
    name: str = "iid"
    snr_db: float | None = None

    def __post_init__(self):
        self.ber = _check_ber(self.ber)

    def flip_positions(self, n_bits, rng):
        return bernoulli_positions(n_bits, self.ber, rng)

    def describe(self):
        snr = f" (SNR {self.snr_db:g} dB)" if self.snr_db is not None else ""
        return f"{self.name} BER {self.ber:.3g}{snr}"


@dataclass(repr=False)
class GilbertElliott(ErrorModel):
    """Two-state bursty channel; see the module docstring for the math.

    p_gb: P(good -> bad) per bit; p_bg: P(bad -> good) per bit (mean burst length 1/p_bg).
    """

    p_gb: float
    p_bg: float
    ber_good: float = 0.0
    ber_bad: float = 0.5
    name: str = "ge"
    _state: int | None = field(default=None, init=False)  # 0 good, 1 bad, None: draw stationary

    def __post_init__(self):
        for what, v in (("p_gb", self.p_gb), ("p_bg", self.p_bg)):
            if not 0.0 <= float(v) <= 1.0:
                raise SnnError(f"Gilbert–Elliott {what} must lie in [0, 1], got {v}")
        if self.p_bg <= 0.0:
            raise SnnError("Gilbert–Elliott p_bg must be > 0 (mean burst length 1/p_bg must be finite)")
        self.ber_good = _check_ber(self.ber_good, "ber_good")
        self.ber_bad = _check_ber(self.ber_bad, "ber_bad")

    @classmethod
    def from_mean(cls, ber: float, burst: float = 8.0, *, ber_bad: float = 0.5,
                  ber_good: float = 0.0) -> "GilbertElliott":
        """Chain with mean BER `ber` whose bad state lasts `burst` bits on average."""
        ber = _check_ber(ber)
        ber_bad = _check_ber(ber_bad, "ber_bad")
        ber_good = _check_ber(ber_good, "ber_good")
        burst = float(burst)
        if not burst >= 1.0:
            raise SnnError(f"mean burst length must be >= 1 bit, got {burst:g}")
        if not ber_good <= ber <= ber_bad or ber_good == ber_bad and ber != ber_good:
            raise SnnError(f"Gilbert–Elliott mean BER {ber:g} must lie between ber_good {ber_good:g} "
                           f"and ber_bad {ber_bad:g}")
        p_bg = 1.0 / burst
        pi_bad = 0.0 if ber_bad == ber_good else (ber - ber_good) / (ber_bad - ber_good)
        if pi_bad >= 1.0:
            p_gb = 1.0
        else:
            p_gb = min(1.0, pi_bad * p_bg / (1.0 - pi_bad))
        return cls(p_gb=p_gb, p_bg=p_bg, ber_good=ber_good, ber_bad=ber_bad)

    @property
    def pi_bad(self) -> float:
        """Stationary probability of the bad state."""
        return self.p_gb / (self.p_gb + self.p_bg)

    @property
    def ber(self) -> float:  # type: ignore[override]
        pb = self.pi_bad
        return (1.0 - pb) * self.ber_good + pb * self.ber_bad

    @property
    def burst(self) -> float:
        """Mean bad-state run length in bits."""
        return 1.0 / self.p_bg

    def reset(self):
        self._state = None

    def bad_runs(self, n_bits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample the chain over the next n_bits: (starts, lengths) of its bad-state runs.

        Advances the carried state. Runs are clipped at n_bits.
        """
        n_bits = int(n_bits)
        state = self._state
        if state is None:
            state = int(rng.random() < self.pi_bad)
        if n_bits <= 0:
            self._state = state
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if self.p_gb <= 0.0 and state == 0:  # never leaves the good state
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cycle = (1.0 / self.p_gb if self.p_gb > 0 else math.inf) + 1.0 / self.p_bg
        n_cycles = int(n_bits / cycle + 6.0 * math.sqrt(n_bits / cycle) + 8)
        lengths_parts = []
        total = 0
        while total < n_bits:
            good = (rng.geometric(self.p_gb, size=n_cycles) if self.p_gb > 0
                    else np.full(n_cycles, n_bits + 1, dtype=np.int64))
            bad = rng.geometric(self.p_bg, size=n_cycles)
            # alternate starting with the current state: [cur, other, cur, other, ...]
            pair = np.empty(2 * n_cycles, dtype=np.int64)
            if state == 0:
                pair[0::2], pair[1::2] = good, bad
            else:
                pair[0::2], pair[1::2] = bad, good
            lengths_parts.append(pair)
            total += int(pair.sum())
        lengths = np.concatenate(lengths_parts)
        ends = np.cumsum(lengths)
        n_runs = int(np.searchsorted(ends, n_bits, side="left")) + 1  # the run holding bit n_bits-1
        ends = ends[:n_runs]
        starts = ends - lengths[:n_runs]
        last_state = state if (n_runs - 1) % 2 == 0 else 1 - state
        # state for the next bit: by memorylessness, the run holding bit n_bits-1 continues
        # past n_bits unless it ended exactly there.
        self._state = last_state if ends[-1] > n_bits else 1 - last_state
        ends[-1] = min(ends[-1], n_bits)
        first_bad = 0 if state == 1 else 1
        bs, be = starts[first_bad::2], ends[first_bad::2]
        return bs, be - bs

    def flip_positions(self, n_bits, rng):
        bs, bl = self.bad_runs(n_bits, rng)
        pos = [_positions_in_runs(bs, bl, self.ber_bad, rng)]
        if self.ber_good > 0.0:
            gs, gl = _complement_runs(bs, bl, n_bits)
            pos.append(_positions_in_runs(gs, gl, self.ber_good, rng))
            return np.sort(np.concatenate(pos))
        return pos[0]

    def describe(self):
        return (f"ge BER {self.ber:.3g} burst {self.burst:g} bits "
                f"(p_gb {self.p_gb:.3g}, p_bg {self.p_bg:.3g}, bad-state BER {self.ber_bad:g}, "
                f"good-state BER {self.ber_good:g})")


def _positions_in_runs(starts: np.ndarray, lengths: np.ndarray, p: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Bernoulli(p) positions inside the union of runs, as absolute bit positions (sorted)."""
    total = int(lengths.sum())
    q = bernoulli_positions(total, p, rng)
    if q.size == 0:
        return q
    cum_end = np.cumsum(lengths)
    run = np.searchsorted(cum_end, q, side="right")
    return starts[run] + (q - (cum_end[run] - lengths[run]))


def _complement_runs(starts, lengths, n_bits):
    ends = starts + lengths
    gs = np.concatenate(([0], ends))
    ge = np.concatenate((starts, [n_bits]))
    keep = ge > gs
    return gs[keep], (ge - gs)[keep]


# --------------------------------------------------------------------------- SNR -> BER

def q_function(x: float) -> float:
    """Gaussian tail Q(x) = P(N(0,1) > x) = erfc(x / sqrt 2) / 2."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _harmonic(m: int) -> float:
    if m < 64:
        return sum(1.0 / k for k in range(1, m + 1))
    return math.log(m) + 0.5772156649015329 + 1.0 / (2 * m) - 1.0 / (12 * m * m)


def ber_from_snr(snr_db: float, modulation: str = "bpsk", sf: int = 7) -> float:
    """Raw (pre-FEC) bit error rate for an SNR in dB; see the module docstring for the formulas.

    modulation "bpsk": snr_db is Eb/N0. modulation "lora": snr_db is the per-sample SNR in the
    channel bandwidth (SX127x packet SNR), sf the spreading factor 7..12.
    """
    try:
        snr = 10.0 ** (float(snr_db) / 10.0)
    except (TypeError, ValueError):
        raise SnnError(f"SNR must be a number in dB, got {snr_db!r}") from None
    mod = str(modulation).lower()
    if mod == "bpsk":
        ber = 0.5 * math.erfc(math.sqrt(snr))
    elif mod == "lora":
        sf = int(sf)
        if not 5 <= sf <= 12:
            raise SnnError(f"LoRa spreading factor must lie in 5..12, got {sf}")
        ser = q_function(math.sqrt(2.0 ** (sf + 1) * snr) - math.sqrt(2.0 * _harmonic(2 ** sf - 1)))
        ber = 0.5 * ser
    else:
        raise SnnError(f"unknown modulation {modulation!r}; choose bpsk or lora")
    return min(0.5, max(0.0, ber))


def snr_from_ber(ber: float, modulation: str = "bpsk", sf: int = 7) -> float:
    """Inverse of `ber_from_snr` (SNR in dB giving `ber`), by bisection."""
    ber = _check_ber(ber)
    if ber <= 0.0:
        return math.inf
    lo, hi = -60.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if ber_from_snr(mid, modulation, sf) > ber:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- factory

# name -> builder(name, ber, burst, snr_db, kw) -> ErrorModel; a builder pops the options it takes
# from kw and refuses the rest (`_no_extra`). Another module adds a model with
# `@ERROR_MODELS.register("name", summary=...)`.
ERROR_MODELS: Registry[Callable[..., ErrorModel]] = Registry("error model")


def make_error_model(name: str, ber: float | None = None, burst: float | None = None,
                     **kw) -> ErrorModel:
    """The one way to get an error model by name (`ERROR_MODELS`; aliases in parentheses).

    "iid"  (alias "bsc"): i.i.d. flips at `ber`.
    "ge"   (alias "gilbert-elliott", "burst"): Gilbert–Elliott with mean BER `ber` and mean burst
           length `burst` bits (default 8); kw: ber_bad (0.5), ber_good (0.0); or give the chain
           directly with kw p_gb, p_bg.
    "awgn" (alias "bpsk"): i.i.d. at Q(sqrt(2 Eb/N0)) for kw snr_db (Eb/N0 in dB).
    "lora": i.i.d. at the LoRa SNR->BER curve for kw snr_db and sf (default 7).
    "lora-phy": the bit-true LoRa physical layer (`channel.lora_phy.LoRaPhy`) for kw snr_db,
           sf (7), cr (4/5), offset_bins (0), bw_hz (125 kHz), ldro (auto); each frame one packet.
    "none": no errors.
    For "iid"/"ge", snr_db (and modulation, sf) may replace ber.
    """
    entry = ERROR_MODELS.entry(name)
    return entry.value(str(name).strip().lower(), ber, burst, kw.pop("snr_db", None), kw)


def _ber_or_snr(ber: float | None, snr_db: float | None, kw: dict) -> float | None:
    """The BER an i.i.d./bursty model runs at: `ber`, or the one an SNR implies (kw modulation, sf)."""
    if snr_db is None:
        return ber
    if ber is not None:
        raise SnnError("give either a BER or an SNR, not both")
    return ber_from_snr(snr_db, kw.pop("modulation", "bpsk"), int(kw.pop("sf", 7)))


@ERROR_MODELS.register("iid", "bsc", summary="i.i.d. bit flips at the BER (binary symmetric channel)")
def _iid(key: str, ber, burst, snr_db, kw) -> ErrorModel:
    ber = _ber_or_snr(ber, snr_db, kw)
    _no_extra(key, kw)
    return IIDModel(0.0 if ber is None else ber)


@ERROR_MODELS.register("ge", "gilbert-elliott", "gilbert_elliott", "burst",
                       summary="Gilbert-Elliott bursts at a mean BER (mean burst 8 bits)")
def _gilbert_elliott(key: str, ber, burst, snr_db, kw) -> ErrorModel:
    ber = _ber_or_snr(ber, snr_db, kw)
    if "p_gb" in kw or "p_bg" in kw:
        return GilbertElliott(p_gb=float(kw.pop("p_gb")), p_bg=float(kw.pop("p_bg")),
                              ber_good=float(kw.pop("ber_good", 0.0)),
                              ber_bad=float(kw.pop("ber_bad", 0.5)))
    ber_bad = float(kw.pop("ber_bad", 0.5))
    ber_good = float(kw.pop("ber_good", 0.0))
    _no_extra(key, kw)
    return GilbertElliott.from_mean(0.0 if ber is None else ber, 8.0 if burst is None else burst,
                                    ber_bad=ber_bad, ber_good=ber_good)


def _snr_curve(key: str, ber, burst, snr_db, kw) -> ErrorModel:
    """i.i.d. at the BER an SNR gives (BPSK over AWGN, or LoRa's curve at sf); a BER without an SNR."""
    if snr_db is None:
        if ber is None:
            raise SnnError(f"error model {key!r} needs snr_db (or a BER)")
        return IIDModel(ber, name=key)
    modulation = "lora" if key == "lora" else kw.pop("modulation", "bpsk")
    sf = int(kw.pop("sf", 7))
    _no_extra(key, kw)
    label = f"lora-sf{sf}" if modulation == "lora" else "awgn-bpsk"
    return IIDModel(ber_from_snr(snr_db, modulation, sf), name=label, snr_db=float(snr_db))


ERROR_MODELS.add("awgn", _snr_curve, "bpsk", summary="i.i.d. at Q(sqrt(2 Eb/N0)) for snr_db (BPSK over AWGN)")
ERROR_MODELS.add("lora", _snr_curve, summary="i.i.d. at the LoRa SNR->BER curve for snr_db and sf")


@ERROR_MODELS.register("none", "clean", summary="no errors")
def _none(key: str, ber, burst, snr_db, kw) -> ErrorModel:
    return IIDModel(0.0, name="none")


def _no_extra(name, kw):
    if kw:
        raise SnnError(f"error model {name!r} takes no option(s) {', '.join(sorted(kw))}")


"""Bit error rate estimation at the edge: per-frame counts of known bits, smoothed per device.

Protocol v2 sends no pilots: the known bits of a frame are its header's, and their errors are
the bits the header's decoding corrected (docs/PROTOCOL.md, "BER estimate"; 96 bits per header
copy). On their own they say little — at BER 1e-2 one copy sees about one flipped bit. The
estimate therefore pools evidence: per device, corrected bits and header bits received are both
decayed exponentially (factor ``decay`` per inference), so the estimate follows a link that
changes while averaging over the last ~1/(1-decay) inferences::

    E <- decay * E + e_frame          B <- decay * B + b_frame
    ber = (E + w * p_prior) / (B + w)

``p_prior`` is the BER the link's SNR hint implies (BPSK over AWGN, Eb/N0 = the hint) when the
device sent one, else ``default_ber``; ``w`` is the weight of that prior in known bits (more
weight for an SNR hint, which is a measurement, than for the default, which is a guess). The
result is clamped to [1e-5, 0.5] and is what conditions the decoder.

Memory is bounded: device states live in an LRU of at most ``max_devices`` entries.
"""
from __future__ import annotations

import math
from collections import OrderedDict

BER_MIN = 1e-5
BER_MAX = 0.5


def clamp_ber(ber: float) -> float:
    """Clamp a BER into the range the decoder is conditioned on, [1e-5, 0.5]."""
    if not ber == ber:  # NaN
        return BER_MAX
    return min(BER_MAX, max(BER_MIN, ber))


def ber_from_snr_hint(snr_db: float) -> float:
    """BER that an SNR hint (dB, read as Eb/N0 of BPSK over AWGN) implies: Q(sqrt(2 Eb/N0))."""
    return clamp_ber(0.5 * math.erfc(math.sqrt(10.0 ** (snr_db / 10.0))))


class BerEstimator:
    """Per-device, exponentially decayed known-bit error estimate combined with an SNR-hint prior."""

    def __init__(self, decay: float = 0.9, default_ber: float = 1e-3, default_weight: float = 16.0,
                 snr_weight: float = 64.0, max_devices: int = 4096) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must lie in [0, 1)")
        self.decay = decay
        self.default_ber = default_ber
        self.default_weight = default_weight
        self.snr_weight = snr_weight
        self.max_devices = max_devices
        self._state: OrderedDict[object, list[float]] = OrderedDict()  # key -> [errors, bits]

    def __len__(self) -> int:
        return len(self._state)

    def update(self, device: object, known_errors: int, known_bits: int,
               snr_hint: float | None = None) -> float:
        """Fold one inference's known-bit error counts (v2: the bits its header decoding
        corrected, out of the header bits received) into the device's state; return its BER
        estimate."""
        state = self._state.get(device)
        if state is None:
            state = [0.0, 0.0]
            self._state[device] = state
            if len(self._state) > self.max_devices:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(device)
        state[0] = self.decay * state[0] + known_errors
        state[1] = self.decay * state[1] + known_bits
        if snr_hint is not None:
            prior, weight = ber_from_snr_hint(snr_hint), self.snr_weight
        else:
            prior, weight = self.default_ber, self.default_weight
        return clamp_ber((state[0] + weight * prior) / (state[1] + weight))

    def current(self, device: object) -> float | None:
        """The device's estimate from its known bits alone (None when it has never been seen)."""
        state = self._state.get(device)
        if state is None:
            return None
        return clamp_ber((state[0] + self.default_weight * self.default_ber)
                         / (state[1] + self.default_weight))

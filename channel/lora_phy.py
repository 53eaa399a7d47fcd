"""LoRa physical layer, bit-true: the bytes a LoRa receiver hands over at an SNR.

Each frame is one LoRa packet in implicit-header mode with the payload CRC off (the only mode
in which a radio delivers a packet with bit errors). The transmit chain, per packet of L bytes
(the LoRa PHY as reverse-engineered by Knight & Seeber, "Decoding LoRa", GRCon 2016; Robyns et
al., "A multi-channel software decoder for the LoRa modulation scheme", IoTBDS 2018; Tapparel
et al., "An open-source LoRa physical layer prototype on GNU Radio", SPAWC 2020):

1. **whitening**: byte i is XORed with the i-th state of an 8-bit LFSR (x^8+x^6+x^5+x^4+1,
   seed 0xFF: 0xFF, 0xFE, 0xFC, 0xF8, 0xF0, 0xE1, ...);
2. **nibbles**, low nibble of each byte first;
3. **Hamming code**: each nibble b3..b0 becomes a (4+CR)-bit codeword, MSB first
   ``b0 b1 b2 b3 p0 p1 p2 p3`` truncated to 4+CR bits, with p0 = b0^b1^b2, p1 = b1^b2^b3,
   p2 = b0^b1^b3, p3 = b0^b2^b3 (CR 4/6..4/8); CR 4/5 sends one parity bit b0^b1^b2^b3.
   The first SF-2 nibbles always use CR 4/8;
4. **diagonal interleaver**, block by block: a block of W codewords of C = 4+CR bits becomes C
   chirp symbols of W bits; bit j (MSB first) of symbol i is bit i of codeword (i - j - 1) mod W.
   The first block has W = SF-2 and C = 8; later blocks W = SF (SF-2 with low-data-rate
   optimisation, LDRO) and C = 4+CR; the last block is padded with zero nibbles. Symbols per
   packet: 8 + ceil((2L - SF + 2) / W) (4+CR), Semtech's formula with IH = 1, CRC = 0;
5. **Gray mapping**: a W-bit symbol value v is sent on FFT bin gray^-1(v) (the receiver applies
   gray, so a bin one off costs exactly one bit). Reduced-rate symbols (W = SF-2: the first
   block, and every block with LDRO) sit on bin 4 gray^-1(v), the two low bits 0 as LoRa's
   parity bit makes them, and the receiver rounds the bin to the nearest multiple of 4: a drift
   of +-1 bin never reaches the bits, which is what LDRO is for. (gr-lora_sdr truncates instead
   of rounding; the rounding is our choice of a well-built receiver.)

The receiver inverts each step; its Hamming decoder corrects one bit at CR 4/7 and 4/8 (4/8:
extended Hamming, a double error is left as received) and only takes the data bits at 4/5, 4/6.

**Symbol errors of the non-coherent FFT demodulator.** After de-chirping, a symbol is a tone on
bin k of an M = 2^SF point FFT, and the demodulator picks the bin of largest magnitude. With
per-sample SNR gamma (signal power over noise power in the channel bandwidth, what an SX127x
reports as packet SNR) the peak bin sees lambda = M gamma against unit-variance complex noise in
every bin (the de-chirp gain). A residual frequency/timing offset of eps bins
(eps = CFO 2^SF / BW + timing offset x BW; the receiver's preamble sync removes the integer part)
spreads the tone over neighbouring bins with the Dirichlet kernel, bin k + j getting
lambda |D(eps - j)|^2, D(x) = sin(pi x) / (M sin(pi x / M)). The demodulator's outcome is then a
competition between 7 Rician bins (j = -3..3) and the maximum of M - 7 Rayleigh bins (leakage
beyond +-3 bins, below 2 % of the energy at eps = 0.5, is neglected). `symbol_outcomes` computes
the probabilities P(j wins) and P(a far bin wins) by numerical integration over the winning
bin's power; for eps = 0 this is the exact error rate of non-coherent M-ary orthogonal signalling
(Proakis & Salehi, Digital Communications, 5th ed., 4.5-43), which Elshabrawy & Robert (IEEE
Comm. Letters 22(11), 2018) approximate in closed form. A far bin is uniform over the M - 7 far
bins. `simulate_demodulator` runs the real thing (chirps, noise, de-chirp, FFT, argmax) to check
it (tests/channel/test_lora_phy.py, `snn channel lora-phy`).

Errors are drawn per symbol from those probabilities (one uniform per symbol), so a packet costs
O(symbols): 10k images of 49-byte frames at SF7 corrupt in well under a second. `ber` is the
expected bit error rate after decoding (exact under the model, for uniformly distributed symbol
values, which whitening makes a good assumption); `measure` counts bit and packet errors on real
packets. Neither preamble detection nor fading is modelled:
a lost packet is the loss model's business (`channel.loss`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from channel.bit_errors import ERROR_MODELS, ErrorModel
from snn.errors import SnnError

__all__ = ["LoRaPhy", "SEMTECH_SNR_LIMIT_DB", "symbol_outcomes", "simulate_demodulator", "whitening_sequence",
           "hamming_encode_table", "hamming_decode_table", "parse_cr", "MAX_PACKET_BYTES", "gray", "gray_inverse", "lora_phy_settings"]

# LoRa demodulator SNR limits, Semtech SX1276/77/78/79 datasheet rev. 7 (2020), table 13
SEMTECH_SNR_LIMIT_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
MAX_PACKET_BYTES = 255
CENTRAL = 3                       # bins k-3..k+3 are modelled with their share of the tone
_OFFSETS = np.arange(-CENTRAL, CENTRAL + 1)   # outcome order of `symbol_outcomes` (then "far")


def parse_cr(cr) -> int:
    """Coding rate as the index 1..4 of 4/5..4/8, from 1..4, 5..8 or '4/5'..'4/8'."""
    text = str(cr).strip()
    try:
        value = int(text.split("/", 1)[1]) if "/" in text else int(text)
    except (ValueError, IndexError):
        raise SnnError(f"LoRa coding rate must be 4/5, 4/6, 4/7 or 4/8, got {cr!r}") from None
    if "/" in text and not text.startswith("4/"):
        raise SnnError(f"LoRa coding rate must be 4/5, 4/6, 4/7 or 4/8, got {cr!r}")
    if 5 <= value <= 8:
        return value - 4
    if 1 <= value <= 4 and "/" not in text:
        return value
    raise SnnError(f"LoRa coding rate must be 4/5, 4/6, 4/7 or 4/8, got {cr!r}")


# --------------------------------------------------------------------------- whitening, Hamming, Gray

@lru_cache(maxsize=1)
def whitening_sequence(n: int = MAX_PACKET_BYTES) -> np.ndarray:
    """The first n bytes of LoRa's whitening sequence (LFSR x^8+x^6+x^5+x^4+1, seed 0xFF)."""
    out = np.empty(n, dtype=np.uint8)
    state = 0xFF
    for i in range(n):
        out[i] = state
        feedback = (state >> 7 ^ state >> 5 ^ state >> 4 ^ state >> 3) & 1
        state = ((state << 1) | feedback) & 0xFF
    return out


def _codeword(nibble: int, cr: int) -> int:
    b = [(nibble >> i) & 1 for i in range(4)]          # b[0] = LSB
    if cr == 1:
        return (b[0] << 4) | (b[1] << 3) | (b[2] << 2) | (b[3] << 1) | (b[0] ^ b[1] ^ b[2] ^ b[3])
    p = (b[0] ^ b[1] ^ b[2], b[1] ^ b[2] ^ b[3], b[0] ^ b[1] ^ b[3], b[0] ^ b[2] ^ b[3])
    word = (b[0] << 7) | (b[1] << 6) | (b[2] << 5) | (b[3] << 4) | (p[0] << 3) | (p[1] << 2) | (p[2] << 1) | p[3]
    return word >> (4 - cr)


@lru_cache(maxsize=4)
def hamming_encode_table(cr: int) -> np.ndarray:
    """Codeword (4+cr bits) of each nibble 0..15."""
    return np.array([_codeword(v, cr) for v in range(16)], dtype=np.uint8)


def _data_bits(word: int, cr: int) -> int:
    top = word >> cr                                   # b0 b1 b2 b3, MSB first
    return ((top >> 3) & 1) | (((top >> 2) & 1) << 1) | (((top >> 1) & 1) << 2) | ((top & 1) << 3)


@lru_cache(maxsize=4)
def hamming_decode_table(cr: int) -> np.ndarray:
    """Nibble the receiver decodes from each received (4+cr)-bit word.

    CR 4/7, 4/8: the nearest codeword when it is unique and at most one bit away (4/8 is an
    extended Hamming code: a word two bits from several codewords is left as received); CR 4/5,
    4/6 (distance 2): the data bits as received."""
    codes = hamming_encode_table(cr).astype(np.int64)
    out = np.empty(1 << (4 + cr), dtype=np.uint8)
    for word in range(out.size):
        dist = np.array([(word ^ int(c)).bit_count() for c in codes])
        best = np.flatnonzero(dist == dist.min())
        if cr >= 3 and dist.min() <= 1 and best.size == 1:
            out[word] = best[0]
        else:
            out[word] = _data_bits(word, cr)
    return out


def gray(v: np.ndarray) -> np.ndarray:
    return v ^ (v >> 1)


def gray_inverse(g: np.ndarray, bits: int) -> np.ndarray:
    v = g.copy()
    shift = 1
    while shift < bits:
        v ^= v >> shift
        shift <<= 1
    return v


# --------------------------------------------------------------------------- the demodulator

def _i0e(z: np.ndarray) -> np.ndarray:
    """Exponentially scaled modified Bessel function I0(z) e^-z, z >= 0 (no overflow)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = z < 700.0
    out[small] = np.i0(z[small]) * np.exp(-z[small])
    big = z[~small]
    inv = 1.0 / (8.0 * big)
    out[~small] = (1.0 + inv + 4.5 * inv * inv + 37.5 * inv ** 3) / np.sqrt(2.0 * math.pi * big)
    return out


def dirichlet_gain(x: np.ndarray, m: int) -> np.ndarray:
    """|D(x)| = |sin(pi x) / (m sin(pi x / m))|: an FFT bin's amplitude for a tone x bins away."""
    x = np.asarray(x, dtype=np.float64)
    out = np.ones_like(x)
    nz = np.abs(np.sin(np.pi * x / m)) > 1e-12
    out[nz] = np.abs(np.sin(np.pi * x[nz]) / (m * np.sin(np.pi * x[nz] / m)))
    return out


@lru_cache(maxsize=256)
def symbol_outcomes(sf: int, snr_db: float, offset_bins: float = 0.0) -> tuple[float, ...]:
    """Probabilities that the FFT demodulator picks bin k+j for j = -3..3, then a far bin.

    See the module docstring for the model. The winning bin's power x is integrated on a grid
    in sqrt(x); each bin's power is noncentral chi-square with 2 degrees of freedom (unit noise,
    non-centrality lambda_j), the far bins' maximum has CDF (1 - e^-x)^(M-7)."""
    m = 1 << int(sf)
    lam = m * 10.0 ** (float(snr_db) / 10.0) * dirichlet_gain(float(offset_bins) - _OFFSETS, m) ** 2
    n_far = m - _OFFSETS.size
    u_max = math.sqrt(float(lam.max())) + 12.0
    u_max = max(u_max, math.sqrt(math.log(n_far) + 45.0))
    u = np.linspace(0.0, u_max, int(u_max / 2e-3) + 2)
    x = u * u
    du = u[1] - u[0]
    # pdf of each central bin's power, per unit of u (dx = 2u du)
    pdf = np.empty((lam.size, u.size))
    for i, lj in enumerate(lam):
        root = math.sqrt(lj)
        pdf[i] = np.exp(-(u - root) ** 2) * _i0e(2.0 * root * u) * 2.0 * u
    cdf = np.concatenate([np.zeros((lam.size, 1)), np.cumsum((pdf[:, 1:] + pdf[:, :-1]) * 0.5 * du, axis=1)],
                         axis=1)
    cdf = np.minimum(cdf, 1.0)
    one_minus = -np.expm1(-x)
    with np.errstate(divide="ignore"):
        log_base = np.log(one_minus)
    far_cdf = np.exp(n_far * log_base)
    far_pdf = n_far * np.exp(-x + (n_far - 1) * log_base) * 2.0 * u
    far_pdf[0] = 0.0
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    total = log_cdf.sum(axis=0)
    probs = []
    for i in range(lam.size):
        others = np.exp(total - log_cdf[i]) * far_cdf
        probs.append(np.trapezoid(pdf[i] * others, dx=du))
    probs.append(np.trapezoid(np.exp(total) * far_pdf, dx=du))
    p = np.clip(np.array(probs), 0.0, None)
    return tuple(float(v) for v in p / p.sum())


def simulate_demodulator(sf: int, snr_db: float, n_symbols: int, rng: np.random.Generator,
                         offset_bins: float = 0.0, batch: int = 512) -> np.ndarray:
    """Chirp-level Monte Carlo of the FFT demodulator: bin errors (received - sent, mod M).

    Sends random symbols as LoRa up-chirps sampled at the bandwidth (M = 2^SF samples), adds
    complex white Gaussian noise at per-sample SNR `snr_db` and a frequency offset of
    `offset_bins` FFT bins, multiplies by the conjugate base chirp, takes the M-point FFT and
    picks the largest bin. Returns the signed bin error of each symbol in (-M/2, M/2]."""
    m = 1 << int(sf)
    n = np.arange(m)
    base = np.exp(1j * np.pi * (n * n / m - n))           # the base up-chirp, f from -BW/2 to BW/2
    sigma = math.sqrt(10.0 ** (-float(snr_db) / 10.0) / 2.0)
    out = []
    left = int(n_symbols)
    while left > 0:
        k = min(batch, left)
        sym = rng.integers(0, m, k)
        tone = np.exp(2j * np.pi * np.outer(sym + float(offset_bins), n) / m)
        signal = base * tone                                  # the symbol's chirp, offset included
        noise = sigma * (rng.standard_normal((k, m)) + 1j * rng.standard_normal((k, m)))
        spectrum = np.fft.fft((signal + noise) * np.conj(base), axis=1)
        err = (np.argmax(np.abs(spectrum), axis=1) - sym) % m
        out.append(np.where(err > m // 2, err - m, err))
        left -= k
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- packet layout

@dataclass(frozen=True)
class _Layout:
    """Where every codeword bit of an L-byte packet goes: symbols, their widths, the maps."""

    n_nibbles: int          # real nibbles (2L)
    n_codewords: int        # with padding
    n_symbols: int
    cw_bits: np.ndarray     # (n_codewords,) bits per codeword
    first: np.ndarray       # (n_codewords,) bool: in the first (CR 4/8) block
    width: np.ndarray       # (n_symbols,) data bits per symbol (SF or SF-2)
    reduced: np.ndarray     # (n_symbols,) bool: reduced-rate symbol (bin = 4 x)
    src_cw: np.ndarray      # (n_symbols, SF) codeword feeding bit j of symbol k (-1: none)
    src_shift: np.ndarray   # (n_symbols, SF) right shift of that bit inside its codeword
    sym_of: np.ndarray      # (n_codewords, 8) symbol carrying bit i of codeword c (-1: none)
    bit_of: np.ndarray      # (n_codewords, 8) index j (MSB first) of that bit in the symbol
    enc_src: np.ndarray     # (n_symbols * 16,) unpacked codeword bit feeding each bit of a symbol's
                            # big-endian 16-bit slot (n_codewords * 8: a zero bit)
    dec_src: np.ndarray     # (n_codewords * 8,) unpacked symbol-slot bit feeding each codeword bit


@lru_cache(maxsize=512)
def _layout(n_bytes: int, sf: int, cr: int, ldro: bool) -> _Layout:
    first_w = sf - 2
    w = sf - 2 if ldro else sf
    n_nib = 2 * n_bytes
    blocks = [(first_w, 8)]
    rest = max(0, n_nib - first_w)
    blocks += [(w, 4 + cr)] * (-(-rest // w))
    n_cw = sum(b[0] for b in blocks)
    n_sym = sum(b[1] for b in blocks)
    cw_bits = np.empty(n_cw, np.int64)
    first = np.zeros(n_cw, bool)
    width = np.empty(n_sym, np.int64)
    reduced = np.zeros(n_sym, bool)
    src_cw = np.full((n_sym, sf), -1, np.int64)
    src_shift = np.zeros((n_sym, sf), np.int64)
    sym_of = np.full((n_cw, 8), -1, np.int64)
    bit_of = np.zeros((n_cw, 8), np.int64)
    c0 = s0 = 0
    for index, (bw, bc) in enumerate(blocks):
        cw_bits[c0:c0 + bw] = bc
        first[c0:c0 + bw] = index == 0
        width[s0:s0 + bc] = bw
        reduced[s0:s0 + bc] = bw == sf - 2
        for i in range(bc):
            for j in range(bw):
                c = c0 + (i - j - 1) % bw
                src_cw[s0 + i, j] = c
                src_shift[s0 + i, j] = bc - 1 - i
                sym_of[c, i] = s0 + i
                bit_of[c, i] = j
        c0 += bw
        s0 += bc
    # the same maps as flat gathers over unpacked bits: codewords right-aligned in a byte (8 bits
    # each), symbol values right-aligned in a big-endian 16-bit slot; index -> the appended zero bit
    enc_src = np.full(n_sym * 16, n_cw * 8, np.int64)
    dec_src = np.full(n_cw * 8, n_sym * 16, np.int64)
    for k in range(n_sym):
        for j in range(width[k]):
            c = src_cw[k, j]
            i = int(cw_bits[c]) - 1 - int(src_shift[k, j])
            enc_src[k * 16 + 16 - width[k] + j] = c * 8 + 8 - cw_bits[c] + i
            dec_src[c * 8 + 8 - cw_bits[c] + i] = k * 16 + 16 - width[k] + j
    return _Layout(n_nib, n_cw, n_sym, cw_bits, first, width, reduced, src_cw, src_shift, sym_of, bit_of,
                   enc_src, dec_src)


# --------------------------------------------------------------------------- the model

@dataclass(repr=False)
class LoRaPhy(ErrorModel):
    """Bit errors of a LoRa link at an SNR; each frame is one packet (see the module docstring).

    sf 7..12; cr 1..4 (4/5..4/8); snr_db: per-sample SNR in the channel bandwidth; offset_bins:
    residual frequency/timing offset in FFT bins; ldro: low-data-rate optimisation (None: on when
    a symbol lasts more than 16 ms at `bw_hz`, Semtech's rule: SF11 and SF12 at 125 kHz)."""

    sf: int = 7
    cr: int = 1
    snr_db: float = 0.0
    offset_bins: float = 0.0
    bw_hz: int = 125_000
    ldro: bool | None = None
    name: str = "lora-phy"
    _ber: float | None = field(default=None, init=False)

    def __post_init__(self):
        try:
            self.sf, self.snr_db, self.offset_bins = int(self.sf), float(self.snr_db), float(self.offset_bins)
        except (TypeError, ValueError):
            raise SnnError("LoRa PHY: sf must be an integer, snr_db and offset_bins numbers") from None
        if not 7 <= self.sf <= 12:
            raise SnnError(f"LoRa spreading factor must lie in 7..12, got {self.sf}")
        self.cr = parse_cr(self.cr)
        if not math.isfinite(self.snr_db) or not -60.0 <= self.snr_db <= 60.0:
            raise SnnError(f"LoRa SNR must be a number of dB in [-60, 60], got {self.snr_db}")
        if not math.isfinite(self.offset_bins) or abs(self.offset_bins) > 0.5:
            raise SnnError(f"the residual offset must lie in [-0.5, 0.5] FFT bins (the receiver's sync "
                           f"removes whole bins), got {self.offset_bins}")
        if self.bw_hz not in (125_000, 250_000, 500_000):
            raise SnnError(f"LoRa bandwidth must be 125, 250 or 500 kHz, got {self.bw_hz / 1e3:g} kHz")

    # -- parameters
    @property
    def m(self) -> int:
        return 1 << self.sf

    @property
    def low_data_rate(self) -> bool:
        if self.ldro is not None:
            return bool(self.ldro)
        return (1 << self.sf) / self.bw_hz > 0.016

    @property
    def outcomes(self) -> np.ndarray:
        """P(bin k+j wins) for j = -3..3, then P(a far bin wins)."""
        return np.array(symbol_outcomes(self.sf, round(self.snr_db, 6), round(self.offset_bins, 6)))

    @property
    def symbol_error_rate(self) -> float:
        """P(the demodulator picks a wrong bin) for a full-rate symbol."""
        return float(1.0 - self.outcomes[CENTRAL])

    def symbols(self, n_bytes: int) -> int:
        """Chirp symbols of a packet of n_bytes (after the preamble)."""
        return _layout(int(n_bytes), self.sf, self.cr, self.low_data_rate).n_symbols

    # -- the chain
    def encode(self, packets: np.ndarray) -> np.ndarray:
        """(N, L) uint8 packets -> (N, symbols) FFT bins on the air."""
        packets = np.asarray(packets, dtype=np.uint8)
        lay = _layout(packets.shape[1], self.sf, self.cr, self.low_data_rate)
        white = packets ^ whitening_sequence()[:packets.shape[1]]
        nib = np.zeros((packets.shape[0], lay.n_codewords), np.int64)
        nib[:, 0:2 * packets.shape[1]:2] = white & 0x0F
        nib[:, 1:2 * packets.shape[1]:2] = white >> 4
        cw = np.where(lay.first, hamming_encode_table(4)[nib], hamming_encode_table(self.cr)[nib]).astype(np.uint8)
        bits = np.unpackbits(cw, axis=1)
        bits = np.take(np.concatenate([bits, np.zeros((len(bits), 1), np.uint8)], axis=1), lay.enc_src, axis=1)
        value = np.ascontiguousarray(np.packbits(bits, axis=1)).view(">u2").astype(np.int64)
        bins = gray_inverse(value, self.sf)
        return np.where(lay.reduced, bins << 2, bins)

    def decode(self, bins: np.ndarray, n_bytes: int) -> np.ndarray:
        """(N, symbols) received FFT bins -> (N, n_bytes) uint8 packets, as the radio hands them over."""
        lay = _layout(int(n_bytes), self.sf, self.cr, self.low_data_rate)
        bins = np.asarray(bins, dtype=np.int64)
        quarter = ((bins + 2) >> 2) & ((self.m >> 2) - 1)
        value = gray(np.where(lay.reduced, quarter, bins & (self.m - 1))).astype(">u2")
        bits = np.unpackbits(np.ascontiguousarray(value).view(np.uint8), axis=1)
        bits = np.take(np.concatenate([bits, np.zeros((len(bits), 1), np.uint8)], axis=1), lay.dec_src, axis=1)
        cw = np.packbits(bits, axis=1)
        nib = np.where(lay.first, hamming_decode_table(4)[cw],
                       hamming_decode_table(self.cr)[cw & ((1 << (4 + self.cr)) - 1)])
        nib = nib[:, :2 * n_bytes].astype(np.uint8)
        out = nib[:, 0::2] | (nib[:, 1::2] << 4)
        return out ^ whitening_sequence()[:n_bytes]

    def bin_errors(self, shape, rng: np.random.Generator) -> np.ndarray:
        """Signed bin errors the demodulator makes on `shape` symbols (0: right)."""
        cum = np.cumsum(self.outcomes)
        pick = np.searchsorted(cum, rng.random(shape) * cum[-1], side="right")
        pick = np.minimum(pick, _OFFSETS.size)
        err = np.zeros(shape, np.int64)
        central = pick < _OFFSETS.size
        err[central] = _OFFSETS[pick[central]]
        far = ~central
        n_far = int(far.sum())
        if n_far:
            err[far] = CENTRAL + 1 + rng.integers(0, self.m - _OFFSETS.size, n_far)
        return err

    def corrupt(self, frames, rng: np.random.Generator):
        arr = np.asarray(frames)
        if arr.dtype != np.uint8 or arr.ndim not in (1, 2):
            raise TypeError(f"frames must be a 1-D or 2-D uint8 array, got {arr.dtype} {arr.shape}")
        single = arr.ndim == 1
        rows = arr.reshape(1, -1) if single else arr
        out = np.empty_like(rows)
        n, width = rows.shape
        full, rest = divmod(width, MAX_PACKET_BYTES) if width > MAX_PACKET_BYTES else (0, width)
        if full:  # longer than a LoRa packet: consecutive 255-byte packets, coded as one batch
            body = np.ascontiguousarray(rows[:, :full * MAX_PACKET_BYTES]).reshape(n * full, MAX_PACKET_BYTES)
            out[:, :full * MAX_PACKET_BYTES] = self._through(body, rng).reshape(n, full * MAX_PACKET_BYTES)
        if rest or not full:
            out[:, full * MAX_PACKET_BYTES:] = self._through(rows[:, full * MAX_PACKET_BYTES:], rng)
        flipped = np.unpackbits(out ^ rows, axis=1).sum(axis=1).astype(np.int64)
        if single:
            return out.reshape(-1), np.int64(flipped[0])
        return out, flipped

    def _through(self, rows: np.ndarray, rng: np.random.Generator, chunk: int = 4096) -> np.ndarray:
        out = np.empty_like(rows)
        for a in range(0, rows.shape[0], chunk):
            part = rows[a:a + chunk]
            bins = self.encode(part)
            err = self.bin_errors(bins.shape, rng)
            hit = err.any(axis=1)
            out[a:a + chunk] = part
            if hit.any():
                out[a:a + chunk][hit] = self.decode((bins[hit] + err[hit]) % self.m, part.shape[1])
        return out

    def flip_positions(self, n_bits, rng):
        """One packet of n_bits / 8 bytes (consecutive 255-byte packets when longer)."""
        n = int(n_bits) // 8
        out, _ = self.corrupt(np.zeros(n, np.uint8), rng)
        return _positions(out)

    def packet_flip_positions(self, sizes, rng):
        sizes = np.asarray(sizes, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        parts = []
        for size in np.unique(sizes):
            idx = np.flatnonzero(sizes == size)
            if size == 0:
                continue
            out, _ = self.corrupt(np.zeros((idx.size, int(size)), np.uint8), rng)
            bits = np.unpackbits(out, axis=1)
            row, col = np.nonzero(bits)
            parts.append(starts[idx[row]] * 8 + col)
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    # -- analytic figures
    def _bit_flip_probs(self, reduced: bool) -> np.ndarray:
        """P(bit j, MSB first, of a symbol's value is wrong after demodulation), j < width."""
        p = self.outcomes
        m = self.m
        width = self.sf - 2 if reduced else self.sf
        values = np.arange(1 << width)
        codes = gray(values)
        masks = 1 << (width - 1 - np.arange(width))

        def flips(step: int) -> np.ndarray:       # P(bit j flips | the value moves by `step`)
            moved = gray((values + step) % (1 << width))
            return ((codes ^ moved)[:, None] & masks != 0).mean(axis=0)

        def shift_of(d: np.ndarray) -> np.ndarray:    # value step of a bin error d
            return (d + 2) >> 2 if reduced else d

        q = np.zeros(width)
        for d, pd in zip(_OFFSETS, p[:-1]):
            if d != 0 and pd > 0:
                q += pd * flips(int(shift_of(np.array(d))))
        # a far bin: uniform over bin errors 4..M-4. Every non-zero value step flips bit j for half
        # of the values (gray is a bijection), so only the steps whose count differs from the
        # typical one (1 per step at full rate, 4 at reduced rate) need enumerating.
        far_d = np.arange(CENTRAL + 1, m - CENTRAL)
        counts = np.bincount(shift_of(far_d) % (1 << width), minlength=1 << width)
        typical = 4 if reduced else 1
        total = typical * (1 << width) / 2.0 * np.ones(width)
        for s in np.flatnonzero(counts != typical):
            if s:
                total += (counts[s] - typical) * flips(int(s))
        return q + p[-1] * total / far_d.size

    def expected_ber(self, n_bytes: int = 51) -> float:
        """Expected bit error rate after decoding, packets of n_bytes.

        Exact under the model for uniformly distributed symbol values: the bits of one codeword
        come from different symbols, whose errors are independent, so each codeword's expected
        wrong data bits follow from the per-bit flip probabilities by enumerating its 2^(4+CR)
        error patterns. (A packet error rate does not factor that way, since one symbol carries
        a bit of every codeword of its block: `measure` counts it on real packets.)"""
        if n_bytes <= 0:
            return 0.0
        lay = _layout(int(n_bytes), self.sf, self.cr, self.low_data_rate)
        q_full, q_red = self._bit_flip_probs(False), self._bit_flip_probs(True)
        errors = 0.0
        cache: dict = {}
        for c in range(lay.n_nibbles):
            n_bits = int(lay.cw_bits[c])
            qs = tuple(float((q_red if lay.reduced[s] else q_full)[lay.bit_of[c, i]])
                       for i, s in enumerate(lay.sym_of[c, :n_bits]))
            key = (bool(lay.first[c]), qs)
            if key not in cache:
                cache[key] = _expected_wrong_bits(np.array(qs), hamming_decode_table(4 if lay.first[c] else self.cr))
            errors += cache[key]
        return errors / (8.0 * n_bytes)

    def measure(self, n_bytes: int, packets: int, rng: np.random.Generator) -> dict:
        """Send `packets` random packets of n_bytes through the chain: measured BER and packet
        error rate (a packet with any wrong bit after decoding)."""
        sent = rng.integers(0, 256, (int(packets), int(n_bytes)), dtype=np.uint8)
        _, flipped = self.corrupt(sent, rng)
        return {"packets": int(packets), "bytes": int(n_bytes),
                "ber": float(flipped.sum()) / (8.0 * n_bytes * packets),
                "packet_error_rate": float((flipped > 0).mean())}

    @property
    def ber(self) -> float:  # type: ignore[override]
        """Expected post-decoding BER of a 51-byte packet (the EU868 MTU at SF10-12)."""
        if self._ber is None:
            self._ber = self.expected_ber(51)
        return self._ber

    def describe(self) -> str:
        offset = f", offset {self.offset_bins:g} bins" if self.offset_bins else ""
        return (f"lora-phy SF{self.sf} CR4/{self.cr + 4} SNR {self.snr_db:g} dB{offset} "
                f"(LDRO {'on' if self.low_data_rate else 'off'}, symbol error rate {self.symbol_error_rate:.3g}, "
                f"BER after decoding {self.ber:.3g})")


@ERROR_MODELS.register("lora-phy", "lora_phy", "loraphy",
                       summary="bit-true LoRa PHY at snr_db (sf, cr, offset_bins): each frame one packet")
def _lora_phy(key: str, ber, burst, snr_db, kw) -> "LoRaPhy":
    if snr_db is None:
        raise SnnError("error model 'lora-phy' needs an SNR in dB (snr_db), not a BER")
    if ber is not None or burst is not None:
        raise SnnError("error model 'lora-phy' takes an SNR, spreading factor and coding rate, not a BER or burst")
    params = {k: kw.pop(k) for k in ("sf", "cr", "offset_bins", "bw_hz", "ldro") if k in kw}
    if kw:
        raise SnnError(f"error model {key!r} takes no option(s) {', '.join(sorted(kw))}")
    return LoRaPhy(snr_db=snr_db, **params)


def _expected_wrong_bits(q: np.ndarray, decode: np.ndarray) -> float:
    """Independent bit flips with probabilities q on a codeword: expected wrong data bits after
    `decode`. The code is linear and the decoder translation invariant: codeword 0 stands for all."""
    n = q.size
    patterns = np.arange(1 << n)
    bits = (patterns[:, None] >> (n - 1 - np.arange(n))) & 1
    prob = np.prod(np.where(bits == 1, q, 1.0 - q), axis=1)
    wrong = np.array([int(v).bit_count() for v in decode[patterns]])
    return float((prob * wrong).sum())


def _positions(out: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(out)).astype(np.int64)


def lora_phy_settings(sfs: str, snrs: list[float] | None, cr: str, offset_bins: float) -> list[dict]:
    """The (SF, SNR) settings of `--model lora-phy` in `snn eval` and `snn bench accuracy`:
    each SF's `snrs`, or its Semtech limit and 2 and 4 dB either side; `make_error_model` kw."""
    try:
        sf_list = [int(v) for v in str(sfs).split(",") if v.strip()]
    except ValueError:
        raise SnnError(f"--sf takes comma-separated spreading factors 7..12, got {sfs!r}") from None
    if not sf_list:
        raise SnnError("--sf needs at least one spreading factor")
    out = []
    for sf in sf_list:
        LoRaPhy(sf=sf, cr=cr, offset_bins=offset_bins)  # validates sf, cr and offset now
        limit = SEMTECH_SNR_LIMIT_DB[sf]
        for snr in snrs if snrs is not None else [limit + d for d in (-4, -2, 0, 2, 4)]:
            out.append({"model": "lora-phy", "snr_db": float(snr), "sf": sf, "cr": cr, "offset_bins": offset_bins})
    return out

"""The binary BCH code that protects every v2 header block: BCH(127, 99), t = 4, over GF(2^7).

Why this code: a v2 header block is 68..92 information bits that must arrive exactly (or be
dropped). A bit-level code fits bit errors (a byte-level Reed–Solomon code sees every byte with a
flipped bit as damaged: 8x the symbol error rate at low BER). Four corrected bits in a 96-bit
block lose 0.34 % of blocks at i.i.d. BER 1e-2 (binomial tail P(>= 5 | n = 96)) for 28 parity
bits; the information lengths are chosen so that information + parity is a whole number of
bytes (68 + 28 = 96 bits = 12 bytes for a plain DATA block). The encoder is a CRC with the code's
generator polynomial: a C firmware writes it in ten lines.

Parameters (docs/PROTOCOL.md §3): GF(2^7) with primitive polynomial x^7 + x^3 + 1 (0x89), alpha =
x; generator g(x) = lcm of the minimal polynomials of alpha^1, alpha^3, alpha^5, alpha^7 (degree
28, `GENERATOR`). Systematic and shortened: a block is the information bits followed by the 28
parity bits, the remainder of info(x)·x^28 mod g(x); the first bit is the highest-degree
coefficient. Decoding: remainder -> syndromes S1..S8 -> Berlekamp–Massey -> Chien search over the
shortened positions; a block with more than 4 errors is either reported uncorrectable or (rarely)
miscorrected, which the MIC behind it catches.
"""
from __future__ import annotations

import numpy as _np

M = 7
N = (1 << M) - 1           # 127
PRIMITIVE = 0x89
T = 4                      # errors corrected per block
PARITY_BITS = 28
MAX_BITS = N               # information + parity bits of a (shortened) block
_MASK = (1 << PARITY_BITS) - 1


def _gf_tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * (2 * N), [0] * (N + 1)
    x = 1
    for i in range(N):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & (1 << M):
            x ^= PRIMITIVE
    for i in range(N, 2 * N):
        exp[i] = exp[i - N]
    return exp, log


EXP, LOG = _gf_tables()
_EXP_NP = _np.array(EXP, dtype=_np.int64)
_POSITIONS = _np.arange(MAX_BITS, dtype=_np.int64)


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _minimal_polynomial(power: int) -> int:
    """Minimal polynomial over GF(2) of alpha^power, as an int (bit i = coefficient of x^i)."""
    conjugates, e = [], power % N
    while e not in conjugates:
        conjugates.append(e)
        e = (2 * e) % N
    poly = [1]  # coefficients in GF(2^7), lowest degree first
    for c in conjugates:
        root = EXP[c]
        nxt = [0] * (len(poly) + 1)
        for i, coef in enumerate(poly):
            nxt[i + 1] ^= coef
            nxt[i] ^= _mul(coef, root)
        poly = nxt
    assert all(c in (0, 1) for c in poly)
    return sum(c << i for i, c in enumerate(poly))


def _clmul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


def _generator() -> int:
    g = 1
    for power in range(1, 2 * T, 2):
        g = _clmul(g, _minimal_polynomial(power))
    return g


GENERATOR = _generator()                      # x^28 + ...: 0x1_xxx_xxxx
assert GENERATOR.bit_length() == PARITY_BITS + 1
_GLOW = GENERATOR & _MASK                      # the CRC polynomial without its x^28 term


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        r = byte << (PARITY_BITS - 8)
        for _ in range(8):
            r = ((r << 1) ^ _GLOW) & _MASK if r >> (PARITY_BITS - 1) else (r << 1) & _MASK
        table.append(r)
    return table


_TABLE = _crc_table()


def remainder(data: bytes) -> int:
    """data(x) · x^28 mod g(x): a 28-bit CRC with polynomial g (init 0, MSB first, no reflection,
    no final XOR). Leading zero bits do not change it, so information bits that are not a whole
    number of bytes are fed with zero bits in front."""
    r = 0
    for byte in data:
        r = ((r << 8) & _MASK) ^ _TABLE[(r >> (PARITY_BITS - 8)) ^ byte]
    return r


def parity(info: int, info_bits: int) -> int:
    """The 28 parity bits of `info_bits` information bits (an int, first bit most significant)."""
    return remainder(info.to_bytes((info_bits + 7) // 8, "big"))


def encode(info: int, info_bits: int) -> bytes:
    """info ‖ parity as bytes; info_bits + 28 must be a multiple of 8 and at most 127."""
    total = info_bits + PARITY_BITS
    if total % 8 or total > MAX_BITS or info >> info_bits:
        raise ValueError(f"{info_bits} information bits do not make a whole BCH block of <= {MAX_BITS} bits")
    return ((info << PARITY_BITS) | parity(info, info_bits)).to_bytes(total // 8, "big")


def _syndrome_tables() -> list[list[list[int]]]:
    """Per odd j and per byte of the 28-bit remainder: the byte's contribution to S_j."""
    tables = []
    for j in range(1, 2 * T, 2):
        per_byte = []
        for k in range(4):
            row = []
            for value in range(256):
                s = 0
                for bit in range(8):
                    if value >> bit & 1:
                        s ^= EXP[(j * (8 * k + bit)) % N]
                row.append(s)
            per_byte.append(row)
        tables.append(per_byte)
    return tables


_SYN = _syndrome_tables()


def _syndromes(rem: int) -> list[int]:
    """S_1..S_2t of a received block whose remainder mod g is `rem` (g(alpha^j) = 0 for j <= 2t):
    odd ones by table, even ones as squares (S_2j = S_j^2 in characteristic 2)."""
    b0, b1, b2, b3 = rem & 0xFF, (rem >> 8) & 0xFF, (rem >> 16) & 0xFF, rem >> 24
    odd = [t[0][b0] ^ t[1][b1] ^ t[2][b2] ^ t[3][b3] for t in _SYN]
    s = [0] * (2 * T)
    for i, v in enumerate(odd):
        s[2 * i] = v
    for j in range(2, 2 * T + 1, 2):
        h = s[j // 2 - 1]
        s[j - 1] = _mul(h, h)
    return s


def _berlekamp_massey(s: list[int]) -> list[int]:
    """Error locator Lambda(x) (lowest degree first) from syndromes S1..S2t."""
    lam, prev = [1], [1]
    length, shift, b = 0, 1, 1
    for n in range(len(s)):
        d = s[n]
        for i in range(1, length + 1):
            if i < len(lam) and lam[i]:
                d ^= _mul(lam[i], s[n - i])
        if d == 0:
            shift += 1
            continue
        coef = EXP[LOG[d] + N - LOG[b]]
        new = lam + [0] * max(0, len(prev) + shift - len(lam))
        for i, p in enumerate(prev):
            new[i + shift] ^= _mul(coef, p)
        if 2 * length <= n:
            prev, lam, length, b, shift = lam, new, n + 1 - length, d, 1
        else:
            lam, shift = new, shift + 1
    while len(lam) > 1 and lam[-1] == 0:
        lam.pop()
    return lam if len(lam) - 1 == length else [1] + [0] * length  # degree != length: failure


def decode(block: bytes) -> tuple[bytes, int] | None:
    """(the corrected block, bits corrected), or None when more than t errors are detected."""
    nbits = 8 * len(block)
    if nbits <= PARITY_BITS or nbits > MAX_BITS:
        raise ValueError(f"a BCH block is 5..{MAX_BITS // 8} bytes, not {len(block)}")
    value = int.from_bytes(block, "big")
    rem = parity(value >> PARITY_BITS, nbits - PARITY_BITS) ^ (value & _MASK)
    if rem == 0:
        return bytes(block), 0                 # a codeword: the clean path costs one CRC
    lam = _berlekamp_massey(_syndromes(rem))
    degree = len(lam) - 1
    if degree == 0 or degree > T or lam[-1] == 0:
        return None
    # Chien search: the bit at degree i (i = 0 is the block's last bit) is in error iff
    # Lambda(alpha^-i) = 0; only the nbits positions of the shortened code may hold errors
    v = _np.ones(nbits, dtype=_np.int64)
    for k, c in enumerate(lam):
        if c and k:
            v ^= _EXP_NP[(LOG[c] - k * _POSITIONS[:nbits]) % N]
    flips = _np.flatnonzero(v == 0).tolist()
    if len(flips) != degree:
        return None
    for i in flips:
        value ^= 1 << i
    return value.to_bytes(len(block), "big"), degree

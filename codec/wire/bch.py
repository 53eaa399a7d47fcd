"""The binary BCH code that protects every v2 header block: BCH(255, 223), t = 4, over GF(2^8).

Why this code: a v2 header block is 72..104 information bits that must arrive exactly (or be
dropped). A bit-level code fits bit errors (a byte-level Reed–Solomon code sees every byte with a
flipped bit as damaged: 8x the symbol error rate at low BER). Four corrected bits in a 104-bit
block lose 0.4 % of blocks at i.i.d. BER 1e-2 (Poisson tail P(>=5 | mean 1.04)); 32 parity bits
keep the block byte-aligned (9 info bytes + 4 parity bytes = 13 bytes) and make the encoder a
plain CRC-32 with the code's generator polynomial, which a C firmware writes in ten lines.

Parameters (docs/PROTOCOL.md §3): GF(2^8) with primitive polynomial x^8+x^4+x^3+x^2+1 (0x11D),
alpha = x; generator g(x) = lcm of the minimal polynomials of alpha^1, alpha^3, alpha^5, alpha^7
(degree 32, `GENERATOR`). Systematic and shortened: a block is the information bytes followed by
the 32 parity bits, the remainder of info(x)·x^32 mod g(x); bits are read MSB first, the first bit
being the highest-degree coefficient. Decoding: remainder -> syndromes S1..S8 -> Berlekamp–Massey
-> Chien search over the shortened positions; a block with more than 4 errors is either reported
uncorrectable or (rarely) miscorrected, which the MIC behind it catches.
"""
from __future__ import annotations

PRIMITIVE = 0x11D
T = 4                      # errors corrected per block
PARITY_BITS = 32
PARITY_BYTES = 4
MAX_INFO_BYTES = 27        # 223 information bits at most, in whole bytes


def _gf_tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= PRIMITIVE
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


EXP, LOG = _gf_tables()


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _minimal_polynomial(power: int) -> int:
    """Minimal polynomial over GF(2) of alpha^power, as an int (bit i = coefficient of x^i)."""
    conjugates, e = [], power % 255
    while e not in conjugates:
        conjugates.append(e)
        e = (2 * e) % 255
    poly = [1]  # coefficients in GF(2^8), lowest degree first
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


GENERATOR = _generator()                      # x^32 + ...: 0x1_xxxx_xxxx
assert GENERATOR.bit_length() == PARITY_BITS + 1
_G32 = GENERATOR & 0xFFFFFFFF                 # the CRC-32 polynomial without its x^32 term


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        r = byte << 24
        for _ in range(8):
            r = ((r << 1) ^ _G32) & 0xFFFFFFFF if r & 0x80000000 else (r << 1) & 0xFFFFFFFF
        table.append(r)
    return table


_TABLE = _crc_table()


def _crc(data: bytes) -> int:
    r = 0
    for byte in data:
        r = ((r << 8) & 0xFFFFFFFF) ^ _TABLE[(r >> 24) ^ byte]
    return r


# The parity is linear over GF(2): the XOR of the parities of each byte in its place. Per
# distance from the end, the parity of every byte value (what the C firmware does with the
# CRC table above instead; same result, checked by tests/codec/wire/test_bch.py).
_PLACED = [[_crc(bytes([b]) + bytes(k)) for b in range(256)] for k in range(MAX_INFO_BYTES + PARITY_BYTES)][::-1]


def remainder(data: bytes) -> int:
    """data(x) · x^32 mod g(x): the parity of `data` (a CRC-32 with polynomial g, init 0, MSB
    first, no reflection, no final XOR). Zero for a whole codeword without errors."""
    r = 0
    for table, byte in zip(_PLACED[len(_PLACED) - len(data):], data):
        r ^= table[byte]
    return r


def encode(info: bytes) -> bytes:
    """info ‖ its 4 parity bytes."""
    if not 1 <= len(info) <= MAX_INFO_BYTES:
        raise ValueError(f"a BCH block carries 1..{MAX_INFO_BYTES} information bytes, not {len(info)}")
    return bytes(info) + remainder(info).to_bytes(PARITY_BYTES, "big")


def _syndromes(block: bytes) -> list[int]:
    """S_1..S_2t of a received block, from its remainder mod g (g(alpha^j) = 0 for j = 1..2t).

    r(x) = q(x)g(x) + R(x) with R of degree < 32; the block's polynomial is data·x^32 + parity,
    i.e. exactly the received bits, so S_j = r(alpha^j) = R'(alpha^j) where R' is the remainder
    of the *whole* received block (info and parity) divided by g — computed as the CRC register
    after feeding the info bytes, XORed with the received parity (both are of degree < 32)."""
    info, parity = block[:-PARITY_BYTES], int.from_bytes(block[-PARITY_BYTES:], "big")
    rem = remainder(info) ^ parity
    out = []
    for j in range(1, 2 * T + 1):
        s, bit = 0, 0
        r = rem
        while r:
            if r & 1:
                s ^= EXP[(j * bit) % 255]
            r >>= 1
            bit += 1
        out.append(s)
    return out


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
        coef = EXP[LOG[d] + 255 - LOG[b]]
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
    block = bytes(block)
    nbits = 8 * len(block)
    if len(block) <= PARITY_BYTES or nbits > 255:
        raise ValueError(f"a BCH block is 5..{255 // 8} bytes, not {len(block)}")
    if remainder(block[:-PARITY_BYTES]) == int.from_bytes(block[-PARITY_BYTES:], "big"):
        return block, 0                       # a codeword: the clean path costs one CRC
    s = _syndromes(block)
    if not any(s):
        return block, 0
    lam = _berlekamp_massey(s)
    degree = len(lam) - 1
    if degree == 0 or degree > T or lam[-1] == 0:
        return None
    # Chien search: bit at degree i (i = 0 is the last bit of the block) is in error iff
    # Lambda(alpha^-i) = 0. Only the nbits positions of the shortened code may hold errors.
    logs = [(k, LOG[c]) for k, c in enumerate(lam) if c and k]
    flips = []
    for i in range(nbits):
        v = 1
        for k, lc in logs:
            v ^= EXP[(lc - k * i) % 255]
        if v == 0:
            flips.append(i)
    if len(flips) != degree:
        return None
    value = int.from_bytes(block, "big")
    for i in flips:
        value ^= 1 << i
    return value.to_bytes(len(block), "big"), degree

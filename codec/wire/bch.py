"""Binary BCH code over GF(2^7), t = 4: the bit-level code that protects every v2 header block.

Why BCH and not the v1 Reed-Solomon: at BER 1e-2 to 1e-1 bit errors are scattered, so a byte
code sees most of its bytes damaged; a bit code spends 7 parity bits per corrected bit error.
BCH(127, 99) corrects any 4 bit errors with 28 parity bits; it is shortened (leading message
bits fixed at 0 and not sent) to the block sizes of docs/PROTOCOL.md §3: 96, 104 and 64 bits.

Everything is table driven so that the C firmware can copy it (docs/PROTOCOL.md §3.2):

- GF(2^7) with primitive polynomial x^7 + x^3 + 1 (0x89), alpha = x: `EXP`/`LOG` tables;
- generator g(x) = lcm of the minimal polynomials of alpha^1, alpha^3, alpha^5, alpha^7
  (degree 28, `GENERATOR`);
- systematic encoding: parity = m(x) * x^28 mod g(x), computed like a CRC-28 with a 256-entry
  table (`_TABLE`); the codeword is the message bits followed by the 28 parity bits, MSB first;
- decoding: the same CRC of the received word is 0 for a codeword (no further work on a clean
  link); otherwise syndromes S_1..S_8, Berlekamp-Massey, Chien search over the n positions.

A word with more than 4 errors is either detected (decoding fails) or miscorrected to another
codeword; the frame's MIC catches the latter (docs/PROTOCOL.md §3.3).
"""
from __future__ import annotations

import numpy as np

M = 7                       # GF(2^m)
PRIMITIVE = 0x89            # x^7 + x^3 + 1
FIELD = (1 << M) - 1        # 127 non-zero elements: the code length before shortening
T = 4                       # bit errors corrected per block
PARITY_BITS = M * T         # 28


def _field_tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * (2 * FIELD), [0] * (FIELD + 1)
    x = 1
    for i in range(FIELD):
        exp[i] = exp[i + FIELD] = x
        log[x] = i
        x <<= 1
        if x & (1 << M):
            x ^= PRIMITIVE
    if x != 1 or len(set(exp[:FIELD])) != FIELD:
        raise AssertionError("0x89 is not primitive")  # never: checked at import
    return exp, log


EXP, LOG = _field_tables()


def gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _poly_mul_gf2(a: int, b: int) -> int:
    """Product of two GF(2) polynomials held as ints (bit i = coefficient of x^i)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


def _minimal_polynomial(power: int) -> int:
    """The GF(2) minimal polynomial of alpha^power: product of (x - alpha^c) over its coset."""
    coset, c = [], power % FIELD
    while c not in coset:
        coset.append(c)
        c = (2 * c) % FIELD
    poly = [1]  # coefficients in GF(2^7), lowest degree first
    for c in coset:
        root = EXP[c]
        nxt = [0] * (len(poly) + 1)
        for i, coef in enumerate(poly):
            nxt[i + 1] ^= coef
            nxt[i] ^= gf_mul(coef, root)
        poly = nxt
    assert all(coef in (0, 1) for coef in poly)
    return sum(coef << i for i, coef in enumerate(poly))


def _generator() -> int:
    g, seen = 1, set()
    for power in range(1, 2 * T, 2):
        mp = _minimal_polynomial(power)
        if mp not in seen:
            seen.add(mp)
            g = _poly_mul_gf2(g, mp)
    assert g.bit_length() - 1 == PARITY_BITS
    return g


GENERATOR = _generator()    # 0x1_6F63_BD3 style constant, printed in docs/PROTOCOL.md §3.2
_MASK = (1 << PARITY_BITS) - 1


def _crc_table() -> list[int]:
    """table[b] = b(x) * x^28 mod g(x) for every byte b (MSB-first CRC-28 table)."""
    table = []
    low = GENERATOR & _MASK
    for b in range(256):
        r = b << (PARITY_BITS - 8)
        for _ in range(8):
            r = ((r << 1) & _MASK) ^ low if r & (1 << (PARITY_BITS - 1)) else (r << 1) & _MASK
        table.append(r)
    return table


_TABLE = _crc_table()


def _syndrome_tables() -> list[list[int]]:
    """tables[b][v]: the 2T syndromes (8 bits each, S_1 lowest) that byte b = v of a remainder
    contributes: bit i of r adds alpha^((i - 28) j) to S_j."""
    def bit(i: int) -> int:
        return sum(EXP[((i - PARITY_BITS) * j) % FIELD] << (8 * (j - 1)) for j in range(1, 2 * T + 1))
    tables = []
    for b in range((PARITY_BITS + 7) // 8):
        row = []
        for v in range(256):
            acc = 0
            for k in range(8):
                if v >> k & 1:
                    acc ^= bit(8 * b + k)
            row.append(acc)
        tables.append(row)
    return tables


_SYNDROME_BYTES = _syndrome_tables()
_EXP_WIDE = np.array(EXP, dtype=np.uint8)     # alpha^k for k in [0, 254): no modulo after adding logs
# _CHIEN_LOGS[d, i] = log of (alpha^-i)^d, the exponent the Chien search adds to log(coef_d)
_CHIEN_LOGS = np.array([[(d * (FIELD - i)) % FIELD for i in range(FIELD)] for d in range(T + 1)],
                       dtype=np.int32)


def remainder(data: bytes) -> int:
    """data(x) * x^28 mod g(x), data MSB first (a CRC-28 with no init and no final XOR)."""
    r = 0
    for byte in data:
        r = ((r << 8) & _MASK) ^ _TABLE[(r >> (PARITY_BITS - 8)) ^ byte]
    return r


def prefix_remainders(data: bytes, lengths) -> dict[int, int]:
    """{length: remainder(data[:length])} for several prefix lengths in one pass over the bytes
    (the header block sizes a datagram may have, checked at the cost of the longest)."""
    wanted, out, r = set(lengths), {}, 0
    for i, byte in enumerate(data[:max(wanted)]):
        r = ((r << 8) & _MASK) ^ _TABLE[(r >> (PARITY_BITS - 8)) ^ byte]
        if i + 1 in wanted:
            out[i + 1] = r
    return out


def encode(message: int, k: int) -> int:
    """The n = k + 28-bit codeword (as an int, MSB = first bit on the air) of a k-bit message."""
    if message >> k:
        raise ValueError(f"message wider than {k} bits")
    nbytes = (k + 7) // 8
    return (message << PARITY_BITS) | remainder(message.to_bytes(nbytes, "big"))


def decode(word: int, n: int) -> tuple[int, int] | None:
    """(corrected codeword, bits corrected) of an n-bit received word, or None when more than T
    bits are wrong in a way the code can see. n must be a multiple of 8 (a whole block)."""
    if n > FIELD or n % 8:
        raise ValueError(f"a block of {n} bits: a multiple of 8 up to {FIELD - FIELD % 8} bits")
    r = remainder(word.to_bytes(n // 8, "big"))
    if r == 0:
        return word, 0
    # r(x) = word(x) * x^28 mod g, so word(alpha^j) = r(alpha^j) * alpha^(-28 j) for j = 1..2T:
    # all 2T syndromes at once, 8 bits each in one int, from a table per byte of r
    packed = (_SYNDROME_BYTES[0][r & 0xFF] ^ _SYNDROME_BYTES[1][r >> 8 & 0xFF]
              ^ _SYNDROME_BYTES[2][r >> 16 & 0xFF] ^ _SYNDROME_BYTES[3][r >> 24])
    synd = [0] + [packed >> (8 * (j - 1)) & 0xFF for j in range(1, 2 * T + 1)]
    locator = _berlekamp_massey(synd)
    degree = len(locator) - 1
    if degree == 0 or degree > T:
        return None
    # Chien search: an error at bit position i (x^i) when locator(alpha^-i) = 0, all n
    # positions at once (numpy: a pure-Python loop cost ~90 us a block, paid by every reading of
    # a datagram that is not its layout)
    acc = np.zeros(n, dtype=np.uint8)
    for d, coef in enumerate(locator):
        if coef:
            acc ^= _EXP_WIDE[_CHIEN_LOGS[d, :n] + LOG[coef]]
    positions = np.flatnonzero(acc == 0).tolist()
    if len(positions) != degree:
        return None  # roots outside the shortened block, or not all roots distinct: uncorrectable
    for i in positions:
        word ^= 1 << i
    return word, degree


def _berlekamp_massey(synd: list[int]) -> list[int]:
    """Error locator Lambda(x) (coefficients lowest degree first) from syndromes S_1..S_2T."""
    lam, prev = [1], [1]
    length, shift, prev_disc = 0, 1, 1
    for k in range(1, 2 * T + 1):
        if not k & 1:
            # a binary code's syndromes satisfy S_2i = S_i^2, so every even step's discrepancy
            # is 0 (the binary simplification of Berlekamp-Massey): skip its computation
            shift += 1
            continue
        disc = synd[k]
        for i in range(1, length + 1):
            if i < len(lam) and lam[i] and synd[k - i]:
                disc ^= gf_mul(lam[i], synd[k - i])
        if disc == 0:
            shift += 1
            continue
        scale = gf_mul(disc, EXP[(FIELD - LOG[prev_disc]) % FIELD])
        new = lam + [0] * max(0, len(prev) + shift - len(lam))
        for i, coef in enumerate(prev):
            new[i + shift] ^= gf_mul(scale, coef)
        if 2 * length <= k - 1:
            prev, length, prev_disc, shift = lam, k - length, disc, 1
        else:
            shift += 1
        lam = new
    while len(lam) > 1 and lam[-1] == 0:
        lam.pop()
    return lam


try:   # the C fast path (codec/wire/_native.c), the same remainder in one call
    from codec.wire._native import remainder as _remainder_native
except ImportError:
    _remainder_native = None
remainder_py = remainder
if _remainder_native is not None:
    remainder = _remainder_native   # noqa: F811

"""BCH(127, 99) t=4 over GF(2^7): corrects every pattern of <= 4 flips, detects beyond."""
import itertools
import random

import pytest

from codec.wire import bch


def _block(rng, nbytes):
    bits = 8 * nbytes - bch.PARITY_BITS
    return bch.encode(rng.getrandbits(bits), bits)


def test_generator_is_the_product_of_four_minimal_polynomials():
    assert bch.GENERATOR == 0x1C9C26B9  # documented in docs/PROTOCOL.md §3
    # g divides x^127 - 1 (so it generates a cyclic code of length 127)
    r, g = 1 << 127 | 1, bch.GENERATOR
    while r.bit_length() >= g.bit_length():
        r ^= g << (r.bit_length() - g.bit_length())
    assert r == 0


def test_parity_is_the_crc28_with_polynomial_g():
    assert bch.remainder(b"123456789") == 0x816FB28  # check value, listed in PROTOCOL.md
    info = int.from_bytes(b"123456789", "big") & ((1 << 68) - 1)
    assert bch.encode(info, 68) == ((info << 28) | bch.remainder(info.to_bytes(9, "big"))).to_bytes(12, "big")
    # bit-serial division (what a C firmware may do instead of the table) gives the same parity
    r = 0
    for i in range(67, -1, -1):
        top = ((r >> 27) & 1) ^ ((info >> i) & 1)
        r = ((r << 1) & ((1 << 28) - 1)) ^ (bch.GENERATOR & ((1 << 28) - 1) if top else 0)
    assert r == bch.parity(info, 68)


@pytest.mark.parametrize("size", [12, 15])
def test_every_single_and_double_flip_is_corrected(size):
    block = _block(random.Random(size), size)
    value = int.from_bytes(block, "big")
    for i, j in itertools.combinations_with_replacement(range(8 * size), 2):
        flipped = value ^ (1 << i) ^ (1 << j if j != i else 0)
        assert bch.decode(flipped.to_bytes(size, "big")) == (block, 1 if i == j else 2)


def test_random_triple_and_quadruple_flips_are_corrected():
    rng = random.Random(3)
    for _ in range(2000):
        size = rng.choice([12, 13, 14, 15])
        block = _block(rng, size)
        k = rng.choice([3, 4])
        value = int.from_bytes(block, "big")
        for p in rng.sample(range(8 * size), k):
            value ^= 1 << p
        assert bch.decode(value.to_bytes(size, "big")) == (block, k)


def test_five_flips_are_mostly_detected():
    rng = random.Random(5)
    detected = 0
    for _ in range(2000):
        block = _block(rng, 12)
        value = int.from_bytes(block, "big")
        for p in rng.sample(range(96), 5):
            value ^= 1 << p
        out = bch.decode(value.to_bytes(12, "big"))
        assert out is None or out[0] != block  # never "corrected" to the sent block
        detected += out is None
    assert detected >= 0.97 * 2000  # the rest is miscorrected: the MIC catches those


def test_lengths_outside_the_code_are_refused():
    with pytest.raises(ValueError):
        bch.encode(1, 100)          # 128 bits: longer than the code
    with pytest.raises(ValueError):
        bch.encode(1, 67)           # not a whole number of bytes
    with pytest.raises(ValueError):
        bch.decode(bytes(3))

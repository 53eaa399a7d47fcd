"""BCH(255, 223) t=4 over GF(2^8): corrects every pattern of <= 4 flips, detects beyond."""
import itertools
import random

import pytest

from codec.wire import bch


def test_generator_is_the_product_of_four_minimal_polynomials():
    assert bch.GENERATOR == 0x1EE5B42FD  # documented in docs/PROTOCOL.md §3
    # g divides x^255 - 1 (so it generates a cyclic code of length 255)
    r, g = 1 << 255 | 1, bch.GENERATOR
    while r.bit_length() >= g.bit_length():
        r ^= g << (r.bit_length() - g.bit_length())
    assert r == 0


def test_parity_is_the_crc32_with_polynomial_g():
    assert bch.encode(b"123456789")[-4:] == bch.remainder(b"123456789").to_bytes(4, "big")
    rng = random.Random(0)
    for n in range(1, bch.MAX_INFO_BYTES + 1):   # the placed tables agree with the plain CRC loop
        data = bytes(rng.randrange(256) for _ in range(n))
        assert bch.remainder(data) == bch._crc(data)
    assert bch.remainder(b"123456789") == 0x0E7C650A  # check value, listed in PROTOCOL.md


@pytest.mark.parametrize("size", [13, 17])
def test_every_single_and_double_flip_is_corrected(size):
    block = bch.encode(bytes(random.Random(size).randrange(256) for _ in range(size - 4)))
    value = int.from_bytes(block, "big")
    for i, j in itertools.combinations_with_replacement(range(8 * size), 2):
        flipped = value ^ (1 << i) ^ (1 << j if j != i else 0)
        assert bch.decode(flipped.to_bytes(size, "big")) == (block, 1 if i == j else 2)


def test_random_triple_and_quadruple_flips_are_corrected():
    rng = random.Random(3)
    for _ in range(2000):
        size = rng.choice([13, 14, 15, 17])
        block = bch.encode(bytes(rng.randrange(256) for _ in range(size - 4)))
        k = rng.choice([3, 4])
        value = int.from_bytes(block, "big")
        for p in rng.sample(range(8 * size), k):
            value ^= 1 << p
        assert bch.decode(value.to_bytes(size, "big")) == (block, k)


def test_five_flips_are_mostly_detected():
    rng = random.Random(5)
    detected = 0
    for _ in range(2000):
        block = bch.encode(bytes(rng.randrange(256) for _ in range(9)))
        value = int.from_bytes(block, "big")
        for p in rng.sample(range(104), 5):
            value ^= 1 << p
        out = bch.decode(value.to_bytes(13, "big"))
        assert out is None or out[0] != block  # never "corrected" to the sent block
        detected += out is None
    assert detected >= 0.99 * 2000  # the rest is miscorrected: the MIC catches those


def test_lengths_outside_the_code_are_refused():
    with pytest.raises(ValueError):
        bch.encode(bytes(28))
    with pytest.raises(ValueError):
        bch.decode(bytes(4))

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.wire.packing import (
    bits_per_symbol,
    erased_symbols,
    gray_decode_table,
    pack_symbols,
    packed_bytes,
    symbol_codes,
    unpack_symbols,
)


def test_bits_per_symbol():
    assert [bits_per_symbol(L) for L in (2, 3, 4, 5, 8, 9, 16, 255, 256)] == [1, 2, 2, 3, 3, 4, 4, 8, 8]
    for bad in (1, 0, 257):
        with pytest.raises(ValueError):
            bits_per_symbol(bad)


@pytest.mark.parametrize("levels", [2, 3, 4, 5, 7, 8, 16, 100, 256])
def test_neighbouring_centres_differ_by_one_bit(levels):
    codes = symbol_codes(levels).astype(int)
    assert len(set(codes)) == levels
    assert all(bin(a ^ b).count("1") == 1 for a, b in zip(codes[:-1], codes[1:]))


def test_gray_table_inverts():
    for b in range(1, 9):
        table = gray_decode_table(b)
        idx = np.arange(1 << b)
        assert (table[idx ^ (idx >> 1)] == idx).all()


@settings(max_examples=200, deadline=None)
@given(levels=st.integers(2, 256), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       gray=st.booleans())
def test_round_trip(levels, n, seed, gray):
    sym = np.random.default_rng(seed).integers(0, levels, size=(3, n))
    packed = pack_symbols(sym, levels, gray)
    assert packed.shape == (3, packed_bytes(n, levels))
    assert (unpack_symbols(packed, levels, n, gray) == sym).all()
    assert (unpack_symbols(packed[1], levels, n, gray) == sym[1]).all()


def test_msb_first_known_bytes():
    # symbols 0..7 at 3 bits, Gray codes 000 001 011 010 110 111 101 100 -> 24 bits
    packed = pack_symbols(np.arange(8), 8)
    assert packed.tobytes() == bytes([0b00000101, 0b10101101, 0b11101100])
    assert pack_symbols(np.arange(8), 8, gray=False).tobytes() == bytes([0b00000101, 0b00111001, 0b01110111])


def test_single_bit_flip_moves_one_symbol_only():
    rng = np.random.default_rng(0)
    sym = rng.integers(0, 8, size=98)
    packed = pack_symbols(sym, 8)
    for bit in range(98 * 3):
        flipped = packed.copy()
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        out = unpack_symbols(flipped, 8, 98)
        changed = np.flatnonzero(out != sym)
        assert changed.tolist() == [bit // 3]


def test_codes_past_levels_clamp():
    # L=5 uses 3 bits; code 0b100 (gray of 7) is not a valid symbol and clamps to 4
    assert unpack_symbols(np.array([0b10000000], dtype=np.uint8), 5, 1).tolist() == [4]


def test_out_of_range_symbols_refused():
    with pytest.raises(ValueError):
        pack_symbols(np.array([8]), 8)


def test_erased_symbols_mask():
    erased = np.zeros(37, dtype=bool)
    erased[1] = True  # bits 8..15 -> symbols 2 (bits 6-8), 3, 4 (bits 12-14), 5 (bits 15-17)
    mask = erased_symbols(erased, 8, 98)
    assert np.flatnonzero(mask).tolist() == [2, 3, 4, 5]

"""Fixed-length, Gray-coded symbol packing.

L levels (2..256) take b = ceil(log2 L) bits per symbol, MSB first, with no entropy coding: a
flipped bit damages one symbol and never desynchronises the rest. Symbol index i (the rank of its
centre sorted by value) is sent as the Gray code g(i) = i ^ (i >> 1), so neighbouring centres
differ in exactly one bit and the most likely error (one bit) moves a symbol to a neighbour.
Codes that decode past L-1 (possible when L is not a power of two) are clamped to L-1.
"""
from __future__ import annotations

import numpy as np


def bits_per_symbol(levels: int) -> int:
    """b = ceil(log2 L) for 2 <= L <= 256."""
    if not 2 <= int(levels) <= 256:
        raise ValueError(f"levels must lie in 2..256, got {levels}")
    return int(levels - 1).bit_length()


def gray_encode(index: np.ndarray | int) -> np.ndarray | int:
    """Binary-reflected Gray code of an index."""
    return index ^ (index >> 1)


def gray_decode_table(bits: int) -> np.ndarray:
    """Lookup table code -> index that inverts `gray_encode` for all b-bit codes."""
    codes = np.arange(1 << bits, dtype=np.uint16)
    table = np.empty(1 << bits, dtype=np.uint8)
    table[gray_encode(codes)] = codes
    return table


def symbol_codes(levels: int, gray: bool = True) -> np.ndarray:
    """The code sent for each symbol index (uint8, length L)."""
    idx = np.arange(levels, dtype=np.uint16)
    return (gray_encode(idx) if gray else idx).astype(np.uint8)


def packed_bytes(n_symbols: int, levels: int) -> int:
    """Bytes needed for n_symbols symbols of L levels (last byte zero-padded)."""
    return (n_symbols * bits_per_symbol(levels) + 7) // 8


def pack_symbols(symbols: np.ndarray, levels: int, gray: bool = True) -> np.ndarray:
    """Pack symbol indices (..., S) into bytes (..., ceil(S*b/8)), MSB first.

    A 1-D input gives a 1-D uint8 array; a batch (N, S) gives (N, nbytes).
    """
    b = bits_per_symbol(levels)
    sym = np.asarray(symbols)
    if sym.size and (sym.min() < 0 or sym.max() >= levels):
        raise ValueError(f"symbol indices must lie in 0..{levels - 1}")
    codes = symbol_codes(levels, gray)[sym.astype(np.intp)]
    shifts = np.arange(b - 1, -1, -1, dtype=np.uint8)
    bits = (codes[..., None] >> shifts) & 1
    bits = bits.reshape(*sym.shape[:-1], sym.shape[-1] * b)
    return np.packbits(bits.astype(np.uint8), axis=-1)


def unpack_symbols(packed: np.ndarray, levels: int, n_symbols: int, gray: bool = True) -> np.ndarray:
    """Inverse of `pack_symbols`: bytes (..., nbytes) -> symbol indices (..., n_symbols) uint8."""
    b = bits_per_symbol(levels)
    data = np.asarray(packed, dtype=np.uint8)
    if data.shape[-1] * 8 < n_symbols * b:
        raise ValueError(f"{data.shape[-1]} bytes cannot hold {n_symbols} symbols of {b} bits")
    bits = np.unpackbits(data, axis=-1, count=n_symbols * b)
    bits = bits.reshape(*data.shape[:-1], n_symbols, b)
    weights = (1 << np.arange(b - 1, -1, -1)).astype(np.uint16)
    codes = bits.astype(np.uint16) @ weights
    if gray:
        codes = gray_decode_table(b)[codes]
    return np.minimum(codes, levels - 1).astype(np.uint8)


def erased_symbols(erased_bytes: np.ndarray, levels: int, n_symbols: int) -> np.ndarray:
    """Symbols touched by erased (never received) bytes: a bool mask (..., n_symbols)."""
    b = bits_per_symbol(levels)
    erased_bits = np.repeat(np.asarray(erased_bytes, dtype=bool), 8, axis=-1)[..., : n_symbols * b]
    return erased_bits.reshape(*erased_bits.shape[:-1], n_symbols, b).any(axis=-1)

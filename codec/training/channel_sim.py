"""The channel in the training loop, as tensor ops on symbol indices.

Real bits: symbol index i is sent as its b-bit code (Gray g(i) = i ^ (i >> 1), or binary for the
ablation), each bit flips independently with the image's BER p, and the receiver maps the code
back through the inverse table (codes past L-1 clamp to L-1, as `codec.packing.unpack_symbols`
does). This is exactly the i.i.d. packed-bit path (pack -> flip bits -> unpack) without the byte
packing, because under i.i.d. flips the position of a bit in the byte does not matter; a test
checks the symbol transition statistics against the packed path.

Per image, not per batch: each image draws its own BER, log-uniform in [ber_min, ber_max], with a
share of clean (BER 0) images. Fragment loss: with probability `erasure_prob` an image loses one
of F (2..4) equal fragments of its symbol stream (flattened C, H, W order); those symbols are
flagged erased and reach the decoder as zeros plus a mask.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from codec.wire.packing import bits_per_symbol, gray_decode_table, symbol_codes


class SymbolChannel:
    """Bit flips on b-bit symbol codes, per image, as torch ops."""

    def __init__(self, levels: int, gray: bool = True):
        self.levels = levels
        self.bits = bits_per_symbol(levels)
        self.gray = gray
        self.codes = torch.from_numpy(symbol_codes(levels, gray).astype(np.int64))
        decode = gray_decode_table(self.bits) if gray else np.arange(1 << self.bits)
        self.decode = torch.from_numpy(np.minimum(decode, levels - 1).astype(np.int64))
        self.weights = 2 ** torch.arange(self.bits - 1, -1, -1)

    def flip(self, idx: torch.Tensor, ber: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """idx (N, ...) int64, ber (N,) -> received indices after i.i.d. bit flips."""
        n = idx.shape[0]
        shape = (*idx.shape, self.bits)
        p = ber.view(n, *([1] * (len(shape) - 1))).to(device="cpu", dtype=torch.float32)
        flips = (torch.rand(shape, generator=g) < p).long()  # drawn on the CPU: the same on any device
        mask = (flips * self.weights).sum(-1).to(idx.device)
        if self.codes.device != idx.device:
            self.codes, self.decode = self.codes.to(idx.device), self.decode.to(idx.device)
        return self.decode[self.codes[idx] ^ mask]


def sample_ber(n: int, ber_min: float, ber_max: float, clean_share: float,
               g: torch.Generator | None = None) -> torch.Tensor:
    """Per-image BER: log-uniform in [ber_min, ber_max], zero for a `clean_share` of images."""
    lo, hi = math.log(ber_min), math.log(ber_max)
    ber = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g))
    clean = torch.rand(n, generator=g) < clean_share
    return torch.where(clean, torch.zeros_like(ber), ber)


def sample_erasures(n: int, n_symbols: int, prob: float, g: torch.Generator | None = None) -> torch.Tensor:
    """(N, S) bool: for a `prob` share of images, one of F in {2,3,4} equal fragments is lost."""
    erased = torch.zeros(n, n_symbols, dtype=torch.bool)
    if prob <= 0:
        return erased
    hit = torch.nonzero(torch.rand(n, generator=g) < prob).flatten()
    if len(hit) == 0:
        return erased
    frags = torch.randint(2, 5, (len(hit),), generator=g)
    which = (torch.rand(len(hit), generator=g) * frags).long()
    pos = torch.arange(n_symbols)[None, :]
    start = (which * n_symbols) // frags
    stop = ((which + 1) * n_symbols) // frags
    erased[hit] = (pos >= start[:, None]) & (pos < stop[:, None])
    return erased

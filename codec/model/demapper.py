"""Soft demapping: what a received symbol index is worth, given the link's BER.

A hard demapper reads received index r as its centre c_r. But a b-bit code read as r was sent as
index k with likelihood P(r | k) = sum over the codes c' that read as r of p^d(c', k) (1-p)^(b - d),
d the Hamming distance between c' and k's code (Gray or binary) and p the BER. With a uniform
prior over sent indices, the posterior mean (MMSE) centre is

    v(r, p) = sum_k P(r | k) c_k / sum_k P(r | k)

At p -> 0 it is c_r; as p grows it shrinks towards what r's bit-neighbours stand for, which is
exactly what the decoder cannot know from the value alone. The BER the edge estimates per frame
(header BCH corrections) reaches every symbol this way, not only the decoder's attention gates.
All torch ops that export to ONNX (Exp, Log, MatMul, GatherElements).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from codec.wire.packing import bits_per_symbol, gray_decode_table, symbol_codes

P_FLOOR = 1e-6          # BER 0 reads as this (log 0 is not a number)
P_CEIL = 0.499          # at 0.5 every index is equally likely: the value carries nothing


class SoftDemapper(nn.Module):
    """(centres (L,), ber (N,)) -> (N, L) table: the MMSE centre of each received index."""

    def __init__(self, levels: int, gray: bool = True):
        super().__init__()
        bits = bits_per_symbol(levels)
        sent = symbol_codes(levels, gray).astype(np.int64)                  # (L,) code of index k
        codes = np.arange(1 << bits)
        dist = np.array([[bin(int(c) ^ int(s)).count("1") for s in sent] for c in codes])  # (2^b, L)
        reads_as = gray_decode_table(bits) if gray else codes
        reads_as = np.minimum(reads_as, levels - 1)                        # as the receiver unpacks
        member = (reads_as[None, :] == np.arange(levels)[:, None])           # (L, 2^b)
        self.bits = bits
        # not saved: a function of the config, so bundles and fingerprints carry no extra tensors
        self.register_buffer("dist", torch.from_numpy(dist).float(), persistent=False)
        self.register_buffer("member", torch.from_numpy(member).float(), persistent=False)

    def forward(self, centres: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        p = ber.to(torch.float32).clamp(P_FLOOR, P_CEIL).view(-1, 1, 1)
        like = torch.exp(self.dist * torch.log(p) + (self.bits - self.dist) * torch.log1p(-p))  # (N, 2^b, L)
        post = torch.matmul(self.member, like)                                  # (N, L_r, L_k)
        return torch.matmul(post, centres.view(-1, 1)).squeeze(-1) / post.sum(-1)


def demap(centres: torch.Tensor, received: torch.Tensor, ber: torch.Tensor,
          demapper: SoftDemapper | None) -> torch.Tensor:
    """Values (N, S) of received indices (N, S): their centres, or their MMSE centres at `ber`."""
    if demapper is None:
        return centres[received]
    return torch.gather(demapper(centres, ber), 1, received)

"""The soft demapper: MMSE centres of received indices given the BER."""
import itertools

import pytest
import torch

from codec.model.demapper import SoftDemapper, demap
from codec.wire.packing import gray_decode_table, symbol_codes


@pytest.mark.parametrize("levels,gray", [(8, True), (8, False), (5, True), (4, True)])
def test_table_is_the_posterior_mean_by_enumeration(levels, gray):
    """Against a brute-force posterior: every b-bit error pattern, uniform prior over sent indices."""
    centres = torch.linspace(-1.3, 1.7, levels)
    bits = max(1, (levels - 1).bit_length())
    codes = symbol_codes(levels, gray)
    table = gray_decode_table(bits) if gray else list(range(1 << bits))   # code -> index, as unpacked
    for p in (1e-3, 0.05, 0.2):
        got = SoftDemapper(levels, gray)(centres, torch.tensor([p]))[0]
        num, den = torch.zeros(levels, dtype=torch.float64), torch.zeros(levels, dtype=torch.float64)
        for k, code in enumerate(codes):
            for pattern in itertools.product((0, 1), repeat=bits):
                mask = int("".join(map(str, pattern)), 2)
                r = min(int(table[int(code) ^ mask]), levels - 1)
                d = sum(pattern)
                w = p ** d * (1 - p) ** (bits - d)
                num[r] += w * float(centres[k])
                den[r] += w
        assert torch.allclose(got.double(), num / den, atol=1e-5), (p, got, num / den)


def test_clean_link_reads_the_centres_and_noise_moves_them():
    centres = torch.linspace(-1.5, 1.5, 8)
    d = SoftDemapper(8, True)
    t = d(centres, torch.tensor([0.0, 1e-1, 0.5]))
    assert torch.allclose(t[0], centres, atol=1e-4)
    assert t[1].abs().max() < centres.abs().max() and not torch.allclose(t[1], centres, atol=0.05)
    assert (t[1][1:] > t[1][:-1]).all()
    assert t[2].abs().max() < 1e-2                             # BER 0.5: the value says nothing
    received = torch.tensor([[0, 7, 3], [0, 7, 3]])
    got = demap(centres, received, torch.tensor([0.0, 1e-1]), d)
    assert torch.allclose(got[0], centres[received[0]], atol=1e-4)
    assert torch.allclose(got[1], t[1][received[1]])
    assert torch.equal(demap(centres, received, torch.tensor([0.0, 1e-1]), None), centres[received])

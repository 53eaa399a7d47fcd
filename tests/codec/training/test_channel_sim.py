"""The tensor-form channel flips real code bits: it matches pack -> bit flips -> unpack."""
import numpy as np
import pytest
import torch

from codec.training.channel_sim import SymbolChannel, sample_ber, sample_erasures
from codec.wire.packing import pack_symbols, unpack_symbols


def _transitions(sent: np.ndarray, received: np.ndarray, levels: int) -> np.ndarray:
    m = np.zeros((levels, levels))
    np.add.at(m, (sent.ravel(), received.ravel()), 1)
    return m / m.sum(1, keepdims=True)


@pytest.mark.parametrize("gray", [True, False])
def test_symbol_error_statistics_match_packed_bit_path(gray):
    from channel.bit_errors import make_error_model

    levels, ber, n, s = 8, 0.05, 4000, 98
    rng = np.random.default_rng(0)
    sent = rng.integers(0, levels, (n, s))
    packed = pack_symbols(sent, levels, gray=gray)
    corrupted, _ = make_error_model("iid", ber=ber).corrupt(packed, np.random.default_rng(1))
    bit_path = unpack_symbols(corrupted, levels, s, gray=gray)
    g = torch.Generator().manual_seed(2)
    tensor_path = SymbolChannel(levels, gray).flip(torch.from_numpy(sent), torch.full((n,), ber), g).numpy()
    a, b = _transitions(sent, bit_path, levels), _transitions(sent, tensor_path, levels)
    assert np.abs(a - b).max() < 0.01
    # theory: a symbol survives with (1-p)^3; one flip moves it by the code's neighbour structure
    assert abs(np.diag(b).mean() - (1 - ber) ** 3) < 0.005
    adjacent = np.array([b[i, i + 1] for i in range(levels - 1)])
    one_flip = ber * (1 - ber) ** 2
    if gray:  # adjacent centres differ in one bit: every neighbour is one flip away
        assert (np.abs(adjacent - one_flip) < 0.01).all()
    else:  # binary 3 -> 4 (011 -> 100) needs three flips
        assert adjacent[3] < 0.002


def test_flip_is_per_image():
    ch = SymbolChannel(8)
    idx = torch.zeros(2, 5000, dtype=torch.long)
    out = ch.flip(idx, torch.tensor([0.0, 0.2]), torch.Generator().manual_seed(0))
    assert (out[0] == 0).all()
    assert abs((out[1] != 0).float().mean().item() - (1 - 0.8 ** 3)) < 0.03


def test_non_power_of_two_levels_clamp_like_unpack():
    ch = SymbolChannel(5)
    out = ch.flip(torch.randint(0, 5, (100, 50)), torch.full((100,), 0.3), torch.Generator().manual_seed(0))
    assert out.max() <= 4


def test_ber_sampling_log_uniform_with_clean_share():
    g = torch.Generator().manual_seed(0)
    ber = sample_ber(20000, 1e-4, 0.2, 0.25, g)
    clean = (ber == 0).float().mean().item()
    assert abs(clean - 0.25) < 0.02
    logs = torch.log10(ber[ber > 0])
    assert logs.min() >= -4 - 1e-5 and logs.max() <= np.log10(0.2) + 1e-5
    assert abs(logs.mean().item() - (-4 + np.log10(0.2)) / 2) < 0.05


def test_erasures_are_one_contiguous_fragment():
    g = torch.Generator().manual_seed(0)
    er = sample_erasures(2000, 98, 0.3, g)
    hit = er.any(1)
    assert abs(hit.float().mean().item() - 0.3) < 0.04
    for row in er[hit][:50]:
        pos = torch.nonzero(row).flatten()
        assert (pos[1:] - pos[:-1] == 1).all()
        assert 98 // 4 <= len(pos) <= 49
    assert not sample_erasures(10, 98, 0.0, g).any()

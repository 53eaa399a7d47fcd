"""Int8-grid weights: snapping, the straight-through parametrization, and baking it away."""
import torch
from torch import nn

from codec.model.encoder import Encoder
from codec.training.int8_grid import (
    bake,
    int8_aware,
    on_grid,
    snap_per_channel,
    snap_to_grid_,
)


def test_snap_is_per_channel_symmetric_int8_and_idempotent():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3) * torch.tensor([1e-3, 0.1, 1, 10, 100, 0.5]).view(6, 1, 1, 1)
    s = snap_per_channel(w)
    assert on_grid(s) and not on_grid(w)
    assert torch.equal(snap_per_channel(s), s)
    steps = s.reshape(6, -1) / (w.reshape(6, -1).abs().amax(1, keepdim=True) / 127)
    assert steps.abs().max() <= 127 + 1e-4 and torch.allclose(steps, steps.round(), atol=1e-3)
    assert ((s - w).abs().reshape(6, -1).amax(1) <= w.reshape(6, -1).abs().amax(1) / 254 + 1e-7).all()
    assert torch.equal(snap_per_channel(torch.zeros(2, 3, 1, 1)), torch.zeros(2, 3, 1, 1))


def test_a_grid_stays_a_grid_when_batchnorm_is_folded_in():
    w = snap_per_channel(torch.randn(8, 4, 3, 3))
    folded = w * torch.rand(8, 1, 1, 1).add(0.1)  # a BN scale per output channel
    assert on_grid(folded)


def test_snap_to_grid_in_place_counts_convs():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.Linear(2, 2))
    assert snap_to_grid_(m) == 2
    assert on_grid(m[0].weight) and on_grid(m[2].weight) and not on_grid(m[3].weight)


def test_int8_aware_forward_on_grid_gradient_straight_through_and_bake():
    torch.manual_seed(0)
    enc = Encoder(8, channels=2, hidden=4, stride=2)
    plain = {k: v.clone() for k, v in enc.state_dict().items()}
    int8_aware(enc)
    assert on_grid(enc.conv1.weight) and on_grid(enc.conv2.weight) and on_grid(enc.gdn.gamma_sqrt ** 2)
    x = torch.randn(2, 8, 14, 14)
    enc(x).square().sum().backward()
    original = enc.conv1.parametrizations.weight.original
    assert original.grad is not None and original.grad.abs().sum() > 0
    snapped = enc.conv1.weight.detach().clone()
    bake(enc)
    assert set(enc.state_dict()) == set(plain), "baked encoders load into plain ones (bundles stay compatible)"
    assert torch.equal(enc.conv1.weight, snapped) and on_grid(enc.gdn.gamma_sqrt ** 2)
    int8_aware(enc)
    int8_aware(enc)  # twice is harmless
    bake(enc)
    assert torch.equal(enc.conv1.weight, snapped)

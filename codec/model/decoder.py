"""The edge-side BER-aware decoder: transposed convs + inverse GDN + PReLU, each with an AF block.

The AF (attention feature) block follows Xu et al., "Wireless Image Transmission Using Deep
Source Channel Coding With Attention Modules" (2021): a channel-wise gate
``s = sigmoid(W2 relu(W1 [GAP(x), q]))`` computed from the pooled features and the channel
quality q, here q = (log10(max(BER, 1e-5)) + 3) / 2 (BER 1e-5 -> -1, BER 1e-1 -> 1) because BER
is what the edge can estimate per frame (pilot bits), not a simulated SNR. The ablation without
BER conditioning feeds q = 0 to the same blocks.

Input: symbol values (erased ones zeroed) and a presence mask, concatenated, so the decoder knows
which symbols never arrived. Output: features of the backbone's split-point shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.model.gdn import GDN

BER_FLOOR = 1e-5


def ber_condition(ber: torch.Tensor) -> torch.Tensor:
    """Channel quality input of the AF blocks: (log10(max(ber, 1e-5)) + 3) / 2, shape (N, 1)."""
    return ((torch.log10(torch.clamp(ber.to(torch.float32), min=BER_FLOOR)) + 3.0) / 2.0).view(-1, 1)


class AFBlock(nn.Module):
    """Channel attention conditioned on channel quality (Xu et al. 2021)."""

    def __init__(self, channels: int, cond_dim: int = 1, hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels + cond_dim, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ctx = torch.cat([x.mean(dim=(2, 3)), cond], dim=1)
        gate = torch.sigmoid(self.fc2(self.act(self.fc1(ctx))))
        return x * gate[:, :, None, None]


class DecoderStage(nn.Module):
    """Transposed conv -> IGDN -> PReLU -> AF."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        k = 3 if stride == 1 else 4
        pad = 1
        self.tconv = nn.ConvTranspose2d(cin, cout, k, stride, pad)
        self.igdn = GDN(cout, inverse=True)
        self.act = nn.PReLU(cout)
        self.af = AFBlock(cout)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """The transposed conv. At stride 1 it is computed as the equivalent direct convolution
        (kernel transposed in its channel axes and flipped, padding k-1-p): the same function and
        parameters, but PyTorch's CPU backend runs a direct conv about 2x faster than its
        transposed-conv kernel, which matters for the edge's images/s."""
        t = self.tconv
        if t.stride == (1, 1) and t.output_padding == (0, 0) and t.dilation == (1, 1) and t.groups == 1:
            weight = t.weight.transpose(0, 1).flip(2, 3)
            pad = (t.kernel_size[0] - 1 - t.padding[0], t.kernel_size[1] - 1 - t.padding[1])
            return F.conv2d(x, weight, t.bias, padding=pad)
        return t(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.af(self.act(self.igdn(self.upsample(x))), cond)


class Decoder(nn.Module):
    """(values, present mask, BER) -> split-point features (N, C_out, H, W)."""

    def __init__(self, channels: int, out_channels: int, hidden: int = 64, stride: int = 1,
                 ber_conditioning: bool = True):
        super().__init__()
        self.ber_conditioning = ber_conditioning
        self.stage1 = DecoderStage(2 * channels, hidden, stride)
        self.stage2 = DecoderStage(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, values: torch.Tensor, present: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        cond = ber_condition(ber)
        if not self.ber_conditioning:
            cond = torch.zeros_like(cond)
        x = torch.cat([values * present, present], dim=1)
        x = self.stage2(self.stage1(x, cond), cond)
        return self.out(x)

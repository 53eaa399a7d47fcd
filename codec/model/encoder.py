"""The device-side SQ encoder: conv + GDN + PReLU, a conv to C_b channels, crop, power norm.

Power normalisation is per sample: z = x / sqrt(mean(x^2) + eps) over (C, H, W), so every image
sends unit average power whatever its content, and the learned centres live on a fixed scale.
An optional crop ratio r < 1 keeps a centred sub-window of round(r*H) x round(r*W) symbols (as in
the paper's spatial cropping); the decoder pads the rest back as erased.
"""
from __future__ import annotations

import torch
from torch import nn

from codec.model.gdn import GDN


def crop_window(h: int, w: int, ratio: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred window kept by crop `ratio`."""
    ch, cw = max(1, round(h * ratio)), max(1, round(w * ratio))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def power_normalise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit average power per sample over all non-batch dimensions."""
    return x / torch.sqrt(torch.mean(x * x, dim=(1, 2, 3), keepdim=True) + eps)


class Encoder(nn.Module):
    """Split features (N, C, H, W) -> unit-power continuous symbols (N, C_b, h, w)."""

    def __init__(self, in_channels: int, channels: int = 2, hidden: int = 32, kernel: int = 3, stride: int = 1,
                 crop: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel, stride, kernel // 2)
        self.gdn = GDN(hidden)
        self.act = nn.PReLU(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 3, 1, 1)
        self.crop = crop

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.gdn(self.conv1(f))))
        if self.crop < 1.0:
            top, left, ch, cw = crop_window(x.shape[2], x.shape[3], self.crop)
            x = x[:, :, top:top + ch, left:left + cw]
        return power_normalise(x)

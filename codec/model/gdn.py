"""Generalized divisive normalization (Ballé, Laparra & Simoncelli, ICLR 2016/2017).

GDN:   y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)
IGDN:  y_i = x_i * sqrt(beta_i + sum_j gamma_ij * x_j^2)   (its approximate inverse, decoder side)

The sum over j is a 1x1 convolution of x^2 with weight gamma, so the whole layer exports to ONNX
as Mul, Conv, Sqrt and Div and quantizes like any conv. beta and gamma must stay positive; we
store their square roots (``beta = b^2 + eps``, ``gamma = |g|^2``) so a gradient step can never
make the denominator negative, as in the reference implementation's reparametrisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """GDN (or IGDN with ``inverse=True``) over the channel dimension of (N, C, H, W)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.eye(channels) * gamma_init ** 0.5)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = self.beta_sqrt ** 2 + self.beta_min
        gamma = (self.gamma_sqrt ** 2).view(c, c, 1, 1)
        return torch.sqrt(F.conv2d(x * x, gamma, beta))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        return x * n if self.inverse else x / n

"""Soft quantization to L learned, sorted centres.

Forward pass (training): each value z picks its nearest centre c_k (hard, what is transmitted).
Backward pass: the soft assignment w_k = softmax_k(-sigma * (z - c_k)^2) gives
``soft = sum_k w_k c_k``; the output is ``centres[idx] + (soft - soft.detach())`` so its value is
exactly the (possibly channel-corrupted) centre, the encoder gets the soft path's gradient
(straight-through), and the centres get gradient from both the hard lookup and the soft path.
The reference code's centres never received a gradient; ours do (tested).

Centres are kept sorted by construction: c_0 = a, c_k = a + sum_{i<k} (softplus(d_i) + 1e-3), so the index
order equals the value order and Gray codes of neighbouring indices are neighbouring values.
They are initialised at the Gaussian quantiles of (k + 1/2)/L, since the encoder output has unit
average power after normalisation.
"""
from __future__ import annotations

from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import nn

MIN_GAP = 1e-3  # centres stay at least this far apart, so they are strictly sorted


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def gaussian_centres(levels: int) -> torch.Tensor:
    """Gaussian quantiles at (k + 0.5)/L, a good start for unit-power inputs."""
    nd = NormalDist()
    return torch.tensor([nd.inv_cdf((k + 0.5) / levels) for k in range(levels)], dtype=torch.float32)


class SoftQuantizer(nn.Module):
    """L sorted learnable centres with hard forward / soft backward quantization."""

    def __init__(self, levels: int = 8, sigma: float = 10.0):
        super().__init__()
        if levels < 2:
            raise ValueError("need at least 2 levels")
        self.levels = levels
        self.sigma = sigma
        init = gaussian_centres(levels)
        self.start = nn.Parameter(init[:1].clone())
        self.deltas = nn.Parameter(_softplus_inverse(init[1:] - init[:-1] - MIN_GAP))
        # After training the centres are frozen into a buffer so that every artefact uses the
        # exact same float32 values (no re-computation of softplus/cumsum on another CPU).
        self.register_buffer("frozen_centres", torch.full((levels,), float("nan")))
        self._frozen = False
        self.register_load_state_dict_post_hook(_sync_frozen)

    def centres(self) -> torch.Tensor:
        """The sorted centres (L,): the frozen buffer, or a differentiable function of the parameters."""
        if self._frozen:
            return self.frozen_centres
        return torch.cat([self.start, self.start + torch.cumsum(F.softplus(self.deltas) + MIN_GAP, 0)])

    def freeze(self) -> None:
        """Fix the centres to their current float32 values (done once training ends)."""
        with torch.no_grad():
            self.frozen_centres.copy_(torch.cat([self.start, self.start + torch.cumsum(F.softplus(self.deltas) + MIN_GAP, 0)]))
        self._frozen = True

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-centre index of every element (int64, same shape as z); ONNX ArgMin."""
        return torch.argmin(torch.abs(z.unsqueeze(-1) - self.centres()), dim=-1)

    def soft_weights(self, z: torch.Tensor) -> torch.Tensor:
        """w (..., L): softmax of -sigma * squared distance; its mean is the soft histogram."""
        d2 = (z.unsqueeze(-1) - self.centres()) ** 2
        return torch.softmax(-self.sigma * d2, dim=-1)

    def forward(self, z: torch.Tensor, received: torch.Tensor | None = None):
        """(values, idx, weights): values equal centres[received or idx], gradients as described above."""
        c = self.centres()
        w = self.soft_weights(z)
        soft = (w * c).sum(-1)
        idx = self.assign(z.detach())
        used = idx if received is None else received
        hard = c[used]
        return hard + (soft - soft.detach()), idx, w


def _sync_frozen(module: SoftQuantizer, incompatible) -> None:
    module._frozen = not bool(torch.isnan(module.frozen_centres).any())


def usage_loss(weights: torch.Tensor) -> torch.Tensor:
    """KL(p || uniform) of the soft histogram p = mean of w: differentiable, zero at equal use."""
    p = weights.reshape(-1, weights.shape[-1]).mean(0)
    return (p * torch.log(p.clamp_min(1e-9) * p.numel())).sum()


def bits_entropy(idx: torch.Tensor, levels: int) -> float:
    """Empirical entropy (bits/symbol) of hard indices: how much of log2 L is really used."""
    p = torch.bincount(idx.reshape(-1), minlength=levels).float()
    p = p / p.sum()
    return float(-(p[p > 0] * torch.log2(p[p > 0])).sum())

"""Device-half weights that int8 export represents exactly (quantization-aware training).

`snn export` quantizes every device-side convolution with onnxruntime's symmetric per-channel
int8 scheme: per output channel c, scale s_c = max|w_c| / 127 and w ~ round(w / s_c) * s_c.
Rounding moves encoder outputs, and outputs near a boundary between two centres then pick the
neighbouring symbol (2.2 % of symbols on a float-trained encoder). If the torch weights already
lie on that grid, the exporter reproduces them to float16 precision and the int8 encoder picks
the symbols the bundle picks.

Two ways in: `snap_to_grid_` puts a frozen network's convolutions on the grid once (the backbone
head); `int8_aware` trains through the grid (straight-through estimator: the forward pass uses
the snapped weight, the gradient reaches the float one) and `bake` leaves the snapped values.
Folding a following BatchNorm or input scaling into a conv multiplies each output channel by
one number, which keeps a per-channel grid a grid.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from codec.model.gdn import GDN

LEVELS = 127  # symmetric int8: [-127, 127], as onnxruntime quantizes weights


def _steps(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w in grid steps, the step) per output channel (dimension 0): step = max|w_c| / 127."""
    flat = w.reshape(w.shape[0], -1)
    scale = flat.abs().amax(1, keepdim=True) / LEVELS
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return flat / scale, scale


def snap_per_channel(w: torch.Tensor) -> torch.Tensor:
    """w rounded to the symmetric int8 grid of each output channel (dimension 0)."""
    steps, scale = _steps(w)
    return (torch.round(steps) * scale).reshape(w.shape)


@torch.no_grad()
def snap_to_grid_(module: nn.Module) -> int:
    """Put every conv weight in `module` (GDN gammas included) on its int8 grid, in place;
    returns how many tensors were snapped."""
    targets = _targets(module)
    for m, name, kind in targets:
        p = getattr(m, name)
        p.copy_(kind()(p))
    return len(targets)


class _OnGrid(nn.Module):
    """Parametrization: the snapped weight forward, the identity's gradient backward."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (snap_per_channel(w) - w).detach()


class _SquareOnGrid(nn.Module):
    """For GDN's gamma = g^2 (the conv weight the exporter sees): g such that g^2 is on the grid."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        target = torch.sign(g) * torch.sqrt(snap_per_channel(g * g))
        return g + (target - g).detach()


def _targets(module: nn.Module) -> list[tuple[nn.Module, str, type]]:
    found: list[tuple[nn.Module, str, type]] = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            found.append((m, "weight", _OnGrid))
        elif isinstance(m, GDN):
            found.append((m, "gamma_sqrt", _SquareOnGrid))
    return found


def int8_aware(module: nn.Module) -> nn.Module:
    """Train `module` (the encoder) through the int8 grid of its convs and GDN gammas."""
    for m, name, kind in _targets(module):
        if not parametrize.is_parametrized(m, name):
            parametrize.register_parametrization(m, name, kind())
    return module


def bake(module: nn.Module) -> nn.Module:
    """Remove the parametrizations, keeping the snapped values as plain parameters."""
    for m, name, _ in _targets(module):
        if parametrize.is_parametrized(m, name):
            parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return module


def on_grid(w: torch.Tensor, tol: float = 1e-3) -> bool:
    """Whether every output channel of w is (to `tol` of a step) a multiple of max|w_c| / 127."""
    steps, _ = _steps(w.detach().float())
    return bool(((steps - torch.round(steps)).abs() <= tol).all())

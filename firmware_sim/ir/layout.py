"""Layout family: ops that move integers and keep their scale (the batch axis 0 never moves).

Reshape, Flatten, Unsqueeze, Squeeze, Identity, Cast and a Transpose that only moves size-1 axes
keep every element's flat index: the lowering marks them views and the C reads through them for
free (`Kernel.c_view`). Slice, Pad, Concat and a real Transpose copy; they have no C twin yet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim.ir.base import Kernel, register


@register
@dataclass(frozen=True, eq=False)
class Identity(Kernel):
    name = "identity"
    x: str

    def run(self, v):
        return v[self.x]


@register
@dataclass(frozen=True, eq=False)
class Reshape(Kernel):
    """A new shape after the batch axis (`tail` may hold one -1)."""

    name = "reshape"
    x: str
    tail: tuple[int, ...]

    def run(self, v):
        return v[self.x].reshape((v[self.x].shape[0],) + self.tail)


@register
@dataclass(frozen=True, eq=False)
class ExpandDims(Kernel):
    name = "expand_dims"
    x: str
    axes: tuple[int, ...]

    def run(self, v):
        return np.expand_dims(v[self.x], self.axes)


@register
@dataclass(frozen=True, eq=False)
class Squeeze(Kernel):
    name = "squeeze"
    x: str
    axes: tuple[int, ...]

    def run(self, v):
        return np.squeeze(v[self.x], self.axes)


@register
@dataclass(frozen=True, eq=False)
class Transpose(Kernel):
    name = "transpose"
    x: str
    perm: tuple[int, ...]

    def run(self, v):
        return np.ascontiguousarray(v[self.x].transpose(self.perm))


@register
@dataclass(frozen=True, eq=False)
class Slice(Kernel):
    name = "slice"
    x: str
    index: tuple[slice, ...]

    def run(self, v):
        return np.ascontiguousarray(v[self.x][self.index])


@register
@dataclass(frozen=True, eq=False)
class Pad(Kernel):
    """Zero padding, ((before, after), ...) per axis."""

    name = "pad"
    x: str
    width: tuple[tuple[int, int], ...]

    def run(self, v):
        return np.pad(v[self.x], self.width)


@register
@dataclass(frozen=True, eq=False)
class Concat(Kernel):
    name = "concat"
    reads = ("xs",)
    xs: tuple[str, ...]
    axis: int

    def run(self, v):
        return np.concatenate([v[i] for i in self.xs], axis=self.axis)

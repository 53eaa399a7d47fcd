"""What every kernel of the IR is: a frozen parameter dataclass with its NumPy evaluation and its C.

A lowered step (`firmware_sim.lowering.Step`) carries one `Kernel`: the constants of that step,
computed once by the lowering (multipliers, shifts, weights, axes), the names of the tensors it
reads, ``run`` (the integer NumPy evaluation the simulator executes) and ``emit_c`` (the body of
the generated ``T_at(i)``, element ``i`` of its output, written with ``firmware/snn_fixed.h``).
Both read the same fields, so the C cannot drift from the simulator by re-deriving a constant.

Kernels are registered by name in `KERNELS` (``@register``, an `snn.registry.Registry`) and looked
up with `resolve`, as tflite-micro's op resolver does; an unknown name is refused with the list of
known ones. The
code generator resolves each step's kernel by name before asking it for C, so a step whose
kernel is not registered is refused, never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Protocol

import numpy as np

from snn.errors import SnnError
from snn.registry import Registry


def strides(shape: tuple[int, ...]) -> list[int]:
    """Row-major element strides of `shape`."""
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return list(reversed(st))


class CContext(Protocol):
    """What a kernel's C emission may ask of the code generator (`codegen._Emit`)."""

    tag: str                       # a C identifier prefix unique to this step
    out: tuple[int, ...]           # the output's full shape (batch 1 included)

    def inp(self, tensor: str, var: str = "i") -> str: ...
    def at(self, tensor: str, idx: str) -> str: ...
    def full(self, tensor: str) -> tuple[int, ...]: ...
    def shape(self, tensor: str) -> tuple[int, ...]: ...
    def bits(self, tensor: str) -> int: ...
    def bidx(self, shape, var: str = "i") -> str: ...
    def array(self, tag: str, arr, ctype: str | None = None) -> str: ...
    def rescale(self, tag: str, x: str, real, in_bits: int, var: str = "i") -> str: ...
    def direct(self, tensor: str): ...


@dataclass(frozen=True, eq=False)
class Kernel:
    """Base of the IR's parameter dataclasses. Subclasses set `name` and the tensor fields in `reads`."""

    name: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ("x",)     # fields holding input tensor names

    @property
    def inputs(self) -> list[str]:
        out: list[str] = []
        for f in self.reads:
            v = getattr(self, f)
            out.extend(v if isinstance(v, tuple) else [v])
        return out

    def run(self, v: dict[str, np.ndarray]) -> np.ndarray:
        """The step's output from the values computed so far (int64 arrays, batch first)."""
        raise NotImplementedError

    def emit_c(self, c: CContext) -> str:
        """The C body of ``T_at(i)``; kernels without an exact C twin are refused by name."""
        raise SnnError(f"kernel {self.name!r} has no C twin yet; the C generator covers "
                       f"{', '.join(e.name for e in KERNELS.entries() if e.value.has_c())}")

    @classmethod
    def has_c(cls) -> bool:
        return cls.emit_c is not Kernel.emit_c

    # -- as a view (a step the lowering marked `alias`: it keeps the flat index, costs nothing) --
    def c_view(self, expr: str) -> str:
        """C of element i of this view, given `expr`, element i of its input."""
        return expr

    def direct_offset(self) -> int | None:
        """What a conv reading through this view subtracts from the stored codes (its zero point);
        None when the view is more than an offset (the conv then takes the generic element path)."""
        return 0

    def constants(self) -> dict:
        """The non-tensor fields (for reports and tests)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.reads}


KERNELS: Registry[type[Kernel]] = Registry("kernel")


def register(cls: type[Kernel]) -> type[Kernel]:
    """Class decorator: make a kernel findable by its `name` (snn.registry, the project's one pattern)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no kernel name")
    return KERNELS.add(cls.name, cls)


def resolve(name: str) -> type[Kernel]:
    """The kernel class registered as `name`; SnnError listing the known names otherwise."""
    return KERNELS.get(name)

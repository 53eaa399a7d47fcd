"""The typed kernel IR of the MCU encoder: one module per kernel family, each kernel a parameter
dataclass with its NumPy evaluation and its C emission side by side (see `base`).

Families: `requant` (requantise, rescale, narrow, zero-point offset), `conv`, `arith` (add, mul,
constants), `activation` (ReLU, PReLU, clip, abs, neg), `division` (div, sqrt), `reduce` (sums,
arg-min/max, pooling), `layout` (reshape and friends). Importing this package registers them all.
"""
from firmware_sim.ir import activation, arith, conv, division, layout, reduce, requant  # noqa: F401 (registers)
from firmware_sim.ir.base import KERNELS, CContext, Kernel, register, resolve

__all__ = ["KERNELS", "CContext", "Kernel", "register", "resolve"]

"""The typed kernel IR: kernels found by name, lowering ops found by name, and the division and
square-root recipes equal in NumPy and in C (host gcc) over their whole input range."""
import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain import need

from firmware_sim import ir
from firmware_sim.codegen import FIRMWARE_DIR
from firmware_sim.ir.division import Div, Sqrt
from firmware_sim.lowering import LOWERINGS, SUPPORTED_OPS
from snn.errors import SnnError


def test_kernels_resolve_by_name_and_unknown_names_list_the_known():
    assert ir.resolve("conv") is ir.conv.Conv
    assert ir.resolve("div") is Div
    with pytest.raises(SnnError, match=r"unknown kernel 'nope'; use .*conv.*requantize"):
        ir.resolve("nope")
    for entry in ir.KERNELS.entries():
        assert entry.value.name == entry.name and issubclass(entry.value, ir.Kernel)


def test_lowering_ops_are_a_table():
    assert LOWERINGS.get("Conv").__name__ == "op_Conv"
    assert LOWERINGS.get("ArgMin") is LOWERINGS.get("ArgMax")
    assert {s.lower() for s in SUPPORTED_OPS} == set(LOWERINGS) | {"shape", "constant"}


def test_codegen_reads_no_closures():
    src = Path(__file__).parents[2].joinpath("firmware_sim", "codegen.py").read_text()
    assert "import inspect" not in src and "getattr(self, f\"op_" not in src


def test_every_step_of_a_lowered_encoder_carries_a_registered_kernel(fixture_encoder):
    from firmware_sim.lowering import lower

    for step in lower(fixture_encoder).steps:
        assert type(step.spec) is ir.resolve(step.spec.name)
        assert step.inputs == step.spec.inputs


class _Ctx:
    """A CContext over int64 input arrays named in0, in1 (one element per output element)."""

    tag = "t"
    out = (1, 1)

    def __init__(self, names):
        self.names = names

    def inp(self, tensor, var="i"):
        return f"in{self.names.index(tensor)}[{var}]"


def _build(tmp_path: Path, body: str, n_in: int):
    need("gcc")
    args = ", ".join(f"const int64_t *in{k}" for k in range(n_in))
    src = (f'#include "snn_fixed.h"\nstatic int64_t one(int32_t i, {args})\n{{\n{body}}}\n'
           f"void run(int32_t n, {args}, int64_t *out)\n"
           f"{{ for (int32_t i = 0; i < n; i++) out[i] = one(i, {', '.join(f'in{k}' for k in range(n_in))}); }}\n")
    (tmp_path / "k.c").write_text(src)
    lib = tmp_path / "k.so"
    proc = subprocess.run(["gcc", "-O2", "-std=c99", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-function",
                           "-I", str(FIRMWARE_DIR), "-o", str(lib), str(tmp_path / "k.c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fn = ctypes.CDLL(str(lib)).run
    fn.argtypes = [ctypes.c_int32] + [ctypes.c_void_p] * (n_in + 1)
    fn.restype = None

    def call(*arrays):
        arrays = [np.ascontiguousarray(a, np.int64) for a in arrays]
        out = np.zeros(len(arrays[0]), np.int64)
        fn(len(out), *[a.ctypes.data for a in arrays], out.ctypes.data)
        return out
    return call


def _values(rng, bits, n=4000, positive=False):
    edge = np.array([0, 1, 2, 3, (1 << bits) - 1, (1 << (bits - 1)), (1 << (bits - 1)) - 1], np.int64)
    v = np.concatenate([edge, rng.integers(0, 1 << bits, n, dtype=np.int64),
                        rng.integers(1 << max(0, bits - 2), 1 << bits, n, dtype=np.int64)])
    if not positive:
        v = np.concatenate([v, -v])
    return v


@pytest.mark.parametrize("bits, gain", [(20, 3.3e-3), (30, 0.71), (30, 1.9), (40, 5e-7), (40, 1e-6), (31, 123.0),
                                        (31, 250.0), (12, 4.0e4)])
def test_sqrt_recipe_is_the_same_in_numpy_and_c_and_close_to_the_real_root(tmp_path, bits, gain):
    rng = np.random.default_rng(bits)
    x = _values(rng, bits)
    spec = Sqrt.build("x", gain, bits)
    sim = spec.run({"x": x})
    c = _build(tmp_path, spec.emit_c(_Ctx(["x"])), 1)(x)
    assert np.array_equal(sim, c)
    exact = np.sqrt(np.maximum(x, 0).astype(np.float64) * gain)
    ok = exact < 2 ** 31 - 1
    # one rounding of a > 31-bit input and the floor of isqrt: within 1 unit plus the pre-shift's error
    tol = 1.0 + (np.sqrt(2.0 ** max(0, bits - 31) * gain) if bits > 31 else 0.0)
    assert np.all(np.abs(sim[ok] - exact[ok]) <= tol + 1e-9 * exact[ok])


@pytest.mark.parametrize("ba, bb, gain", [(24, 20, 2.0 ** -10), (31, 16, 3.1e5), (33, 31, 0.37), (16, 40, 9.0e8),
                                          (30, 30, 1.0)])
def test_division_recipe_is_the_same_in_numpy_and_c(tmp_path, ba, bb, gain):
    rng = np.random.default_rng(ba * 100 + bb)
    a = _values(rng, ba)
    b = _values(rng, bb)
    rng.shuffle(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    spec = Div.build("a", "b", gain, ba, bb)
    sim = spec.run({"a": a, "b": b})
    c = _build(tmp_path, spec.emit_c(_Ctx(["a", "b"])), 2)(a, b)
    assert np.array_equal(sim, c)
    nz = (b != 0) & (np.abs(a) < (1 << 31))
    exact = a[nz].astype(np.float64) * gain / b[nz].astype(np.float64)
    fits = np.abs(exact) < 2 ** 30
    assert np.all(np.abs(sim[nz][fits] - exact[fits]) <= 1.0 + 1e-6 * np.abs(exact[fits]))

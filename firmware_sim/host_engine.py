"""The generated C encoder built for this machine with the system gcc, called through ctypes.

Why a host build: the firmware's arithmetic must equal the integer simulator on every symbol;
checking that under QEMU would take minutes per thousand images, while the same ``snn_model.c``
built with ``gcc -O2`` as a shared library encodes 1,000 Fashion-MNIST images in about ten
seconds (`snn mcu agree --engine c`). The library is cached by the hash of its sources, so a
second run costs only the load.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from snn.errors import SnnError
from firmware_sim.codegen import CModel, generate, support_files
from firmware_sim.lowering import Program, lower

HOST_HARNESS = Path(__file__).with_name("firmware") / "host_encode.c"
# -fno-delete-null-pointer-checks as in the firmware build (build.CFLAGS says why)
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fno-delete-null-pointer-checks", "-shared", "-fPIC"]


def _cache_dir() -> Path:
    base = os.environ.get("SNN_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                          or os.path.expanduser("~/.cache"), "snn")
    return Path(base) / "mcu-host"


def host_compiler() -> str:
    """The host C compiler (``$CC`` or gcc/cc on PATH); SnnError when there is none."""
    for cand in (os.environ.get("CC"), "gcc", "cc"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    raise SnnError("no host C compiler found: install gcc (apt-get install gcc) or set CC")


class HostEncoder:
    """The generated encoder as a host shared library: uint8 images (N,H,W,C) -> symbols (N,S)."""

    def __init__(self, program: Program | str | Path, model: CModel | None = None, simd: bool = True):
        self.program = program if isinstance(program, Program) else lower(program)
        self.model = model or generate(self.program)
        self.simd = simd      # the DSP path (intrinsics as portable C) or the plain-C path
        self.library = self._build()
        self._lib = ctypes.CDLL(str(self.library))
        self._lib.snn_host_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._lib.snn_host_encode.restype = ctypes.c_int

    def _build(self) -> Path:
        sources = {"snn_model.c": self.model.source, "snn_model.h": self.model.header}
        for path in support_files() + [HOST_HARNESS]:
            sources[path.name] = path.read_text()
        digest = hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in sorted(sources.items())).encode()
                                + " ".join(self._cflags()).encode()).hexdigest()[:16]
        out = _cache_dir() / f"libsnn_{digest}.so"
        if out.exists():
            return out
        cc = host_compiler()
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="snn-host-") as tmp:
            for name, text in sources.items():
                Path(tmp, name).write_text(text)
            lib = Path(tmp) / out.name
            proc = subprocess.run([cc, *self._cflags(), "-o", str(lib), "snn_model.c", "host_encode.c"], cwd=tmp,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SnnError(f"host build of the generated encoder failed: {proc.stderr.strip()[:2000]}")
            os.replace(lib, out)  # atomic: a concurrent build of the same sources is harmless
        return out

    def _cflags(self) -> list[str]:
        return CFLAGS + [f"-DSNN_SIMD={1 if self.simd else 0}"]

    def run(self, images: np.ndarray) -> np.ndarray:
        """Symbol indices (N, S) uint8 of uint8 images (N, H, W[, C])."""
        imgs = np.ascontiguousarray(images, dtype=np.uint8)
        n = len(imgs)
        if n and imgs[0].size != self.model.input_bytes:
            raise SnnError(f"images of {imgs[0].size} bytes, the encoder takes {self.model.input_bytes}")
        out = np.zeros((n, self.model.n_symbols), np.uint8)
        if n:
            self._lib.snn_host_encode(imgs.ctypes.data, n, out.ctypes.data)
        return out


def compare_engines(encoder: str | Path, images: np.ndarray, engine: str = "c") -> dict:
    """Symbol agreement of `engine` (the generated C on the host, or the simulator) with
    onnxruntime, and of the C with the simulator.

    ``symbol_agreement`` is the chosen engine against onnxruntime (the DESIGN's key);
    ``symbol_agreement_vs_sim`` and ``symbol_agreement_vs_onnxruntime`` name both references. The C
    is the DSP path (SMLAD kernels, the intrinsics as portable C) that Cortex-M4/M7 images run;
    ``symbol_agreement_vs_sim_plain`` is the plain-C path of cores without the DSP extension.
    """
    from firmware_sim.lowering import onnxruntime_symbols

    if engine not in ("c", "sim"):
        raise SnnError(f"unknown engine {engine!r}: choose c or sim")
    program = lower(encoder)
    sim = program.run(images)
    ref = onnxruntime_symbols(str(encoder), images)
    res = {"engine": engine, "images": int(len(images)), "symbols": int(sim.size)}
    if engine == "c":
        ours = HostEncoder(program, simd=True).run(images)
        plain = HostEncoder(program, simd=False).run(images)
        res["symbol_agreement_vs_sim"] = float((ours == sim).mean()) if sim.size else 1.0
        res["symbol_agreement_vs_sim_plain"] = float((plain == sim).mean()) if sim.size else 1.0
        res["images_equal_to_sim"] = float((ours == sim).all(axis=1).mean()) if sim.size else 1.0
    else:
        ours = sim
        res["symbol_agreement_vs_sim"] = res["symbol_agreement_vs_sim_plain"] = 1.0
        res["images_equal_to_sim"] = 1.0
    same = ours == ref
    res["symbol_agreement_vs_onnxruntime"] = float(same.mean()) if same.size else 1.0
    res["symbol_agreement"] = res["symbol_agreement_vs_onnxruntime"]
    res["images_bit_exact_vs_onnxruntime"] = float(same.all(axis=1).mean()) if same.size else 1.0
    res["max_index_distance_vs_onnxruntime"] = int(np.abs(ours.astype(int) - ref.astype(int)).max()) if same.size else 0
    return res

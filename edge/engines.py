"""Model engines: what runs the edge half (BER-aware decoder + task head) on a whole batch.

An engine is any object with

    name: str                                   # "onnx", "torch", "ray", ... (the ready JSON says it)
    run(symbols int64 (N, S), erased bool (N, S), ber float32 (N,)) -> logits float32 (N, classes)

called once per batch from the edge's model thread (never per frame, never on the event loop).
The edge chooses one at serve time (``snn edge serve --engine onnx|torch``); a remote engine
(e.g. Ray Serve replicas) plugs in the same way: `run` may block, the model thread waits.

- `OnnxEngine` (default): the bundle's ``edge.onnx`` on onnxruntime, verified against the
  manifest by `codec.bundle_file`; no torch in the process. On the shipped bundle it answered
  identical labels to torch on all 10,000 Fashion-MNIST test images (see tests and README) and
  runs the model ~1.7x faster per batch of 64 on one thread.
- `TorchEngine`: the eager (or TorchScript-traced) torch module from `codec.bundle`.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

ENGINES = ("onnx", "torch")


class Engine(Protocol):
    name: str

    def run(self, symbols: np.ndarray, erased: np.ndarray, ber: np.ndarray) -> np.ndarray: ...


class OnnxEngine:
    """An onnxruntime session over the ONNX edge half (inputs symbols/erased/ber, output logits)."""

    name = "onnx"

    def __init__(self, session) -> None:
        self.session = session
        self._run = session.run
        self._out = [session.get_outputs()[0].name]

    def run(self, symbols: np.ndarray, erased: np.ndarray, ber: np.ndarray) -> np.ndarray:
        # onnxruntime releases the GIL while it computes: the event loop keeps serving frames
        return self._run(self._out, {"symbols": symbols, "erased": erased, "ber": ber})[0]


class TorchEngine:
    """A torch module ``(symbols, erased, ber) -> logits`` in inference mode."""

    name = "torch"

    def __init__(self, module) -> None:
        import torch

        self.module = module
        self._torch = torch

    def run(self, symbols: np.ndarray, erased: np.ndarray, ber: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(symbols), torch.from_numpy(erased), torch.from_numpy(ber))
        return logits.float().numpy()


def set_torch_threads(n: int) -> None:
    """One process-wide torch setting (only when a torch engine serves)."""
    import contextlib

    import torch

    torch.set_num_threads(max(1, int(n)))
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

"""The codecs an edge serves, by fingerprint, and the batched decoder + task head call.

A `ServedCodec` wraps one bundle: the engine that runs its edge half (BER-aware decoder + backbone
tail, ``(symbols int64 (N, S), erased bool (N, S), ber float32 (N,)) -> logits``; see
`edge.engines`) and what the edge needs to unpack a payload (levels, Gray coding, symbol count).
`infer` runs a whole batch: one numpy unpack of all payloads, one engine call, softmax, argmax.
It is called from the model worker thread, never on the event loop.

`load_codecs(..., engine="onnx")` (the default) reads only the bundle's manifest and its verified
``edge.onnx`` (`codec.bundle_file`) and never imports torch; ``engine="torch"`` loads the whole
bundle with `codec.bundle` (weights re-hashed to the fingerprint) and, when the bundle carries
``edge.onnx``, checks that member too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec.wire.packing import bits_per_symbol, erased_symbols, unpack_symbols
from snn.errors import SnnError


@dataclass
class BatchResult:
    labels: np.ndarray        # int (N,)
    confidences: np.ndarray   # float (N,)


@dataclass
class ServedCodec:
    """One codec the edge answers for."""

    fingerprint: bytes
    name: str
    levels: int
    n_symbols: int
    classes: list[str]
    module: object = None             # a torch edge half (wrapped in a TorchEngine), or None
    gray: bool = True
    source: str = ""
    config: dict = field(default_factory=dict)
    engine: object = None             # an edge.engines engine; default: TorchEngine(module)

    def __post_init__(self) -> None:
        if self.engine is None:
            if self.module is None:
                raise ValueError("a served codec needs an engine (or a torch module)")
            from edge.engines import TorchEngine
            self.engine = TorchEngine(self.module)
        self.bits_per_symbol = bits_per_symbol(self.levels)
        self.payload_bits = self.n_symbols * self.bits_per_symbol
        self.payload_bytes = (self.payload_bits + 7) // 8

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @classmethod
    def from_bundle(cls, bundle, source: str = "", trace: bool = False) -> "ServedCodec":
        """Wrap a loaded `codec.bundle.Bundle` (its edge half in eval mode, no gradients; with
        `trace`, TorchScript-traced and frozen when that gives the same logits)."""
        module = bundle.edge_half()
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        if trace:
            module = trace_edge_half(module, int(bundle.n_symbols), int(bundle.levels))
        return cls(fingerprint=bytes(bundle.fingerprint), name=str(bundle.name),
                   levels=int(bundle.levels), n_symbols=int(bundle.n_symbols),
                   classes=[str(c) for c in bundle.classes], module=module,
                   gray=bool(getattr(bundle, "gray", True)), source=source,
                   config=dict(getattr(bundle, "config", {}) or {}))

    @classmethod
    def from_edge_model(cls, model, source: str = "", engine=None) -> "ServedCodec":
        """Serve a `codec.bundle_file.EdgeModel` (manifest + verified edge.onnx) on
        onnxruntime (or on `engine`, e.g. a remote one built from the same model)."""
        from edge.engines import OnnxEngine

        cfg = model.codec_config
        meta = model.session.get_modelmeta().custom_metadata_map if model.session is not None else {}
        n_symbols = int(meta["snn.n_symbols"]) if "snn.n_symbols" in meta else None
        if n_symbols is None:
            raise SnnError(f"{model.path}: edge.onnx has no snn.n_symbols metadata")
        levels = int(cfg["levels"])
        if "snn.levels" in meta and int(meta["snn.levels"]) != levels:
            raise SnnError(f"{model.path}: edge.onnx says {meta['snn.levels']} levels, the manifest {levels}")
        return cls(fingerprint=model.fingerprint, name=model.name, levels=levels, n_symbols=n_symbols,
                   classes=[str(c) for c in model.manifest["classes"]],
                   gray=bool(cfg.get("gray", True)), source=source,
                   config=dict(model.manifest.get("config", {})),
                   engine=engine if engine is not None else OnnxEngine(model.session))

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def describe(self) -> dict:
        return {"fingerprint": self.fingerprint_hex, "name": self.name, "engine": self.engine.name,
                "levels": self.levels,
                "bits_per_symbol": self.bits_per_symbol, "n_symbols": self.n_symbols,
                "payload_bits": self.payload_bits, "payload_bytes": self.payload_bytes,
                "gray": self.gray, "classes": list(self.classes), "source": self.source}

    def warm_up(self, max_batch: int) -> None:
        """One forward pass per batch size 1..max_batch, so that no live batch pays a first-call
        cost (TorchScript profiles and specialises a graph on its first calls with new shapes)."""
        rng = np.random.default_rng(0)
        payloads = [bytes(rng.integers(0, 256, self.payload_bytes, dtype=np.uint8))
                    for _ in range(max_batch)]
        for n in range(1, max_batch + 1):
            self.infer(payloads[:n], None, np.full(n, 1e-3, dtype=np.float32))

    def batch_seconds(self, n: int, repeats: int = 5) -> float:
        """Median seconds of one batch of n random payloads (the admission cost model's seed)."""
        import time

        rng = np.random.default_rng(1)
        payloads = [bytes(rng.integers(0, 256, self.payload_bytes, dtype=np.uint8)) for _ in range(n)]
        bers = np.full(n, 1e-3, dtype=np.float32)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.infer(payloads, None, bers)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    def infer(self, payloads: list, erased: list | None, bers: np.ndarray) -> BatchResult:
        """Decode a batch. `payloads`: packed bytes per inference; `erased`: per-byte bool masks
        (None when every payload arrived whole); `bers`: the estimates that condition the decoder."""
        n = len(payloads)
        packed = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, self.payload_bytes)
        symbols = unpack_symbols(packed, self.levels, self.n_symbols, self.gray)
        if erased is None:
            erased_sym = np.zeros((n, self.n_symbols), dtype=bool)
        else:
            erased_sym = erased_symbols(np.stack(erased), self.levels, self.n_symbols)
        logits = self.engine.run(symbols.astype(np.int64, copy=False), erased_sym,
                                 np.asarray(bers, dtype=np.float32))
        return softmax_top(np.asarray(logits, dtype=np.float32))


def softmax_top(logits: np.ndarray) -> BatchResult:
    """Argmax and its softmax probability per row (the max probability is 1 / sum(exp(l - max)))."""
    labels = logits.argmax(axis=1)
    peak = logits[np.arange(len(logits)), labels]
    conf = 1.0 / np.exp(logits - peak[:, None]).sum(axis=1)
    return BatchResult(labels, conf.astype(np.float32))


def trace_edge_half(module, n_symbols: int, levels: int, check_batch: int = 16):
    """The edge half traced and frozen with TorchScript: one C++ graph call per batch instead of
    dozens of Python module calls. Checked against the eager module on random symbols with
    erasures and several batch sizes; any failure or mismatch keeps the eager module.

    Opt-in (``snn edge serve --torchscript``): it is up to ~1.5x faster on the model, but the
    profiling executor now and then re-optimises a graph while holding the GIL — batches of
    0.25-1 s that stall the loop too (measured: p99 at 1,000 frames/s 495 ms traced vs 30 ms
    eager in back-to-back runs). Eager is the default: predictable tails first."""
    import warnings

    import torch

    gen = torch.Generator().manual_seed(0)

    def example(n):
        return (torch.randint(0, levels, (n, n_symbols), generator=gen),
                torch.rand(n, n_symbols, generator=gen) < 0.1,
                torch.full((n,), 1e-2, dtype=torch.float32))

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(module, example(check_batch), check_trace=False).eval())
            for n in (1, 3, check_batch, 64):
                args = example(n)
                if not torch.allclose(traced(*args), module(*args), rtol=1e-4, atol=1e-4):
                    return module
        return traced
    except Exception:  # noqa: BLE001 - tracing is an optimisation; eager always works
        return module


class CodecRegistry:
    """Fingerprint -> served codec. Several bundles may be loaded at once."""

    def __init__(self, codecs: list[ServedCodec] | None = None) -> None:
        self._by_fp: dict[bytes, ServedCodec] = {}
        for codec in codecs or []:
            self.add(codec)

    def add(self, codec: ServedCodec) -> None:
        other = self._by_fp.get(codec.fingerprint)
        if other is not None:
            raise SnnError(f"bundles {other.source or other.name} and {codec.source or codec.name} "
                           f"have the same fingerprint {codec.fingerprint_hex}; load one of them")
        self._by_fp[codec.fingerprint] = codec

    def get(self, fingerprint: bytes) -> ServedCodec | None:
        return self._by_fp.get(fingerprint)

    def __iter__(self):
        return iter(self._by_fp.values())

    def __len__(self) -> int:
        return len(self._by_fp)

    def fingerprints(self) -> list[str]:
        return [fp.hex() for fp in self._by_fp]


def load_codecs(paths: list[str] | None, trace: bool = False, engine: str = "onnx",
                threads: int = 1) -> CodecRegistry:
    """Load bundles by path (none given: the shipped default bundle) onto `engine`
    ("onnx": manifest + verified edge.onnx, no torch; "torch": the whole bundle)."""
    from edge.engines import ENGINES

    if engine not in ENGINES:
        raise SnnError(f"--engine takes {' or '.join(ENGINES)}, got {engine!r}")
    registry = CodecRegistry()
    for path in (paths or [None]):
        source = str(path) if path else "default"
        if engine == "onnx":
            from codec.bundle_file import load_edge_model
            registry.add(ServedCodec.from_edge_model(load_edge_model(path, threads), source=source))
            continue
        from codec.bundle import load_bundle
        from edge.engines import set_torch_threads

        set_torch_threads(threads)
        registry.add(ServedCodec.from_bundle(load_bundle(path), source=source, trace=trace))
    return registry

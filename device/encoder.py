"""The device's encoder: an onnxruntime session over the exported (int8) ONNX file.

The file carries everything the device needs in its metadata (written by `snn export`): the
codec fingerprint for the frame header, levels and bits per symbol, the code of each symbol
index (Gray), the number of symbols and the input spec. The graph's output already *is* the
symbol indices (uint8), so the device only packs bits. No torch here.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from codec.wire.encoder_meta import parse_metadata
from codec.wire.packing import pack_symbols
from snn.errors import SnnError


class OnnxEncoder:
    """Loads an exported encoder; ``encode`` images -> symbols, ``pack`` symbols -> payload bytes."""

    def __init__(self, path: str | Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SnnError("the device needs onnxruntime: pip install -e '.[device]'") from None
        path = Path(path)
        if not path.is_file():
            raise SnnError(f"encoder file {path} does not exist; export one with 'snn export -o DIR'")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            raise SnnError(f"{path} is not a loadable ONNX model ({type(exc).__name__})") from None
        self.path = path
        self.info = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.input_name = self.session.get_inputs()[0].name

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, C) or one (H, W, C) -> symbol indices uint8 (N, S)."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        h, w, c = self.info.input_shape
        if x.shape[1:] != (h, w, c):
            raise SnnError(f"images of shape {x.shape[1:]} (H, W, C); this encoder takes {(h, w, c)}")
        if x.dtype != np.uint8:
            raise SnnError(f"the encoder takes uint8 pixels, got {x.dtype}")
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]

    def pack(self, symbols: np.ndarray) -> bytes:
        """One image's symbols (S,) -> its packed, Gray-coded payload."""
        return pack_symbols(np.asarray(symbols).reshape(-1), self.info.levels, self.info.gray).tobytes()

    def encode_one(self, image: np.ndarray) -> tuple[bytes, float]:
        """(payload, encode seconds) of one image, packing included."""
        t = time.perf_counter()
        payload = self.pack(self.encode(image)[0])
        return payload, time.perf_counter() - t

"""What an exported encoder's `snn.*` metadata says about the codec, validated (docs/PROTOCOL.md §1).

These are the parameters a device needs to frame its payload (levels, symbols, bits per symbol,
payload bits, codec fingerprint, input shape, classes). The one reader of them, shared by the
device (device.encoder, onnxruntime) and the MCU simulator and firmware build (firmware_sim, its
own ONNX reader), so a malformed encoder is one clear error everywhere it is read, never a
traceback or a firmware built for 0 levels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from codec.wire.packing import bits_per_symbol, symbol_codes
from snn.errors import SnnError

FORMAT = "semanticnn-encoder/1"
_TEXT_KEYS = ("format", "bundle", "fingerprint", "quantization")


@dataclass(frozen=True)
class EncoderInfo:
    """What the ONNX metadata says about the codec."""

    fingerprint: bytes
    levels: int
    bits_per_symbol: int
    gray: bool
    n_symbols: int
    payload_bits: int
    input_shape: tuple[int, int, int]   # (H, W, C), uint8 NHWC
    classes: list[str]
    bundle: str
    quantization: str

    @property
    def payload_bytes(self) -> int:
        return (self.payload_bits + 7) // 8


def parse_metadata(props: dict[str, str], source: str = "the model") -> EncoderInfo:
    """Decode and check the ``snn.*`` metadata_props of an exported encoder."""
    meta = {}
    for key, value in props.items():
        if key.startswith("snn."):
            name = key[4:]
            try:
                meta[name] = value if name in _TEXT_KEYS else json.loads(value)
            except json.JSONDecodeError:
                raise SnnError(f"{source}: metadata {key} is not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise SnnError(f"{source} is not a SemanticNN encoder (no '{FORMAT}' metadata): export one with "
                       f"'snn export BUNDLE -o DIR' and pass DIR/encoder.int8.onnx")
    def whole(name: str, low: int, high: int) -> int:
        value = meta.get(name)
        if type(value) is not int or not low <= value <= high:
            raise SnnError(f"{source}: metadata snn.{name} must be an integer in {low}..{high}, not {value!r}; "
                           f"re-export the encoder with 'snn export'")
        return value

    levels = whole("levels", 2, 256)
    n_symbols = whole("n_symbols", 1, 1 << 20)
    bits = whole("bits_per_symbol", 1, 8)
    payload_bits = whole("payload_bits", 1, 8 << 20)
    shape, classes = (meta.get("input") or {}), meta.get("classes", [])
    shape = shape.get("shape") if isinstance(shape, dict) else None
    if not isinstance(shape, list) or len(shape) != 3 or any(type(v) is not int or v < 1 for v in shape):
        raise SnnError(f"{source}: metadata snn.input.shape must be [H, W, C] of positive integers; re-export it")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(classes) > 255:
        raise SnnError(f"{source}: metadata snn.classes must be a list of at most 255 names; re-export it")
    fingerprint = meta.get("fingerprint")
    try:
        fp = bytes.fromhex(fingerprint) if isinstance(fingerprint, str) else b""
    except ValueError:
        fp = b""
    if len(fp) != 4:
        raise SnnError(f"{source}: metadata snn.fingerprint must be 8 hex digits (the codec fingerprint)")
    info = EncoderInfo(fingerprint=fp, levels=levels, bits_per_symbol=bits, gray=bool(meta.get("gray", True)),
                       n_symbols=n_symbols, payload_bits=payload_bits, input_shape=tuple(shape),
                       classes=list(classes), bundle=str(meta.get("bundle", "")),
                       quantization=str(meta.get("quantization", "")))
    if info.bits_per_symbol != bits_per_symbol(levels) or info.payload_bits != info.n_symbols * info.bits_per_symbol:
        raise SnnError(f"{source}: inconsistent metadata (levels {levels}, bits {info.bits_per_symbol}, "
                       f"{info.n_symbols} symbols, {info.payload_bits} payload bits)")
    gray = info.gray
    codes = meta.get("codes")
    if codes is not None and list(codes) != symbol_codes(levels, gray).tolist():
        raise SnnError(f"{source}: its symbol codes are not the protocol's {'Gray' if gray else 'binary'} codes")
    return info

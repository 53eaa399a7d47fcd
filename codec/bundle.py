"""Bundles: one zip file holding everything to run, export and check a trained codec.

Layout (a zip, every member deflated; a reader checks each member's declared size against a
limit before reading it, so a zip bomb is refused, not inflated):

- ``manifest.json``: format name and version, bundle name, codec + backbone config, the exact
  centers (float32 as hex and as numbers; keys ``centers``/``centers_f32_hex``, older bundles
  spell them ``centres``/``centres_f32_hex`` and still load), the 4-byte fingerprint, input shape/normalisation,
  classes, the training command line and seed, and measured metrics.
- ``weights.pt``: ``{"backbone": state_dict, "codec": state_dict}``, floating tensors in float16
  (the codec is trained against the float16-rounded backbone; the figures in the manifest are
  measured on the re-loaded bundle) except the quantizer's, kept float32 so the centres are exact.
- ``edge.onnx`` (optional): the edge half as float ONNX (`export.onnx_export.export_edge`), bound
  by ``manifest["edge_onnx"]`` (SHA-256, size, format), so an edge without torch serves it on
  onnxruntime (`codec.bundle_file`, which reads the zip without torch).

The fingerprint is the first 4 bytes of SHA-256 over the canonical JSON of the codec config, the
float32 centre bytes and every codec and backbone tensor (sorted by name); it travels in each
frame header so the edge refuses symbols from a different encoder. Loading re-computes it: a
bundle whose weights do not match its manifest is reported as corrupt.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from codec.bundle_file import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    DEFAULT_BUNDLE,
    EDGE_ONNX,
    MAX_EDGE_ONNX_BYTES,
    MAX_MANIFEST_BYTES,
    edge_record,
    parse_manifest,
    read_member,
)
from codec.wire.packing import bits_per_symbol, packed_bytes
from snn.errors import BundleError

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "DEFAULT_BUNDLE", "Bundle", "load_bundle", "write_bundle",
           "make_manifest", "make_random_bundle", "compute_fingerprint"]


def compute_fingerprint(codec_config: dict, centres: np.ndarray, state: dict[str, torch.Tensor]) -> bytes:
    h = hashlib.sha256()
    h.update(json.dumps(codec_config, sort_keys=True, separators=(",", ":")).encode())
    h.update(np.asarray(centres, dtype="<f4").tobytes())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.digest()[:4]


class Bundle:
    """A loaded bundle: config, weights, centres, metrics, and the two deployable halves."""

    def __init__(self, manifest: dict, backbone, codec, stored_state: dict, edge_onnx: bytes | None = None):
        from codec.model.semantic_codec import Normalise

        self.manifest = manifest
        self.config: dict = manifest["config"]
        self.name: str = manifest.get("name", "bundle")
        self.metrics: dict = manifest.get("metrics", {})
        self.classes: list[str] = list(manifest["classes"])
        self.input_shape = tuple(manifest["input_shape"])
        self.input_mean = list(manifest["input_mean"])
        self.input_std = list(manifest["input_std"])
        self.backbone = backbone.eval()
        self.codec = codec.eval()
        self.levels: int = int(self.config["codec"]["levels"])
        self.bits_per_symbol: int = bits_per_symbol(self.levels)
        self.gray: bool = bool(self.config["codec"]["gray"])
        self.symbol_shape = tuple(int(v) for v in codec.symbol_shape)
        self.n_symbols: int = int(codec.n_symbols)
        self.payload_bytes: int = packed_bytes(self.n_symbols, self.levels)
        self.centers: np.ndarray = codec.quantizer.centres().detach().numpy().astype(np.float32)
        self._stored = stored_state
        self.edge_onnx = edge_onnx      # the verified ONNX edge half, when the bundle carries one
        self.fingerprint: bytes = compute_fingerprint(self.config["codec"], self.centers, _hash_view(stored_state))
        self.normalise = Normalise(self.input_mean, self.input_std)

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def device_half(self) -> torch.nn.Module:
        from codec.model.semantic_codec import DeviceHalf
        return DeviceHalf(self.normalise, self.backbone, self.codec).eval()

    def edge_half(self) -> torch.nn.Module:
        from codec.model.semantic_codec import EdgeHalf
        return EdgeHalf(self.backbone, self.codec).eval()

    def save(self, path: str | Path, edge_onnx: bytes | None = None) -> Path:
        """Write the bundle again (the same weights, so the same fingerprint); `edge_onnx`
        replaces the ONNX edge half it carries (None keeps the current one, if any)."""
        return write_bundle(path, self.manifest, self._stored["backbone"], self._stored["codec"],
                            edge_onnx=edge_onnx if edge_onnx is not None else self.edge_onnx)

    def __repr__(self) -> str:
        return (f"Bundle({self.name!r}, {self.n_symbols} symbols x {self.bits_per_symbol} bits = "
                f"{self.payload_bytes} B, fingerprint {self.fingerprint_hex})")


# A bundle's members are small (the shipped one holds ~0.3 MB of weights); these caps refuse a zip
# bomb or a mislabelled file before anything is inflated (`codec.bundle_file.read_member`).
MAX_WEIGHTS_BYTES = 512 << 20


def _manifest_centers(manifest: dict) -> list:
    """The centers of a manifest, under either spelling (bundles before 2026-11-30 say 'centres')."""
    return manifest["centers"] if "centers" in manifest else manifest["centres"]


def make_manifest(name: str, backbone_record: dict, codec_config: dict, centres: np.ndarray, command: str, seed: int,
                  metrics: dict | None = None, extra: dict | None = None) -> dict:
    """The manifest dict of a new bundle (fingerprint filled in by `write_bundle`)."""
    return {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "name": name,
        "config": {"codec": codec_config,
                   "backbone": {"arch": backbone_record["arch"], "kwargs": backbone_record["kwargs"],
                                "data": backbone_record.get("data"), "accuracy": backbone_record.get("accuracy"),
                                **_split_keys(backbone_record)}},
        "centers": [float(c) for c in centres],
        "input_shape": list(backbone_record["input_shape"]), "input_mean": list(backbone_record["input_mean"]),
        "input_std": list(backbone_record["input_std"]), "classes": list(backbone_record["classes"]),
        "command": command, "seed": seed, "metrics": metrics or {}, **(extra or {}),
    }


def _split_keys(record: dict) -> dict:
    """The held-out split of a single image-folder tree, when the backbone was trained on one."""
    if record.get("holdout") is None:
        return {}
    return {"holdout": record["holdout"], "split_seed": record.get("split_seed", 0)}


def storage_form(backbone_state: dict, codec_state: dict) -> dict:
    """Weights as stored: float16 for every floating tensor except the quantizer's (exact centres)."""
    def half(key: str, v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        return v.half() if v.is_floating_point() and "quantizer." not in key else v.clone()
    return {"backbone": {k: half(k, v) for k, v in backbone_state.items()},
            "codec": {k: half(k, v) for k, v in codec_state.items()}}


def _hash_view(stored: dict) -> dict:
    view = {f"codec.{k}": v for k, v in stored["codec"].items()}
    view.update({f"backbone.{k}": v for k, v in stored["backbone"].items()})
    return view


def _sealed(manifest: dict, stored: dict, edge_onnx: bytes | None) -> dict:
    """A copy of the manifest bound to the stored weights: fingerprint, exact centres, edge.onnx's hash."""
    manifest = dict(manifest)
    manifest.pop("edge_onnx", None)
    if edge_onnx is not None:
        manifest["edge_onnx"] = edge_record(bytes(edge_onnx))
    centres = np.asarray(_manifest_centers(manifest), dtype=np.float32)
    manifest["fingerprint"] = compute_fingerprint(manifest["config"]["codec"], centres, _hash_view(stored)).hex()
    manifest["centers_f32_hex"] = centres.astype("<f4").tobytes().hex()
    return manifest


def bundle_in_memory(manifest: dict, backbone_state: dict, codec_state: dict) -> Bundle:
    """The bundle `write_bundle` would write, without writing it: the weights in their stored
    form (float16 but the centres), so what is measured is what a later `load_bundle` reads."""
    stored = storage_form(backbone_state, codec_state)
    return _assemble(_sealed(manifest, stored, None), stored, None)


def _assemble(manifest: dict, state: dict, edge_onnx: bytes | None) -> Bundle:
    """A Bundle from a manifest and stored weights (floats widened back to float32)."""
    from codec.model.backbones import build_backbone
    from codec.model.semantic_codec import SemanticCodec

    cfg = manifest["config"]
    backbone = build_backbone(cfg["backbone"]["arch"], **cfg["backbone"]["kwargs"])
    as_float = lambda d: {k: (v.float() if v.is_floating_point() else v) for k, v in d.items()}  # noqa: E731
    backbone.load_state_dict(as_float(state["backbone"]))
    codec = SemanticCodec.from_config(cfg["codec"])
    codec.load_state_dict(as_float(state["codec"]))
    return Bundle(manifest, backbone, codec, state, edge_onnx)


def write_bundle(path: str | Path, manifest: dict, backbone_state: dict, codec_state: dict,
                 edge_onnx: bytes | None = None) -> Path:
    """Write the zip; the stored backbone state is cast to float16 (floating tensors only).
    `edge_onnx`: the ONNX edge half exported from these weights, stored as ``edge.onnx`` and
    bound by its SHA-256 in the manifest (it does not enter the codec fingerprint)."""
    path = Path(path)
    stored = storage_form(backbone_state, codec_state)
    manifest = _sealed(manifest, stored, edge_onnx)
    buf = io.BytesIO()
    torch.save(stored, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True), compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("weights.pt", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        if edge_onnx is not None:
            z.writestr(EDGE_ONNX, bytes(edge_onnx), compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return path


def load_bundle(path: str | Path | None = None, expect_fingerprint: bytes | None = None) -> Bundle:
    """Load a bundle (None: the shipped default). Raises BundleError with a clear sentence."""
    path = DEFAULT_BUNDLE if path is None else Path(path)
    if not path.is_file():
        hint = " (the shipped default is missing: reinstall the package)" if path == DEFAULT_BUNDLE else ""
        raise BundleError(f"bundle file {path} does not exist{hint}")
    try:
        with zipfile.ZipFile(path) as z:
            raw_manifest = read_member(z, "manifest.json", MAX_MANIFEST_BYTES, path)
            weights = read_member(z, "weights.pt", MAX_WEIGHTS_BYTES, path)
            edge_onnx = (read_member(z, EDGE_ONNX, MAX_EDGE_ONNX_BYTES, path)
                         if EDGE_ONNX in z.namelist() else None)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, EOFError, UnicodeDecodeError,
            zipfile.LargeZipFile) as exc:
        raise BundleError(f"{path} is not a valid bundle (corrupt or not a bundle: {type(exc).__name__})") from None
    manifest = parse_manifest(raw_manifest, path)
    try:
        state = torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu")
        bundle = _assemble(manifest, state, edge_onnx)
    except Exception as exc:  # noqa: BLE001 - any failure here means weights that do not fit the manifest
        raise BundleError(f"{path} is corrupt: its weights do not load ({type(exc).__name__}: {exc})"[:300]) from None
    if bundle.fingerprint.hex() != manifest.get("fingerprint"):
        raise BundleError(f"{path} is corrupt: its weights hash to fingerprint {bundle.fingerprint.hex()}, "
                          f"its manifest says {manifest.get('fingerprint')}")
    stored = np.frombuffer(bytes.fromhex(manifest.get("centers_f32_hex", manifest.get("centres_f32_hex", ""))),
                           dtype="<f4")
    if stored.shape != bundle.centers.shape or not np.array_equal(stored, bundle.centers):
        raise BundleError(f"{path} is corrupt: the centres in its manifest differ from its weights")
    if (edge_onnx is None) != (manifest.get("edge_onnx") is None) or (
            edge_onnx is not None and edge_record(edge_onnx)["sha256"] != manifest["edge_onnx"].get("sha256")):
        raise BundleError(f"{path} is corrupt: its {EDGE_ONNX} does not match the SHA-256 in its manifest")
    if expect_fingerprint is not None and bytes(expect_fingerprint) != bundle.fingerprint:
        raise BundleError(f"{path} holds codec {bundle.fingerprint.hex()}, but codec "
                          f"{bytes(expect_fingerprint).hex()} was expected: it was made for another codec")
    return bundle


def make_random_bundle(path: str | Path, arch: str = "resnet8", width: float = 0.5, levels: int = 8,
                       channels: int = 2, crop: float = 1.0, gray: bool = True, seed: int = 0,
                       input_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10) -> Path:
    """An untrained but structurally complete bundle, for tests and tooling (seconds, no data)."""
    from codec.model.backbones import build_backbone
    from codec.model.semantic_codec import SemanticCodec

    torch.manual_seed(seed)
    kwargs = {"in_channels": input_shape[0], "n_classes": n_classes, "width": width}
    backbone = build_backbone(arch, **kwargs).eval()
    kwargs["split"] = backbone.split
    codec = SemanticCodec(backbone.split_shape(input_shape), levels=levels, channels=channels, crop=crop,
                          gray=gray, dec_hidden=16, enc_hidden=16).eval()
    codec.quantizer.freeze()
    record = {"arch": arch, "kwargs": kwargs, "input_shape": list(input_shape), "input_mean": [0.5] * input_shape[0],
              "input_std": [0.25] * input_shape[0], "classes": [f"class{i}" for i in range(n_classes)],
              "data": "fmnist", "accuracy": None}
    manifest = make_manifest(Path(path).stem, record, codec.config, codec.quantizer.centres().numpy(),
                             command="make_random_bundle", seed=seed)
    return write_bundle(path, manifest, backbone.state_dict(), codec.state_dict())

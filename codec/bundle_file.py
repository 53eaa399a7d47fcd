"""The bundle zip without torch: its manifest and its ONNX edge half, read with size limits.

`codec.bundle` writes and fully loads bundles (torch: it re-hashes the weights). An edge that
serves the edge half on onnxruntime needs neither torch nor the weights: it reads
``manifest.json`` and ``edge.onnx`` and checks that

- the manifest is an snn bundle of a version this code reads,
- ``edge.onnx`` hashes (SHA-256, whole file) to ``manifest["edge_onnx"]["sha256"]``, and
- the ONNX file's own metadata names the manifest's codec fingerprint.

The codec fingerprint itself covers the weights (see `codec.bundle.compute_fingerprint`), not
``edge.onnx``: adding or regenerating the ONNX member never changes what devices send. Every
member is read with a byte limit checked before and while reading, so a hostile or broken zip
(a member that claims or inflates to gigabytes) costs at most the limit.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from snn.errors import BundleError

BUNDLE_FORMAT = "snn-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
EDGE_ONNX = "edge.onnx"
EDGE_FORMAT = "semanticnn-edge/1"
MAX_MANIFEST_BYTES = 4 << 20
MAX_EDGE_ONNX_BYTES = 256 << 20
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "zoo" / "fmnist_default.snn"


@dataclass
class EdgeModel:
    """What a torch-free edge serves from one bundle: the manifest and the verified ONNX bytes."""

    path: Path
    manifest: dict
    onnx: bytes
    session: object = None    # the onnxruntime InferenceSession the fingerprint was checked with

    @property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(self.manifest["fingerprint"])

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.stem))

    @property
    def codec_config(self) -> dict:
        return self.manifest["config"]["codec"]


def read_member(z: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    """A zip member's bytes, refused (BundleError) when its declared or actual size exceeds
    `limit`; KeyError when the member is missing."""
    info = z.getinfo(name)
    if info.file_size > limit:
        raise BundleError(f"{path}: member {name} declares {info.file_size} bytes, over the {limit}-byte "
                          "limit of a bundle; it is not a bundle this snn wrote")
    with z.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{path}: member {name} inflates past the {limit}-byte limit of a bundle")
    return data


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        hint = " (the shipped default is missing: reinstall the package)" if path == DEFAULT_BUNDLE else ""
        raise BundleError(f"bundle file {path} does not exist{hint}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path} is not a valid bundle (corrupt or not a bundle: {type(exc).__name__})") from None


def parse_manifest(raw: bytes, path: Path) -> dict:
    """The manifest dict, checked for format and version (BundleError otherwise)."""
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(f"{path} is not a valid bundle (its manifest is not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not an snn bundle (its manifest has no format '{BUNDLE_FORMAT}')")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{path} is bundle format version {manifest.get('version')}, this snn reads version "
                          f"{BUNDLE_VERSION}: retrain it with 'snn train codec' or use a matching snn release")
    check_manifest(manifest, path)
    return manifest


def _is_int(value, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_number(value) -> bool:
    return type(value) in (int, float) and value == value and abs(value) != float("inf")


def check_manifest(manifest: dict, path) -> None:
    """Every field a reader of the manifest relies on, with its type and range (BundleError, one
    line, naming the field): a hand-edited or foreign manifest is refused here, not by a traceback
    wherever the field is first used."""
    def bad(field: str, want: str) -> BundleError:
        return BundleError(f"{path} is not a valid bundle: manifest field {field} must be {want}")

    fp = manifest.get("fingerprint")
    if not isinstance(fp, str) or len(fp) != 8 or any(c not in "0123456789abcdef" for c in fp):
        raise bad("fingerprint", "8 lower-case hex digits")
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= 255 or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a list of 1..255 class names")
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise bad("config", "an object (with 'backbone' and 'codec')")
    codec, backbone = config.get("codec"), config.get("backbone")
    if not isinstance(codec, dict):
        raise bad("config.codec", "an object")
    if not isinstance(backbone, dict) or not isinstance(backbone.get("arch"), str) \
            or not isinstance(backbone.get("kwargs", {}), dict):
        raise bad("config.backbone", "an object with 'arch' (a name) and 'kwargs' (an object)")
    levels = codec.get("levels")
    if not _is_int(levels, 2, 256):
        raise bad("config.codec.levels", f"an integer in 2..256, not {levels!r}")
    if "gray" in codec and not isinstance(codec["gray"], bool):
        raise bad("config.codec.gray", "true or false")
    for name in ("channels", "enc_hidden", "dec_hidden", "enc_kernel", "enc_stride"):
        if name in codec and not _is_int(codec[name], 1, 1 << 16):
            raise bad(f"config.codec.{name}", "a positive integer")
    for name in ("split_shape", "out_shape"):
        if name in codec and (not isinstance(codec[name], list) or not all(_is_int(v, 1, 1 << 16) for v in codec[name])):
            raise bad(f"config.codec.{name}", "a list of positive integers")
    shape = manifest.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(v, 1, 1 << 16) for v in shape):
        raise bad("input_shape", "[C, H, W] of positive integers")
    for name in ("input_mean", "input_std"):
        value = manifest.get(name)
        if not isinstance(value, list) or len(value) != shape[0] or not all(_is_number(v) for v in value):
            raise bad(name, f"a list of {shape[0]} numbers (one per input channel)")
    if any(v == 0 for v in manifest["input_std"]):
        raise bad("input_std", "non-zero")
    centers = manifest.get("centers", manifest.get("centres"))
    if centers is not None and (not isinstance(centers, list) or len(centers) != levels
                                or not all(_is_number(v) for v in centers)):
        raise bad("centers", f"a list of {levels} numbers (one per level)")
    if "edge_onnx" in manifest and manifest["edge_onnx"] is not None and not isinstance(manifest["edge_onnx"], dict):
        raise bad("edge_onnx", "an object (sha256, bytes, format)")


def read_manifest(path: str | Path | None = None) -> dict:
    """The checked manifest of a bundle (None: the shipped default)."""
    path = DEFAULT_BUNDLE if path is None else Path(path)
    try:
        with _open(path) as z:
            return parse_manifest(read_member(z, MANIFEST, MAX_MANIFEST_BYTES, path), path)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise BundleError(f"{path} is corrupt ({type(exc).__name__})") from None


def edge_record(onnx_bytes: bytes) -> dict:
    """The manifest entry that binds an ``edge.onnx`` member to its bundle."""
    return {"sha256": hashlib.sha256(onnx_bytes).hexdigest(), "bytes": len(onnx_bytes),
            "format": EDGE_FORMAT}


def load_edge_model(path: str | Path | None = None, threads: int = 1,
                    limit: int = MAX_EDGE_ONNX_BYTES) -> EdgeModel:
    """Read and verify a bundle's manifest and ``edge.onnx`` (no torch) and open it on
    onnxruntime with `threads` intra-op threads. Raises BundleError."""
    path = DEFAULT_BUNDLE if path is None else Path(path)
    try:
        with _open(path) as z:
            manifest = parse_manifest(read_member(z, MANIFEST, MAX_MANIFEST_BYTES, path), path)
            record = manifest.get("edge_onnx")
            if not isinstance(record, dict) or EDGE_ONNX not in z.namelist():
                raise BundleError(
                    f"{path} carries no {EDGE_ONNX} (made before bundles held the ONNX edge half): add it "
                    f"with 'snn export {path} --add-edge' (needs torch), or serve it with --engine torch")
            data = read_member(z, EDGE_ONNX, limit, path)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise BundleError(f"{path} is corrupt ({type(exc).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.get("sha256"):
        raise BundleError(f"{path} is corrupt: {EDGE_ONNX} hashes to sha256 {digest[:16]}..., its manifest "
                          f"says {str(record.get('sha256'))[:16]}...")
    session = open_session(data, threads, path)
    meta = session.get_modelmeta().custom_metadata_map
    fp = meta.get("snn.fingerprint")
    if fp != manifest.get("fingerprint") or meta.get("snn.format") != EDGE_FORMAT:
        raise BundleError(f"{path}: {EDGE_ONNX} is a {meta.get('snn.format')} model of codec {fp}, the bundle is "
                          f"codec {manifest.get('fingerprint')}: re-add it with 'snn export {path} --add-edge'")
    return EdgeModel(path, manifest, data, session)


def open_session(onnx_bytes: bytes, threads: int = 1, path: Path | str = EDGE_ONNX):
    """An onnxruntime CPU session: `threads` intra-op threads, one inter-op, sequential
    execution, all graph optimisations (the edge half is a small conv net; one thread per
    batch is what the edge's single model thread runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad model
        raise BundleError(f"{path}: {EDGE_ONNX} is not a loadable ONNX model ({type(exc).__name__})") from None

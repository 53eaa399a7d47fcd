"""codec.bundle_file: a bundle's manifest and edge.onnx read and verified without torch."""
import hashlib
import json
import zipfile

import pytest

from codec.bundle import load_bundle, make_random_bundle
from codec.bundle_file import EDGE_ONNX, load_edge_model, read_manifest
from snn.errors import BundleError


@pytest.fixture(scope="module")
def with_edge(tmp_path_factory):
    from export.onnx_export import add_edge_to_bundle

    path = make_random_bundle(tmp_path_factory.mktemp("b") / "tiny.snn")
    before = load_bundle(path).fingerprint
    add_edge_to_bundle(path)
    assert load_bundle(path).fingerprint == before, "adding edge.onnx must not change the codec"
    return path


def _rewrite(src, dst, member: str, data: bytes | None, manifest_edit=None):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            raw = z.read(info)
            if info.filename == "manifest.json" and manifest_edit is not None:
                m = json.loads(raw)
                manifest_edit(m)
                raw = json.dumps(m).encode()
            if info.filename == member:
                if data is None:
                    continue
                raw = data
            out.writestr(info.filename, raw)
    return dst


def test_edge_model_reads_and_verifies(with_edge):
    model = load_edge_model(with_edge)
    assert model.fingerprint == load_bundle(with_edge).fingerprint
    assert model.manifest["edge_onnx"]["sha256"] == hashlib.sha256(model.onnx).hexdigest()
    assert model.session.get_modelmeta().custom_metadata_map["snn.fingerprint"] == model.fingerprint.hex()
    assert read_manifest(with_edge)["fingerprint"] == model.fingerprint.hex()


def test_tampered_edge_onnx_is_refused_by_both_readers(with_edge, tmp_path):
    data = bytearray(load_edge_model(with_edge).onnx)
    data[-10] ^= 0x01
    bad = _rewrite(with_edge, tmp_path / "bad.snn", EDGE_ONNX, bytes(data))
    with pytest.raises(BundleError, match="sha256|SHA-256"):
        load_edge_model(bad)
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(bad)


def test_edge_onnx_of_another_codec_is_refused(with_edge, tmp_path):
    from export.onnx_export import add_edge_to_bundle

    other = make_random_bundle(tmp_path / "other.snn", seed=3)
    add_edge_to_bundle(other)
    foreign = load_edge_model(other).onnx
    swapped = _rewrite(with_edge, tmp_path / "swapped.snn", EDGE_ONNX, foreign,
                       lambda m: m["edge_onnx"].update(sha256=hashlib.sha256(foreign).hexdigest()))
    with pytest.raises(BundleError, match="codec"):
        load_edge_model(swapped)


def test_bundle_without_edge_onnx_says_how_to_add_it(tmp_path):
    old = make_random_bundle(tmp_path / "old.snn")
    with pytest.raises(BundleError, match="--add-edge"):
        load_edge_model(old)


def test_size_limit_is_enforced(with_edge):
    with pytest.raises(BundleError, match="limit"):
        load_edge_model(with_edge, limit=1000)


def test_not_a_zip_and_missing_file(tmp_path):
    junk = tmp_path / "junk.snn"
    junk.write_bytes(b"not a zip at all")
    for path in (junk, tmp_path / "missing.snn"):
        with pytest.raises(BundleError):
            load_edge_model(path)


def test_shipped_bundles_carry_a_verified_edge_half():
    from pathlib import Path

    import codec

    zoo = Path(codec.__file__).parent / "zoo"
    for path in sorted(zoo.glob("*.snn")):
        model = load_edge_model(path)
        assert model.manifest["fingerprint"] == model.fingerprint.hex(), path

"""Bundles round-trip exactly and refuse wrong versions, corrupt files and other codecs clearly."""
import json
import zipfile

import numpy as np
import pytest
import torch

from codec.bundle import BUNDLE_VERSION, DEFAULT_BUNDLE, load_bundle, make_random_bundle
from snn.errors import BundleError


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("b") / "tiny.snn")


def test_round_trip(bundle_path, tmp_path):
    b = load_bundle(bundle_path)
    assert len(b.fingerprint) == 4 and isinstance(b.fingerprint, bytes)
    assert b.levels == 8 and b.bits_per_symbol == 3 and b.gray
    assert b.symbol_shape == (2, 7, 7) and b.n_symbols == 98 and b.payload_bytes == 37
    assert b.centers.dtype == np.float32 and (np.diff(b.centers) > 0).all()
    assert b.input_shape == (1, 28, 28) and len(b.classes) == 10
    again = load_bundle(b.save(tmp_path / "copy.snn"))
    assert again.fingerprint == b.fingerprint
    assert np.array_equal(again.centers, b.centers)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(again.device_half()(x), b.device_half()(x))


def test_fingerprint_depends_on_weights(bundle_path, tmp_path):
    other = load_bundle(make_random_bundle(tmp_path / "other.snn", seed=1))
    assert other.fingerprint != load_bundle(bundle_path).fingerprint


def _rewrite(src, dst, manifest_edit=None, weights=None):
    with zipfile.ZipFile(src) as z:
        manifest = json.loads(z.read("manifest.json"))
        w = z.read("weights.pt")
    if manifest_edit:
        manifest_edit(manifest)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("weights.pt", weights if weights is not None else w)
    return dst


def test_wrong_version_is_refused(bundle_path, tmp_path):
    bad = _rewrite(bundle_path, tmp_path / "v.snn", lambda m: m.update(version=BUNDLE_VERSION + 1))
    with pytest.raises(BundleError, match="version"):
        load_bundle(bad)


def test_corrupt_files_are_refused(bundle_path, tmp_path):
    junk = tmp_path / "junk.snn"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a valid bundle"):
        load_bundle(junk)
    truncated = tmp_path / "trunc.snn"
    truncated.write_bytes(bundle_path.read_bytes()[:1000])
    with pytest.raises(BundleError):
        load_bundle(truncated)
    bad_weights = _rewrite(bundle_path, tmp_path / "w.snn", weights=b"garbage")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bad_weights)
    tampered = _rewrite(bundle_path, tmp_path / "t.snn", lambda m: m.update(fingerprint="00000000"))
    with pytest.raises(BundleError, match="fingerprint"):
        load_bundle(tampered)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "missing.snn")


def test_other_codec_is_refused(bundle_path):
    with pytest.raises(BundleError, match="another codec"):
        load_bundle(bundle_path, expect_fingerprint=b"\x00\x01\x02\x03")


def test_default_bundle_path_is_package_data():
    assert DEFAULT_BUNDLE.name == "fmnist_default.snn" and DEFAULT_BUNDLE.parent.name == "zoo"


def test_oversized_member_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """A zip bomb (a member that inflates far past any real bundle) is refused by its declared size."""
    import zipfile

    import codec.bundle as bundle_module
    from codec.bundle import load_bundle
    from snn.errors import BundleError

    bomb = tmp_path / "bomb.snn"
    with zipfile.ZipFile(bomb, "w") as z:
        z.writestr("manifest.json", b"{}", compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("weights.pt", b"\0" * (4 << 20), compress_type=zipfile.ZIP_DEFLATED)  # 4 MiB of zeros
    assert bomb.stat().st_size < 64 << 10
    monkeypatch.setattr(bundle_module, "MAX_WEIGHTS_BYTES", 1 << 20)
    with pytest.raises(BundleError, match="over the 1048576-byte limit"):
        load_bundle(bomb)


def test_new_bundles_spell_centers_and_old_spelling_still_loads(tmp_path):
    """Public formats say "centers" (as the ONNX metadata does); a bundle written before the rename,
    with "centres", still loads to the same centers."""
    new = make_random_bundle(tmp_path / "new.snn")
    with zipfile.ZipFile(new) as z:
        manifest = json.loads(z.read("manifest.json"))
        weights = z.read("weights.pt")
    assert "centers" in manifest and "centers_f32_hex" in manifest and "centres" not in manifest
    old_manifest = {("centres" + k[len("centers"):] if k.startswith("centers") else k): v for k, v in manifest.items()}
    old = tmp_path / "old.snn"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("manifest.json", json.dumps(old_manifest))
        z.writestr("weights.pt", weights)
    assert np.array_equal(load_bundle(old).centers, load_bundle(new).centers)

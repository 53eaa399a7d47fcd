"""Issue 21 item 10: every file a user hands the project that is malformed, special or too open gives
one line on stderr and exit 2 — never a traceback, never a hang. Real files, the real CLI."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ROOT / "codec" / "zoo" / "fmnist_default.int8.onnx"
BUNDLE = ROOT / "codec" / "zoo" / "fmnist_default.snn"
GOOD_KEY = "000102030405060708090a0b0c0d0e0f"


def _snn(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "snn", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    return proc


def _one_line_exit_2(proc, needle=""):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1, proc.stderr[-2000:]
    assert needle in err, err


def _keys(tmp_path, text, mode=0o600, name="keys.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def _doc(entries) -> str:
    return json.dumps({"format": "snn-keys", "version": 1, "devices": entries})


KEYS_CASES = {
    "nested": ("[" * 50000 + "]" * 50000, "nests too deeply"),
    "nested-object": ('{"format": "snn-keys", "version": 1, "devices": ' + "[" * 40 + "]" * 40 + "}", ""),
    "not-json": ("{'devices': }", "not JSON"),
    "binary": ("\udcff", ""),
    "zero-key": (_doc([{"id": 1, "key": "00" * 16}]), "all-zero key"),
    "string-id": (_doc([{"id": "1", "key": GOOD_KEY}]), "integer id"),
    "bool-id": (_doc([{"id": True, "key": GOOD_KEY}]), "integer id"),
    "short-key": (_doc([{"id": 1, "key": "0001"}]), "32 hex"),
    "key-not-string": (_doc([{"id": 1, "key": 5}]), "32 hex"),
    "bad-fingerprint": (_doc([{"id": 1, "key": GOOD_KEY, "fingerprint": "xyz"}]), "fingerprint"),
    "extra-field": (_doc([{"id": 1, "key": GOOD_KEY, "role": "admin"}]), "unknown field"),
    "entry-not-object": (_doc([5]), "must be an object"),
    "devices-not-list": (json.dumps({"format": "snn-keys", "version": 1, "devices": {"1": GOOD_KEY}}), "list"),
    "duplicate": (_doc([{"id": 1, "key": GOOD_KEY}, {"id": 1, "key": GOOD_KEY[::-1]}]), "appears twice"),
    "wrong-format": (json.dumps({"format": "x"}), "not an snn-keys"),
}


@pytest.mark.parametrize("case", sorted(KEYS_CASES))
def test_a_malformed_keys_file_is_one_line_everywhere_it_is_read(tmp_path, case):
    text, needle = KEYS_CASES[case]
    path = tmp_path / "keys.json"
    if case == "binary":
        path.write_bytes(b"\xff\xfe\x00{")
        path.chmod(0o600)
    else:
        path = _keys(tmp_path, text)
    _one_line_exit_2(_snn("keys", "show", path), needle)
    _one_line_exit_2(_snn("device", "run", "--encoder", ENCODER, "--to", "udp://127.0.0.1:9", "--key-file", path,
                          "--device-id", 1, "--count", 1), needle)
    _one_line_exit_2(_snn("edge", "serve", "--keys", path, "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0"), needle)


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604, 0o620])
def test_a_keys_file_others_may_read_is_refused_like_ssh_refuses_a_private_key(tmp_path, mode):
    path = _keys(tmp_path, _doc([{"id": 1, "key": GOOD_KEY}]), mode)
    for proc in (_snn("keys", "show", path),
                 _snn("edge", "serve", "--keys", path, "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0"),
                 _snn("device", "run", "--encoder", ENCODER, "--to", "udp://127.0.0.1:9", "--key-file", path,
                      "--count", 1)):
        _one_line_exit_2(proc, f"permissions {mode:04o}")
        assert f"chmod 600 {path}" in proc.stderr


def test_special_files_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    for target, needle in ((fifo, "a FIFO"), (tmp_path, "a directory"), (Path("/dev/null"), "character device")):
        _one_line_exit_2(_snn("keys", "show", target, timeout=20), needle)
        _one_line_exit_2(_snn("edge", "serve", "--keys", target, "--udp", "127.0.0.1:0", timeout=30), needle)
        _one_line_exit_2(_snn("device", "run", "--encoder", ENCODER, "--to", "udp://127.0.0.1:9", "--key-file",
                              target, "--count", 1, timeout=30), needle)


def test_a_keys_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as fh:
        fh.truncate(17 << 20)
    path.chmod(0o600)
    _one_line_exit_2(_snn("keys", "show", path), "limit")


@pytest.mark.parametrize("doc", ['{"next": -5}', '{"next": "12"}', '{"next": 300.7}', "[" * 60000, "{}"])
def test_a_malformed_device_state_stops_the_device(tmp_path, doc):
    keys = _keys(tmp_path, _doc([{"id": 1, "key": GOOD_KEY}]))
    state = tmp_path / "dev1.state"
    state.write_text(doc)
    _one_line_exit_2(_snn("device", "run", "--encoder", ENCODER, "--to", "udp://127.0.0.1:9", "--key-file", keys,
                          "--device-id", 1, "--state", state, "--count", 1), "counter state file")
    assert state.read_text() == doc


def _bundle(tmp_path, name, edit) -> Path:
    with zipfile.ZipFile(BUNDLE) as z:
        manifest = json.loads(z.read("manifest.json"))
        edit(manifest)
        out = tmp_path / f"{name}.snn"
        with zipfile.ZipFile(out, "w") as w:
            for member in z.namelist():
                w.writestr(member, json.dumps(manifest) if member == "manifest.json" else z.read(member))
    return out


BUNDLE_CASES = {
    "no-config": (lambda m: m.pop("config"), "config"),
    "levels-abc": (lambda m: m["config"]["codec"].__setitem__("levels", "abc"), "levels"),
    "levels-0": (lambda m: m["config"]["codec"].__setitem__("levels", 0), "levels"),
    "classes-5": (lambda m: m.__setitem__("classes", 5), "classes"),
    "classes-empty": (lambda m: m.__setitem__("classes", []), "classes"),
    "no-fingerprint": (lambda m: m.pop("fingerprint"), "fingerprint"),
    "input-shape": (lambda m: m.__setitem__("input_shape", "28x28"), "input_shape"),
    "std-zero": (lambda m: m.__setitem__("input_std", [0.0]), "input_std"),
    "centers-short": (lambda m: m.__setitem__("centers", [0.0]), "centers"),
    "backbone": (lambda m: m["config"].__setitem__("backbone", 3), "backbone"),
}


@pytest.mark.parametrize("case", sorted(BUNDLE_CASES))
def test_a_malformed_bundle_manifest_is_one_line(tmp_path, case):
    edit, needle = BUNDLE_CASES[case]
    bundle = _bundle(tmp_path, case, edit)
    _one_line_exit_2(_snn("edge", "serve", "--bundle", bundle, "--insecure", "--udp", "127.0.0.1:0",
                          "--http", "127.0.0.1:0"), needle)
    _one_line_exit_2(_snn("keys", "new", "--device", 1, "--bundle", bundle, "-o", tmp_path / "k.json"), needle)
    assert not (tmp_path / "k.json").exists()


@pytest.mark.parametrize("key, value, needle", [
    ("snn.levels", "0", "snn.levels"), ("snn.levels", '"abc"', "snn.levels"), ("snn.levels", "300", "snn.levels"),
    ("snn.n_symbols", "-1", "snn.n_symbols"), ("snn.fingerprint", "zz", "fingerprint"),
    ("snn.input", '{"shape": [28, 28]}', "snn.input"), ("snn.classes", "5", "snn.classes"),
    ("snn.levels", "{not json", "not valid JSON"),
])
def test_malformed_encoder_metadata_is_one_line(tmp_path, key, value, needle):
    import onnx
    model = onnx.load(str(ENCODER))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
    path = tmp_path / "encoder.int8.onnx"
    onnx.save(model, str(path))
    _one_line_exit_2(_snn("device", "run", "--encoder", path, "--to", "udp://127.0.0.1:9", "--insecure",
                          "--count", 1), needle)
    _one_line_exit_2(_snn("keys", "new", "--device", 1, "--bundle", path, "-o", tmp_path / "k.json"), needle)
    # the MCU side reads the same metadata (its own ONNX reader): no firmware for a malformed encoder
    _one_line_exit_2(_snn("mcu", "report", "--board", "stm32f411", path), needle)


def test_a_truncated_or_foreign_encoder_is_one_line(tmp_path):
    half = tmp_path / "half.onnx"
    half.write_bytes(ENCODER.read_bytes()[:5000])
    _one_line_exit_2(_snn("device", "run", "--encoder", half, "--to", "udp://127.0.0.1:9", "--insecure",
                          "--count", 1), "not a loadable ONNX")
    shutil.copy(BUNDLE, tmp_path / "b.onnx")
    _one_line_exit_2(_snn("device", "run", "--encoder", tmp_path / "b.onnx", "--to", "udp://127.0.0.1:9",
                          "--insecure", "--count", 1), "")

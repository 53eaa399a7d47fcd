"""The C fast path (codec/wire/_native.c) agrees with the pure-Python reference bit for bit.

The source is compiled here, into the test's own directory, so what is tested is the C in the
tree whether or not `pip install` built it (gcc and the Python headers are part of the setup)."""
from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest

from codec.wire import bch, crypto, frame
from codec.wire.frame import encode_inference, parse_data
from snn.errors import FrameError

SOURCE = Path(frame.__file__).with_name("_native.c")
HAVE_OPENSSL = Path("/usr/include/openssl/evp.h").exists()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (the package then runs its pure-Python reference)")
    out = tmp_path_factory.mktemp("native") / ("_native" + sysconfig.get_config_var("EXT_SUFFIX"))
    openssl = ["-DSNN_OPENSSL=1", "-lcrypto"] if HAVE_OPENSSL else []
    subprocess.run([gcc, "-O2", "-std=c11", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
                    str(SOURCE), "-o", str(out), *openssl], check=True, capture_output=True, timeout=120)
    spec = importlib.util.spec_from_file_location("_native", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flip(data: bytearray, rng: random.Random, bits: int) -> None:
    for _ in range(bits):
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 0x80 >> (i % 8)


def test_block_decoding_equals_the_reference(native):
    assert native.GENERATOR == bch.GENERATOR
    rng = random.Random(7)
    for _ in range(6000):
        size, copies = rng.choice([12, 13, 14, 15]), rng.choice([1, 3, 5])
        k = size * 8 - bch.PARITY_BITS
        block = bch.encode(rng.getrandbits(k), k).to_bytes(size, "big")
        data = bytearray(block * copies)
        if rng.random() < 0.25:
            data = bytearray(rng.getrandbits(8) for _ in range(len(data)))
        else:
            _flip(data, rng, rng.choice([0, 1, 2, 3, 4, 5, 7, 10]))
        data = bytes(data) + b"\x00tail"
        want = frame._decode_block_py(data, copies, size)
        got = native.decode_block(data, copies, size)
        assert (None if got is None else (int.from_bytes(got[0], "big") >> bch.PARITY_BITS, got[1])) == want
        assert native.remainder(data[:size]) == bch.remainder(data[:size])
        batch = native.decode_blocks(data, [(copies, size), (1, 12)])
        assert [row[0] for row in batch] == [i for i, (c, s) in enumerate([(copies, size), (1, 12)])
                                             if frame._decode_block_py(data, c, s) is not None]


def test_bad_arguments_are_value_errors_not_crashes(native):
    for args in ((b"\x00" * 12, 2, 12), (b"\x00" * 12, 1, 16), (b"\x00" * 11, 1, 12), (b"\x00" * 20, 3, 12)):
        with pytest.raises(ValueError):
            native.decode_block(*args)
    with pytest.raises(ValueError):
        native.decode_blocks(b"\x00" * 12, [(1, 13)])
    with pytest.raises(TypeError):
        native.decode_blocks(b"\x00" * 12, [1])


def _outcome(data, peers, sizes):
    try:
        f = parse_data(data, peers, lambda dev, low: low, sizes)
    except FrameError as exc:
        return ("refused", exc.reason)
    return (f.device_id, f.counter, f.copies, f.frag_index, f.frag_count, f.data, f.truth, f.header_errors,
            f.block_bytes, f.long_counter)


def test_parse_data_gives_the_same_answer_on_both_paths(native, monkeypatch):
    """Valid, damaged, fragmented, long-counter, test-mode and garbage datagrams: the fast path
    and the reference give the same frame or the same refusal reason."""
    rng = random.Random(11)
    peer = SimpleNamespace(key=bytes(range(16)), fingerprint=b"\x12\x34\xab\xcd", payload_bytes=37)
    peers = lambda dev: [peer] if dev in (7, 9) else []          # noqa: E731
    sizes = frozenset([37])
    corpus = []
    for _ in range(400):
        payload = bytes(rng.getrandbits(8) for _ in range(37))
        copies = rng.choice([1, 3, 5])
        frames = encode_inference(payload, key=peer.key, device_id=rng.choice([7, 9, 8]), fingerprint=peer.fingerprint,
                                  counter=rng.randrange(1 << 16), mtu=rng.choice([1400, 40 + 16 * copies]),
                                  copies=copies, truth=rng.choice([None, 3]), long_counter=rng.random() < 0.3)
        for f in frames:
            damaged = bytearray(f)
            _flip(damaged, rng, rng.choice([0, 0, 1, 3, 6]))
            corpus.append(bytes(damaged))
        corpus.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 130))))
    reference = {}
    monkeypatch.setattr(frame, "_decode_block", frame._decode_block_py)
    for data in corpus:
        reference[data] = _outcome(data, peers, sizes)
    monkeypatch.setattr(frame, "_native", native)
    monkeypatch.setattr(frame, "_decode_block", frame._decode_block_native)
    fast = {data: _outcome(data, peers, sizes) for data in corpus}
    assert fast == reference
    assert sum(o[0] != "refused" for o in reference.values()) > 200      # the corpus is not all garbage


@pytest.mark.skipif(not HAVE_OPENSSL, reason="OpenSSL headers (libssl-dev) not installed: no native AES")
def test_native_aes_equals_the_reference(native):
    """CMAC and CTR on OpenSSL's AES through the C module give the bytes of the reference
    (cryptography's AES with the modes written in Python), at every length and offset."""
    rng = random.Random(5)
    for _ in range(300):
        key = bytes(rng.getrandbits(8) for _ in range(16))
        aes = native.AesKey(key)
        for n in (0, 1, 13, 15, 16, 17, 32, 33, 100):
            message = bytes(rng.getrandbits(8) for _ in range(n))
            assert aes.cmac(message) == crypto.cmac_py(key, message)
        for offset in (0, 1, 15, 16, 37, 40, 4095):
            data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 3, 37, 147])))
            direction, device, counter = rng.choice([0, 1]), rng.randrange(1 << 16), rng.randrange(1 << 32)
            assert aes.xor_keystream(direction, device, counter, offset, data) == \
                crypto.xor_keystream_py(key, direction, device, counter, offset, data)
    with pytest.raises(ValueError):
        native.AesKey(b"short")

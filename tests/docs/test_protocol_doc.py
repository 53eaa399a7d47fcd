"""Every worked example and test vector in docs/PROTOCOL.md is what the reference implementation
produces, and parses back (a C firmware is written against these bytes)."""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.wire import bch
from codec.wire.crypto import counter_block, keystream, mic
from codec.wire.frame import (
    ErrorCode,
    ber_code,
    encode_error,
    encode_inference,
    encode_reply,
    parse_data,
    parse_reply,
)
from codec.wire.packing import pack_symbols

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
KEY = bytes(range(16))
FP = bytes.fromhex("1234abcd")
PAYLOAD = pack_symbols(np.arange(98) % 8, 8).tobytes()


@dataclass
class Peer:
    key: bytes = KEY
    fingerprint: bytes = FP
    payload_bytes: int = 37


def _blocks(lang: str = "") -> list[str]:
    return [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```", DOC, flags=re.S | re.M) if tag == lang]


def _hex_block(index: int) -> bytes:
    lines = [re.sub(r"^[0-9a-f]{4}: ", "", line) for line in _blocks()[index].strip().splitlines()]
    return bytes.fromhex(" ".join(lines))


def _hex_after(label: str) -> bytes:
    """The backticked hex bytes that follow `label` in the text."""
    text = re.search(re.escape(label) + r"\s*`([0-9a-f ]+)`", DOC.replace("\n", " "))
    assert text, label
    return bytes.fromhex(text.group(1))


def test_worked_data_frame():
    (frame,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=513, mtu=222)
    assert frame == _hex_block(0) and len(frame) == 49
    parsed = parse_data(frame, lambda dev: [Peer()], lambda dev, low: low)
    assert (parsed.device_id, parsed.counter, parsed.data, parsed.truth) == (7, 513, PAYLOAD, None)


def test_worked_crypto_vectors():
    message = _hex_after("fragment `00`, fingerprint):")
    assert message == bytes.fromhex("00000700000201810012 34abcd".replace(" ", ""))
    assert mic(KEY, message) == _hex_after("→ AES-CMAC → MIC")
    assert counter_block(0, 7, 513, 0) == _hex_after("counter block A_0 =")
    assert keystream(KEY, 0, 7, 513, 0, 37) == _hex_after("keystream bytes 0–36:")


def test_worked_bch_vectors():
    assert f"g(x) = 0x{bch.GENERATOR:08x}" in DOC
    assert f"`T[0x01] =\n0x{bch._TABLE[1]:08x}`" in DOC or f"`T[0x01] = 0x{bch._TABLE[1]:08x}`" in DOC
    assert f"0x{bch._TABLE[0x80]:08x}" in DOC
    frame = _hex_block(0)
    parity = int.from_bytes(frame[:12], "big") & ((1 << 28) - 1)
    assert f"BCH parity `0x{parity:07x}`" in DOC


def test_worked_reply_and_error():
    reply = encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=513, label=4, confidence=0.93, ber=0.0123)
    assert reply == _hex_block(1)
    assert ber_code(0.0123) == 132
    got = parse_reply(reply, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 513)
    assert (got.label, round(got.confidence, 2)) == (4, 0.93)
    error = encode_error(key=KEY, device_id=7, fingerprint=FP, counter=513, code=ErrorCode.BUSY, arg=5)
    assert error == _hex_block(2)
    assert parse_reply(error, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: 513).arg == 5
    message = _hex_after("encrypted `cf 83 c1`. MIC input")
    assert message == bytes.fromhex("01000700000201a10012 34abcdcf83c1".replace(" ", ""))
    assert mic(KEY, message) == _hex_after("cf 83 c1` → MIC")


def test_worked_fragments_with_truth():
    frames = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=515, mtu=51, truth=3)
    assert frames == [_hex_block(3), _hex_block(4)]
    parsed = [parse_data(f, lambda dev: [Peer()], lambda dev, low: low) for f in frames]
    assert b"".join(p.data for p in parsed) == PAYLOAD and parsed[1].truth == 3
    message = _hex_after("Fragment 1's MIC\ninput:".replace("\n", " "))
    assert message == bytes.fromhex("00000700000203911112 34abcd".replace(" ", ""))
    assert mic(KEY, message) == _hex_after("12 34 ab cd` → MIC")


def test_documented_keys_file_loads(tmp_path):
    from codec.wire.keys import load_keys
    path = tmp_path / "keys.json"
    path.write_text(_blocks("json")[0])
    keys = load_keys(path)
    assert keys[7].key == KEY and keys[7].fingerprint == FP
    assert json.loads(_blocks("json")[0])["format"] == "snn-keys"


def test_documented_packing_example():
    assert pack_symbols(np.arange(8), 8).tobytes() == bytes.fromhex("05adec")

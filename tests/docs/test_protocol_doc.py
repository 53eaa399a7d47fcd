"""The worked examples and test vectors in docs/PROTOCOL.md are what the reference implementation
produces, byte for byte (a C device is checked against the same text)."""
import re
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from codec.wire import bch
from codec.wire.crypto import DeviceKeys
from codec.wire.frame import (
    ErrorCode,
    Kind,
    body_lengths,
    check_length,
    encode_error,
    encode_inference,
    encode_reply,
    read_answer,
    read_header,
    verify,
)
from codec.wire.packing import pack_symbols

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
KEYS = DeviceKeys(7, bytes(range(16)))
PAYLOAD = pack_symbols(np.arange(98) % 8, 8).tobytes()
_FENCE = re.compile(r"^```\w*\n(.*?)^```", flags=re.S | re.M)


def _blocks() -> list[str]:
    return _FENCE.findall(DOC)


def _hex(text: str) -> bytes:
    lines = [re.sub(r"^([0-9a-f]{4}: |K_\w+ = )", "", line) for line in text.strip().splitlines()]
    return bytes.fromhex(" ".join(lines))


def _block_after(marker: str) -> bytes:
    tail = DOC[DOC.index(marker):]
    return _hex(_FENCE.search(tail).group(1))


def test_generator_and_check_value():
    assert "g(x) = 0x1C9C26B9" in DOC and f"0x{bch.GENERATOR:X}" == "0x1C9C26B9"
    assert "is `0x816FB28`" in DOC and bch.remainder(b"123456789") == 0x816FB28


def test_subkeys():
    root = Cipher(algorithms.AES(bytes(range(16))), modes.ECB()).encryptor()
    text = _blocks()[[i for i, b in enumerate(_blocks()) if b.startswith("K_enc")][0]]
    k_enc, k_mic = (_hex(line) for line in text.strip().splitlines())
    assert k_enc == root.update(b"\x01" + bytes(15)) and k_mic == root.update(b"\x02" + bytes(15))


def test_keystream_and_mic():
    assert _block_after("Uplink keystream") == KEYS.keystream(0, 513, 37)
    mic_text = _block_after("MIC input").hex()
    assert mic_text == (bytes.fromhex("0000000201800007") + KEYS.mic(0, 513, bytes.fromhex("800007"))).hex()


def test_worked_data_frame():
    (frame,) = encode_inference(KEYS, 513, PAYLOAD, mtu=222)
    assert frame == _block_after("The DATA frame (49 bytes")
    head = read_header(frame, body_lengths(37))
    assert verify(head, KEYS, 513) and KEYS.crypt(0, 513, head.body, check_length(head, 37).start) == PAYLOAD


def test_worked_three_copies():
    (frame,) = encode_inference(KEYS, 513, PAYLOAD, copies=3)
    assert frame[:12] == _block_after("The same inference with 3 copies") and len(frame) == 73
    assert frame[:36] == frame[:12] * 3


def test_worked_reply_and_error():
    reply = encode_reply(KEYS, 513, 4, 0.93, 0.0123)
    assert reply == _block_after("The reply \"label 4")
    assert read_answer(reply, KEYS, {513: 513}).label == 4
    assert "`04 ed 4c`" in DOC and "`1e c2 1e 41`" in DOC
    assert KEYS.mic(1, 513, bytes.fromhex("900007cec6cd")) == bytes.fromhex("1ec21e41")
    error = encode_error(KEYS, 513, ErrorCode.BUSY, 5)
    assert error == _block_after("An ERROR BUSY")
    answer = read_answer(error, KEYS, {513: 513})
    assert (answer.kind, answer.code, answer.detail) == (Kind.ERROR, ErrorCode.BUSY, 5)


def test_worked_fragments_with_truth():
    frames = encode_inference(KEYS, 514, PAYLOAD, mtu=40, truth=2)
    text = _blocks()[[i for i, b in enumerate(_blocks()) if b.startswith("83 00 07 20 20 10")][0]]
    assert frames == [bytes.fromhex(line) for line in text.strip().splitlines()]


def test_documented_packing_example():
    assert pack_symbols(np.arange(8), 8).tobytes() == bytes.fromhex("05adec")

"""The worked example in docs/PROTOCOL.md is what the reference implementation produces."""
import re
from pathlib import Path

import numpy as np

from codec.wire.frame import encode_inference, encode_reply, parse_frame, pilot_sequence
from codec.wire.packing import pack_symbols

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()


def _hex_block(index: int) -> bytes:
    block = re.findall(r"```\n(.*?)```", DOC, flags=re.S)[index]
    lines = [re.sub(r"^[0-9a-f]{4}: ", "", line) for line in block.strip().splitlines()]
    return bytes.fromhex(" ".join(lines))


def test_worked_data_frame():
    payload = pack_symbols(np.arange(98) % 8, 8).tobytes()
    (frame,) = encode_inference(payload, 294, bytes.fromhex("1234abcd"), 7, 513, mtu=222, pilot_len=4)
    assert frame == _hex_block(0)
    assert parse_frame(frame).seq == 513


def test_worked_reply_frame():
    assert encode_reply(bytes.fromhex("1234abcd"), 7, 513, 4, 0.93, 0.0123) == _hex_block(1)


def test_documented_pn9_pilots():
    listed = re.search(r"bits packed MSB first\): `(.*?)`", DOC, flags=re.S).group(1)
    assert pilot_sequence(32) == bytes.fromhex(listed.replace("\n", " "))


def test_documented_packing_example():
    assert pack_symbols(np.arange(8), 8).tobytes() == bytes.fromhex("05adec")

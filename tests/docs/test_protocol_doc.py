"""Every worked example and test vector in docs/PROTOCOL.md is what the reference implementation
produces, and parses back (a C firmware is written against these bytes)."""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

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
from snn.errors import FrameError

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


def _json_block(fmt: str) -> str:
    (text,) = [b for b in _blocks("json") if json.loads(b)["format"] == fmt]
    return text


def test_documented_keys_file_loads(tmp_path):
    from codec.wire.keys import load_keys
    path = tmp_path / "keys.json"
    path.write_text(_json_block("snn-keys"))
    path.chmod(0o600)
    keys = load_keys(path)
    assert keys[7].key == KEY and keys[7].fingerprint == FP


def test_documented_packing_example():
    assert pack_symbols(np.arange(8), 8).tobytes() == bytes.fromhex("05adec")


# --- v2.1 -----------------------------------------------------------------------------------------

from codec.wire import control  # noqa: E402
from codec.wire.cobs import cobs_frame  # noqa: E402
from codec.wire.keys import key_id, read_device_state  # noqa: E402
from codec.wire.replay import MAX_GAP, ReplayWindow  # noqa: E402

NONCE = bytes.fromhex("0102030405")
START = 16898


def _block_after(label: str) -> bytes:
    """The hex bytes of the first ``` block after the text `label`."""
    at = DOC.index(label)
    body = re.search(r"^```\n(.*?)^```", DOC[at:], flags=re.S | re.M).group(1)
    return bytes.fromhex(" ".join(re.sub(r"^[0-9a-f]{4}: ", "", line) for line in body.strip().splitlines()))


def _mic_after(message: bytes) -> bytes:
    """The MIC the text gives right after the backticked MIC input `message`."""
    flat = DOC.replace("\n", " ")
    rest = flat[flat.index("`" + " ".join(f"{b:02x}" for b in message) + "`"):]
    return bytes.fromhex(re.search(r"→ MIC `([0-9a-f ]+)`", rest).group(1))


def test_resync_exchange_vectors():
    assert control.offer_for(513) == (control.ResyncStatus.OK, START) and START == 513 + MAX_GAP + 1
    ctx = dict(key=KEY, device_id=7, fingerprint=FP, nonce=NONCE)
    resync = control.encode_resync(**ctx)
    assert resync == _block_after("RESYNC: MIC input")
    assert _hex_after("RESYNC: MIC input") == control.up_mic_message(0, 7, NONCE, FP, 1)
    offer = control.encode_offer(start=START, **ctx)
    assert offer == _block_after("OFFER (start 16,898, status 0)")
    confirm = control.encode_confirm(start=START, **ctx)
    assert confirm == _block_after("CONFIRM (start 16,898)")
    ack = control.encode_ack(start=START, **ctx)
    assert ack == _block_after("ACK (start 16,898, status 0)")
    for label, message in [("OFFER (start 16,898, status 0): MIC input",
                            control.down_mic_message(2, 7, NONCE, START, 0, FP, 1)),
                           ("CONFIRM (start 16,898): MIC input", control.up_mic_message(1, 7, NONCE, FP, 1, START)),
                           ("ACK (start 16,898, status 0): MIC input",
                            control.down_mic_message(3, 7, NONCE, START, 0, FP, 1))]:
        assert _hex_after(label) == message, label
        assert mic(KEY, message) == _mic_after(message), label
    assert mic(KEY, control.up_mic_message(0, 7, NONCE, FP, 1)) == _mic_after(control.up_mic_message(0, 7, NONCE, FP, 1))
    # and they parse back, each side with what it knows
    up = control.parse_control_up(resync, lambda dev: [Peer()], lambda dev: [])
    assert (up.kind, up.device_id, up.nonce) == (control.ControlKind.RESYNC, 7, NONCE)
    up = control.parse_control_up(confirm, lambda dev: [Peer()], lambda dev: [NONCE])
    assert (up.kind, up.start) == (control.ControlKind.CONFIRM, START)
    down = control.parse_control_down(offer, key=KEY, device_id=7, fingerprint=FP, nonce=NONCE)
    assert (down.kind, down.start, down.status) == (control.ControlKind.OFFER, START, 0)
    assert control.parse_control_down(ack, key=KEY, device_id=7, fingerprint=FP, nonce=NONCE).kind == \
        control.ControlKind.ACK


def test_documented_state_files_are_what_the_code_reads_and_writes(tmp_path):
    from codec.wire.edge_state import load_edge_state
    doc_state = json.loads(_json_block("snn-device-state"))
    assert set(doc_state) == {"format", "version", "key", "next", "limit"}
    assert f'"key": "{key_id(KEY)}", "next": 16898,\n"limit": 33281' in DOC
    assert doc_state["next"] == START and doc_state["limit"] == START - 1 + MAX_GAP
    path = tmp_path / "k.dev7.state"
    path.write_text(json.dumps(doc_state))
    got = read_device_state(path)
    assert (got.next, got.limit) == (doc_state["next"], doc_state["limit"])
    edge = tmp_path / "keys.edge-state"
    edge.write_text(_json_block("snn-edge-state"))
    state = load_edge_state(edge)
    assert state.devices[7].highest == 513 and state.devices[9].unknown


def test_long_counter_and_copies_vectors():
    (long,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=START, mtu=222,
                               long_counter=True)
    assert long == _block_after("**DATA, long counter 16,898") and len(long) == 51
    (three,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=START + 1, mtu=222, copies=3)
    assert three == _block_after("**DATA, counter 16,899, 3 copies") and len(three) == 73
    (five,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=START + 2, mtu=222, copies=5)
    assert five == _block_after("**DATA, counter 16,900, 5 copies") and len(five) == 97
    for frame, counter in ((long, START), (three, START + 1), (five, START + 2)):
        window = ReplayWindow.restored(START - 1)
        got = parse_data(frame, lambda dev: [Peer()], lambda dev, low, window=window: window.full_counter(low))
        assert got.counter == counter and got.data == PAYLOAD
    reply = encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=START + 1, label=4, confidence=0.93,
                         ber=0.0123, copies=3)
    assert reply == _block_after("**REPLY to counter 16,899 with 3 copies")
    assert parse_reply(reply, key=KEY, device_id=7, fingerprint=FP, full_counter=lambda low: START + 1).label == 4
    for label, counter, hdr in (("51 bytes.** MIC input", START, 0x89), ("73 bytes.** MIC input", START + 1, 0x83),
                                ("97 bytes.** MIC input", START + 2, 0x85)):
        message = bytes([0, 0, 7]) + counter.to_bytes(4, "big") + bytes([hdr, 0]) + FP
        assert _hex_after(label) == message, label
        assert mic(KEY, message) == _mic_after(message)


def test_bch_decode_with_errors_vector():
    block = int.from_bytes(bytes.fromhex("00070201 35b1e379 8e19c8ed"), "big")
    received = _hex_after("(bit i counted from the last bit sent, i = 0):")
    assert received == (block ^ sum(1 << i for i in (3, 40, 77, 95))).to_bytes(12, "big")
    assert f"Its CRC-28 is `0x{bch.remainder(received):07x}`" in DOC
    word = int.from_bytes(received, "big")
    synd = [0]
    for j in range(1, 9):
        acc = 0
        for i in range(96):
            if word >> i & 1:
                acc ^= bch.EXP[(i * j) % 127]
        synd.append(acc)
    assert _hex_after("Syndromes S_1..S_8 =") == bytes(synd[1:])
    lam = bch._berlekamp_massey(synd)
    assert "Λ(x) = " + " + ".join(f"`{c:02x}`" + ("" if d == 0 else "·x" if d == 1 else f"·x^{d}")
                                  for d, c in enumerate(lam)) in DOC.replace("\n", " ")
    assert bch.decode(word, 96) == (block, 4)
    assert bch.decode(word ^ (1 << 60), 96) is None


def test_cobs_vectors():
    reply = encode_reply(key=KEY, device_id=7, fingerprint=FP, counter=513, label=4, confidence=0.93, ber=0.0123)
    assert cobs_frame(reply) == _hex_after("then the delimiter):")
    (data,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=513, mtu=222)
    assert cobs_frame(data) == _block_after("Of the first DATA example (49 bytes")


def test_counter_reconstruction_table():
    at = DOC.index("**Counter reconstruction**")
    rows = re.findall(r"^\| (−1 \(new\)|\d+) \| `([0-9a-f]{4})` \| (\d+) \| (\w+) \|$", DOC[at:], flags=re.M)
    assert len(rows) >= 12
    for top, low, counter, verdict in rows:
        window = ReplayWindow(-1 if top.startswith("−") else int(top))
        if window.top >= 0:
            window.bits = 1
        got = window.full_counter(int(low, 16))
        assert got == int(counter) and (window.verdict(got) or "new") == verdict, (top, low)


def test_integrity_mode_vector():
    (frame,) = encode_inference(PAYLOAD, key=KEY, device_id=7, fingerprint=FP, counter=513, mtu=222, integrity=True)
    assert frame == _block_after("**DATA in payload-integrity mode**")
    assert frame[12:] == _hex_block(0)[12:] and frame[4:8] != _hex_block(0)[4:8]
    message = bytes.fromhex("00000700000201810012 34abcd".replace(" ", "")) + frame[12:]
    assert mic(KEY, message) == frame[4:8]
    secure = Peer()
    secure.integrity = True
    assert parse_data(frame, lambda dev: [secure], lambda dev, low: low).data == PAYLOAD
    tampered = frame[:20] + bytes([frame[20] ^ 1]) + frame[21:]
    with pytest.raises(FrameError) as exc:
        parse_data(tampered, lambda dev: [secure], lambda dev, low: low)
    assert exc.value.reason == "auth"

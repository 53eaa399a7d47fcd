"""The firmware's protocol v2 (proto_v2.c: BCH(127,99) header block, AES-CTR payload, AES-CMAC
MIC, long counter, fragments with truth, authenticated replies), built with the host gcc and
checked byte for byte against the worked examples of docs/PROTOCOL.md v2."""
import ctypes
import subprocess


from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

DOC_DATA = bytes.fromhex(
    "00070201 35b1e379 8e19c8ed 4f6bf018 79b1eaf8 a89f1987 14f4a366 bb2e6426"
    "525a5b83 17b95d39 5d1982de 4db43c12 8b".replace(" ", ""))
DOC_FRAG0 = bytes.fromhex("000702 03 01e66a7ba593cb4392cadd c7221a9adae0675d1ffccdb536034 5b90d".replace(" ", ""))
DOC_FRAG1 = bytes.fromhex("00070203 11b9eebe 91945 9ccd8adc4f1c2ac7c7b8c388c74df7cfa3b38b381fad155".replace(" ", ""))
DOC_REPLY = bytes.fromhex("0201cf83c1c7dc8a25a5895fdf")
DOC_BUSY = bytes.fromhex("0201c86e408194c72ebce1e8a3")
PAYLOAD = bytes.fromhex("05adec" * 12 + "04")


def _lib(tmp_path, mtu: int):
    gcc = need("gcc")
    (tmp_path / "snn_config.h").write_text(
        "#define SNN_DEVICE_ID 7u\n#define SNN_MTU %du\n#define SNN_COPIES 1u\n"
        "#define SNN_KEY_BYTES {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15}\n" % mtu)
    (tmp_path / "snn_model.h").write_text(
        "#define SNN_MODEL_FINGERPRINT 0x1234ABCDu\n#define SNN_MODEL_N_SYMBOLS 98u\n"
        "#define SNN_MODEL_BITS_PER_SYMBOL 3u\n")
    out = tmp_path / f"libv2_{mtu}.so"
    subprocess.run([gcc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{tmp_path}",
                    f"-I{FIRMWARE_DIR}", "-o", str(out), *[str(FIRMWARE_DIR / f) for f in
                                                            ("proto_v2.c", "aes.c", "cmac.c")]], check=True)
    lib = ctypes.CDLL(str(out))
    lib.snn_proto_init()
    return lib


def _codeword(fields: bytes, vk: int) -> bytes:
    """fields + version/kind nibble + their BCH(127,99) parity (the spec's CRC-28, g = 0x1c9c26b9)."""
    info = (int.from_bytes(fields, "big") << 4) | vk
    nbits = 8 * len(fields) + 4
    r = info << 28
    for bit in range(nbits + 27, 27, -1):
        if r >> bit & 1:
            r ^= 0x1C9C26B9 << (bit - 28)
    return ((info << 28) | r).to_bytes((nbits + 28) // 8, "big")


class Reply(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint8), ("label", ctypes.c_uint8), ("confidence", ctypes.c_uint8),
                ("ber", ctypes.c_uint16), ("retry_ms", ctypes.c_uint16)]


def _transmit(lib, counter, attempt, truth=0xFF):
    frames = []
    EMIT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
    cb = EMIT(lambda p, n: frames.append(ctypes.string_at(p, n)))
    if counter is not None:
        lib.snn_proto_set_counter(ctypes.c_uint32(counter))
    scratch = ctypes.create_string_buffer(1024)
    lib.snn_proto_transmit(ctypes.c_uint16(0), attempt, PAYLOAD, ctypes.c_size_t(37), ctypes.c_uint16(294),
                           ctypes.c_uint8(truth), 1, 0, scratch, cb)
    return frames


def test_data_frame_and_reply_equal_the_worked_examples(tmp_path):
    lib = _lib(tmp_path, 222)
    first = _transmit(lib, 500, 0)           # the first transmission after start: long counter
    assert len(first) == 1 and len(first[0]) == 14 + 37 and first[0][2:6] == (500).to_bytes(4, "big")
    frames = _transmit(lib, 513, 0)          # then the short form
    assert frames == [DOC_DATA]
    r = Reply()
    assert lib.snn_proto_parse(DOC_REPLY, ctypes.c_size_t(13), ctypes.byref(r)) == 1
    assert (r.kind, r.label, r.confidence, r.ber) == (1, 4, 237, 132)
    assert lib.snn_proto_parse(DOC_REPLY, ctypes.c_size_t(13), ctypes.byref(r)) == 0   # one answer per inference
    _transmit(lib, 513, 0)
    assert lib.snn_proto_parse(DOC_BUSY, ctypes.c_size_t(13), ctypes.byref(r)) == 1
    assert (r.kind, r.label, r.retry_ms) == (2, 3, 50)
    _transmit(lib, 513, 0)
    assert _codeword(DOC_REPLY[:9], 0xA) == DOC_REPLY
    forged = _codeword(bytes([0x02, 0x01, 0xCF ^ 1]) + DOC_REPLY[3:9], 0xA)   # another answer, valid block
    assert forged != DOC_REPLY
    assert lib.snn_proto_parse(bytes(forged), ctypes.c_size_t(13), ctypes.byref(r)) == -1


def test_resend_takes_a_new_long_counter_and_late_answers_count(tmp_path):
    lib = _lib(tmp_path, 222)
    _transmit(lib, 510, 0)
    _transmit(lib, 513, 0)
    resend = _transmit(lib, None, 1)
    assert resend[0][2:6] == (514).to_bytes(4, "big") and len(resend[0]) == 14 + 37
    r = Reply()   # the answer to the first transmission (counter 513) still completes the inference
    assert lib.snn_proto_parse(DOC_REPLY, ctypes.c_size_t(13), ctypes.byref(r)) == 1 and r.label == 4


def test_fragments_with_truth_equal_the_worked_example(tmp_path):
    lib = _lib(tmp_path, 51)
    _transmit(lib, 100, 0)
    frames = _transmit(lib, 515, 0, truth=3)
    assert frames == [DOC_FRAG0, DOC_FRAG1]


def test_reply_block_with_up_to_4_wrong_bits_is_repaired(tmp_path):
    import random
    lib = _lib(tmp_path, 222)
    rng = random.Random(5)
    r = Reply()
    for flips in (1, 2, 3, 4):
        for _ in range(25):
            _transmit(lib, 513, 0)
            bad = bytearray(DOC_REPLY)
            for bit in rng.sample(range(104), flips):
                bad[bit // 8] ^= 0x80 >> (bit % 8)
            assert lib.snn_proto_parse(bytes(bad), ctypes.c_size_t(13), ctypes.byref(r)) == 1, (flips, bad.hex())
            assert (r.label, r.confidence, r.ber) == (4, 237, 132)
    refused = 0
    for _ in range(50):      # 6 wrong bits: beyond t = 4, found uncorrectable or caught by the MIC
        _transmit(lib, 513, 0)
        bad = bytearray(DOC_REPLY)
        for bit in rng.sample(range(104), 6):
            bad[bit // 8] ^= 0x80 >> (bit % 8)
        refused += lib.snn_proto_parse(bytes(bad), ctypes.c_size_t(13), ctypes.byref(r)) == -1
    assert refused == 50


# docs/PROTOCOL.md §9, "Resynchronisation of device 7": nonce 01..05, start 16,898
DOC_RESYNC = bytes.fromhex("00070102030405be6c2f6d812925c4")
DOC_OFFER = bytes.fromhex("000042020000005a7749a6aae4191d")
DOC_CONFIRM = bytes.fromhex("00070000420200b02c69ba9b6335b9")
DOC_ACK = bytes.fromhex("000042020000008adc7288b27dddd2")
NONCE = bytes(range(1, 6))


class Control(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint8), ("status", ctypes.c_uint8), ("start", ctypes.c_uint32)]


def test_resync_exchange_equals_the_spec_vectors(tmp_path):
    lib = _lib(tmp_path, 222)
    out = ctypes.create_string_buffer(80)
    n = lib.snn_proto_resync_frame(out, NONCE, 1)
    assert out.raw[:n] == DOC_RESYNC
    n = lib.snn_proto_confirm_frame(out, NONCE, ctypes.c_uint32(16898), 1)
    assert out.raw[:n] == DOC_CONFIRM
    c = Control()
    assert lib.snn_proto_parse_control(DOC_OFFER, ctypes.c_size_t(15), NONCE, ctypes.byref(c)) == 1
    assert (c.kind, c.status, c.start) == (2, 0, 16898)
    assert lib.snn_proto_parse_control(DOC_ACK, ctypes.c_size_t(15), NONCE, ctypes.byref(c)) == 1
    assert (c.kind, c.start) == (3, 16898)
    # another nonce's OFFER, a RESYNC echoed back, a reply-length frame: refused / not control
    assert lib.snn_proto_parse_control(DOC_OFFER, ctypes.c_size_t(15), bytes(5), ctypes.byref(c)) == -1
    assert lib.snn_proto_parse_control(DOC_RESYNC, ctypes.c_size_t(15), NONCE, ctypes.byref(c)) == -1
    assert lib.snn_proto_parse_control(DOC_REPLY, ctypes.c_size_t(13), NONCE, ctypes.byref(c)) == 0


def test_resync_frames_interoperate_with_the_reference(tmp_path):
    """3 and 5 copies, other nonces and starts, and damaged copies: the C frames parse with
    codec.wire.control, and the reference's OFFER/ACK parse in the C."""
    import random

    from codec.wire import control as C

    lib = _lib(tmp_path, 222)
    key, fp = bytes(range(16)), bytes.fromhex("1234abcd")

    class Peer:
        pass
    Peer.key, Peer.fingerprint, Peer.payload_bytes = key, fp, 37
    peers = lambda dev: [Peer()] if dev == 7 else []  # noqa: E731
    rng = random.Random(3)
    out, c = ctypes.create_string_buffer(80), Control()
    for copies in (1, 3, 5):
        for _ in range(5):
            nonce, start = rng.randbytes(5), rng.randrange(1 << 32)
            n = lib.snn_proto_resync_frame(out, nonce, copies)
            f = C.parse_control_up(out.raw[:n], peers, lambda dev: None)
            assert f.kind == C.ControlKind.RESYNC and f.nonce == nonce and f.copies == copies
            n = lib.snn_proto_confirm_frame(out, nonce, ctypes.c_uint32(start), copies)
            f = C.parse_control_up(out.raw[:n], peers, lambda dev, nonce=nonce: [nonce])
            assert f.kind == C.ControlKind.CONFIRM and f.start == start
            status = rng.choice([0, 1, 2])
            for enc, kind in ((C.encode_offer, 2), (C.encode_ack, 3)):
                frame = bytearray(enc(key=key, device_id=7, fingerprint=fp, nonce=nonce, start=start, status=status,
                                      copies=copies))
                for bit in rng.sample(range(120), 3):          # 3 wrong bits in the first copy
                    frame[bit // 8] ^= 0x80 >> (bit % 8)
                assert lib.snn_proto_parse_control(bytes(frame), ctypes.c_size_t(len(frame)), nonce, ctypes.byref(c)) == 1
                assert (c.kind, c.status, c.start) == (kind, status, start)


def test_key_check_depends_on_the_key(tmp_path):
    a = _lib(tmp_path, 222).snn_proto_key_check()
    (tmp_path / "b").mkdir()
    b_dir = tmp_path / "b"
    gcc = need("gcc")
    (b_dir / "snn_config.h").write_text(
        "#define SNN_DEVICE_ID 7u\n#define SNN_MTU 222u\n#define SNN_COPIES 1u\n"
        "#define SNN_KEY_BYTES {1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15}\n")
    (b_dir / "snn_model.h").write_text((tmp_path / "snn_model.h").read_text())
    out = b_dir / "lib.so"
    subprocess.run([gcc, "-O2", "-std=c99", "-shared", "-fPIC", f"-I{b_dir}", f"-I{FIRMWARE_DIR}", "-o", str(out),
                    *[str(FIRMWARE_DIR / f) for f in ("proto_v2.c", "aes.c", "cmac.c")]], check=True)
    lib_b = ctypes.CDLL(str(out))
    lib_b.snn_proto_init()
    assert a != lib_b.snn_proto_key_check()


def _doc_block(label: str, nth: int = 0) -> bytes:
    """The hex bytes of the `nth` ``` block after `label` in docs/PROTOCOL.md (the §9 vectors v2.1
    added), read from the spec itself as an independent implementer would."""
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    rest = doc[doc.index(label):]
    body = re.findall(r"^```\n(.*?)^```", rest, flags=re.S | re.M)[nth]
    return bytes.fromhex(" ".join(re.sub(r"^[0-9a-f]{4}: ", "", line) for line in body.strip().splitlines()))


def test_the_v21_vectors_fragmented_long_counter_error_resync_no_state_three_copies(tmp_path):
    """§9: DATA with long counter 16,901 at MTU 40 (two fragments, 15-byte blocks), ERROR RESYNC to
    counter 40,000, an OFFER with status NO_STATE, a RESYNC with 3 copies: the C equals each."""
    lib = _lib(tmp_path, 40)
    frames = _transmit(lib, 16901, 0)                 # the first transmission after start: long counter
    label = "**DATA, long counter 16,901, one copy, MTU 40"
    assert frames == [_doc_block(label, 0), _doc_block(label, 1)]
    lib = _lib(tmp_path, 222)
    _transmit(lib, 40000, 0)
    r = Reply()
    err = _doc_block("**ERROR RESYNC to counter 40,000")
    assert lib.snn_proto_parse(err, ctypes.c_size_t(len(err)), ctypes.byref(r)) == 1
    assert (r.kind, r.label) == (2, 6)                # ERROR, code 6 RESYNC (§5.2)
    nonce = bytes.fromhex("0a0b0c0d0e")
    c = Control()
    offer = _doc_block("**OFFER with status 1 NO_STATE")
    assert lib.snn_proto_parse_control(offer, ctypes.c_size_t(15), nonce, ctypes.byref(c)) == 1
    assert (c.kind, c.status, c.start) == (2, 1, 0)
    out = ctypes.create_string_buffer(80)
    n = lib.snn_proto_resync_frame(out, nonce, 3)
    assert out.raw[:n] == _doc_block("**RESYNC with 3 copies")

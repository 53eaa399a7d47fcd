"""The firmware's hand-written C (framing, packing, COBS, AES-128, AES-CMAC), built with the host
gcc, against the Python reference (codec.wire) and published test vectors."""
import ctypes
import subprocess

import numpy as np
import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

SOURCES = ["frame.c", "pack.c", "cobs.c", "aes.c", "cmac.c"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    gcc = need("gcc")
    out = tmp_path_factory.mktemp("fwc") / "libfw.so"
    subprocess.run([gcc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(out),
                    *[str(FIRMWARE_DIR / s) for s in SOURCES]], check=True)
    return ctypes.CDLL(str(out))


def _buf(data: bytes | int):
    return ctypes.create_string_buffer(data if isinstance(data, bytes) else b"\0" * data,
                                       len(data) if isinstance(data, bytes) else data)


def c_data_frame(lib, payload, bits, fp, dev, seq, idx, count, pilots, truth):
    out = _buf(512)
    pl = _buf(bytes(payload))
    n = lib.snn_frame_data(out, _buf(fp), ctypes.c_uint16(dev), ctypes.c_uint16(seq), idx, count,
                           ctypes.c_uint16(bits), pilots, ctypes.c_uint8(truth), pl, ctypes.c_size_t(len(payload)))
    return out.raw[:n]


@pytest.mark.xfail(reason="the C firmware still speaks wire v1; wire v2 (docs/PROTOCOL.md, issue 13) is being implemented in C on branch fw: drop this mark when it lands", run=False)
def test_data_frame_equals_protocol_worked_example_and_reference(lib):
    from codec.wire.frame import encode_inference
    from codec.wire.packing import pack_symbols

    symbols = np.arange(98) % 8
    payload = pack_symbols(symbols, 8).tobytes()
    frame = c_data_frame(lib, payload, 294, bytes.fromhex("1234abcd"), 7, 513, 0, 1, 4, 0xFF)
    doc = bytes.fromhex("a7100012 34abcd00 07020100 01268004 ffbd4b30 b9091686 45deb93d 99804fff".replace(" ", ""))
    assert frame[:32] == doc
    assert frame == encode_inference(payload, 294, bytes.fromhex("1234abcd"), 7, 513, mtu=222, pilot_len=4)[0]
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 120))
        pay = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        fp, dev, seq = rng.integers(0, 256, 4, dtype=np.uint8).tobytes(), int(rng.integers(0, 65536)), int(rng.integers(0, 65536))
        pilots, truth = int(rng.integers(0, 33)), int(rng.integers(0, 256))
        ref = encode_inference(pay, n * 8, fp, dev, seq, mtu=1400, pilot_len=pilots,
                               truth=None if truth == 255 else truth)[0]
        assert c_data_frame(lib, pay, n * 8, fp, dev, seq, 0, 1, pilots, truth) == ref


@pytest.mark.xfail(reason="the C firmware still speaks wire v1; wire v2 (docs/PROTOCOL.md, issue 13) is being implemented in C on branch fw: drop this mark when it lands", run=False)
def test_reply_parse_matches_reference(lib):
    from codec.wire.frame import ErrorCode, encode_error, encode_reply

    class Reply(ctypes.Structure):
        _fields_ = [("kind", ctypes.c_uint8), ("label", ctypes.c_uint8), ("confidence", ctypes.c_uint8),
                    ("ber_e5", ctypes.c_uint16)]

    fp = bytes.fromhex("e727eef6")
    frame = encode_reply(fp, 3, 77, label=6, confidence=0.5, ber=0.0123)
    r = Reply()
    assert lib.snn_frame_parse_reply(_buf(frame), ctypes.c_size_t(len(frame)), _buf(fp), 3, 77, ctypes.byref(r)) == 1
    assert (r.kind, r.label, r.confidence, r.ber_e5) == (1, 6, 128, 1230)
    assert lib.snn_frame_parse_reply(_buf(frame), ctypes.c_size_t(len(frame)), _buf(fp), 3, 78, ctypes.byref(r)) == 0
    bad = bytearray(frame)
    bad[31] ^= 0x10   # the label byte: the body CRC fails, a label arrives right or not at all
    assert lib.snn_frame_parse_reply(_buf(bytes(bad)), ctypes.c_size_t(len(bad)), _buf(fp), 3, 77, ctypes.byref(r)) == -1
    err = encode_error(fp, 3, 77, ErrorCode.UNKNOWN_CODEC, "no such codec")
    assert lib.snn_frame_parse_reply(_buf(err), ctypes.c_size_t(len(err)), _buf(fp), 3, 77, ctypes.byref(r)) == 1
    assert (r.kind, r.label) == (2, int(ErrorCode.UNKNOWN_CODEC))


def test_packing_and_cobs_match_reference(lib):
    from codec.wire.cobs import cobs_decode, cobs_encode
    from codec.wire.packing import pack_symbols

    rng = np.random.default_rng(2)
    for levels in (2, 3, 8, 16, 200, 256):
        sym = rng.integers(0, levels, 37, dtype=np.uint8)
        out = _buf(64)
        bits = (levels - 1).bit_length()
        n = lib.snn_pack_symbols(_buf(sym.tobytes()), ctypes.c_size_t(len(sym)), bits, 1, out)
        assert out.raw[:n] == pack_symbols(sym, levels).tobytes()
    for data in (b"", b"\0", b"\0\0", bytes(range(256)) * 3, bytes(300), b"\x11" * 254, b"\x11" * 253 + b"\0"):
        out = _buf(len(data) + len(data) // 254 + 2)
        n = lib.snn_cobs_encode(_buf(data), ctypes.c_size_t(len(data)), out)
        assert out.raw[:n] == cobs_encode(data)
        if data:
            enc = _buf(out.raw[:n])
            m = lib.snn_cobs_decode(enc, ctypes.c_size_t(n))
            assert enc.raw[:m] == cobs_decode(out.raw[:n]) == data
    assert lib.snn_cobs_decode(_buf(b"\x05ab"), ctypes.c_size_t(3)) == -1


def _aes(lib, key: bytes):
    ctx = _buf(176)
    lib.snn_aes128_init(ctx, _buf(key))
    return ctx


def test_aes128_fips197_and_ctr_sp800_38a(lib):
    ctx = _aes(lib, bytes(range(16)))
    out = _buf(16)
    lib.snn_aes128_encrypt(ctx, _buf(bytes.fromhex("00112233445566778899aabbccddeeff")), out)
    assert out.raw == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    ctx = _aes(lib, bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))
    pt = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                       "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
    ct = bytes.fromhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
                       "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee")
    ctr = _buf(bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
    out = _buf(64)
    lib.snn_aes128_ctr(ctx, ctr, _buf(pt), out, ctypes.c_size_t(64))
    assert out.raw == ct
    ctr = _buf(bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
    out = _buf(37)   # a payload that is not a whole number of blocks: a prefix of the keystream
    lib.snn_aes128_ctr(ctx, ctr, _buf(pt[:37]), out, ctypes.c_size_t(37))
    assert out.raw == ct[:37]


@pytest.mark.parametrize("n, tag", [
    (0, "bb1d6929e95937287fa37d129b756746"), (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"), (64, "51f0bebf7e3b9d92fc49741779363cfe")])
def test_aes_cmac_rfc4493(lib, n, tag):
    ctx = _aes(lib, bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")[:n]
    out = _buf(16)
    lib.snn_aes_cmac(ctx, _buf(msg) if msg else _buf(1), ctypes.c_size_t(n), out)
    assert out.raw.hex() == tag

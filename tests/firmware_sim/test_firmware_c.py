"""The firmware's hand-written C (packing, COBS, AES-128, AES-CTR, AES-CMAC), built with the host
gcc, against the Python reference (codec.wire) and published test vectors. The protocol frames
are checked in test_proto_v2_c.py."""
import ctypes
import subprocess

import numpy as np
import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

SOURCES = ["pack.c", "cobs.c", "aes.c", "cmac.c"]


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

"""The v2 frame's cryptography: AES-128-CTR keystream and a 32-bit truncated AES-CMAC MIC.

Why these two (docs/PROTOCOL.md §4): CTR XORs a keystream into the payload, so a bit the
channel flips in the ciphertext flips exactly that bit of the plaintext and the codec's error
tolerance is untouched; CMAC (RFC 4493, NIST SP 800-38B) is the MAC LoRaWAN uses and needs only
the AES block an MCU already has. The AES block cipher is `cryptography`'s (OpenSSL), or OpenSSL's
own through the optional C module (codec/wire/_native.c: the same modes in one C call each,
tested equal); nothing here is hand-written AES. For speed (a frame's MIC and keystream cost ~3 µs instead of ~25 µs of
per-call object set-up) both modes run on one cached AES-ECB context per key: CTR is AES of the
counter blocks, and CMAC is RFC 4493's few XORs around AES; `tests/codec/wire/test_crypto.py`
checks both against `cryptography`'s own CTR and CMAC and RFC 4493's test vectors.

Counter block i of a keystream (16 bytes)::

    direction (1: 0x00 uplink, 0x01 downlink) | device id (2) | frame counter (4) | 0 (7) | i (2)

A (key, direction, device, counter) never repeats (docs/PROTOCOL.md §4.3), so no keystream
block is ever used twice. Payload byte j is XORed with keystream byte j: fragments of one
inference use disjoint parts of the same keystream.
"""
from __future__ import annotations

import struct
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

UPLINK, DOWNLINK = 0, 1
KEY_BYTES = 16
MIC_BYTES = 4
ZERO_KEY = bytes(KEY_BYTES)       # --insecure: every device uses it (docs/PROTOCOL.md §4.5)
_BLOCK0 = struct.Struct(">BHI7xH")


def counter_block(direction: int, device_id: int, counter: int, index: int = 0) -> bytes:
    """Counter block `index` of the keystream for one frame (the AES-CTR input)."""
    return _BLOCK0.pack(direction, device_id, counter, index)


_R128 = 0x87


def _double(block: int) -> int:
    """Multiplication by x in GF(2^128) (RFC 4493 subkey generation)."""
    block <<= 1
    return (block ^ _R128) & ((1 << 128) - 1) if block >> 128 else block


@lru_cache(maxsize=4096)
def _context(key: bytes):
    """(AES-ECB encrypt function, CMAC subkeys K1, K2) of a key, made once."""
    if len(key) != KEY_BYTES:
        raise ValueError("an AES-128 key is 16 bytes")
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update
    k1 = _double(int.from_bytes(ecb(bytes(16)), "big"))
    return ecb, k1, _double(k1)


_INDEX_HI = bytes(i >> 8 for i in range(1 << 16))    # the block index bytes, for slice assignment
_INDEX_LO = bytes(i & 0xFF for i in range(1 << 16))


def keystream(key: bytes, direction: int, device_id: int, counter: int, offset: int, n: int) -> bytes:
    """Keystream bytes [offset, offset + n) for one (direction, device, counter)."""
    start, skip = divmod(offset, 16)
    count = -(-(skip + n) // 16)
    if start + count > 1 << 16:
        raise ValueError("a keystream covers at most 2^16 blocks (1 MiB)")
    blocks = bytearray(_BLOCK0.pack(direction, device_id, counter, 0) * count)
    blocks[14::16] = _INDEX_HI[start:start + count]
    blocks[15::16] = _INDEX_LO[start:start + count]
    stream = _context(key)[0](blocks)
    return stream[skip:skip + n] if skip or len(stream) != n else stream


def xor_keystream(key: bytes, direction: int, device_id: int, counter: int, offset: int, data: bytes) -> bytes:
    """Encrypt or decrypt (the same operation) `data` placed at byte `offset` of the payload."""
    if not data:
        return b""
    ks = keystream(key, direction, device_id, counter, offset, len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(ks, "big")).to_bytes(len(data), "big")


def cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC(key, message), RFC 4493."""
    ecb, k1, k2 = _context(key)
    n = max(1, -(-len(message) // 16))
    last = message[16 * (n - 1):]
    if len(last) == 16:
        last = int.from_bytes(last, "big") ^ k1
    else:
        last = int.from_bytes(last + b"\x80" + bytes(15 - len(last)), "big") ^ k2
    state = 0
    for i in range(n - 1):
        state = int.from_bytes(ecb((state ^ int.from_bytes(message[16 * i:16 * i + 16], "big")).to_bytes(16, "big")),
                               "big")
    return ecb((state ^ last).to_bytes(16, "big"))


def mic(key: bytes, message: bytes) -> bytes:
    """The first 4 bytes of AES-CMAC(key, message)."""
    if len(message) < 16:   # every uplink MIC: one padded block (the hot path, inlined)
        ecb, _, k2 = _context(key)
        last = int.from_bytes(message + b"\x80" + bytes(15 - len(message)), "big") ^ k2
        return ecb(last.to_bytes(16, "big"))[:MIC_BYTES]
    return cmac(key, message)[:MIC_BYTES]


# --- the C fast path (codec/wire/_native.c built against OpenSSL): the same AES, fewer calls ---

try:
    from codec.wire._native import AesKey as _AesKey
except ImportError:   # not built, or built without OpenSSL's headers: the code above runs
    _AesKey = None

mic_py, cmac_py, xor_keystream_py = mic, cmac, xor_keystream    # the reference, for tests

if _AesKey is not None:
    @lru_cache(maxsize=4096)
    def _native_key(key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError("an AES-128 key is 16 bytes")
        return _AesKey(key)

    def cmac(key: bytes, message: bytes) -> bytes:  # noqa: F811 - the same function, in C
        """AES-CMAC(key, message), RFC 4493 (OpenSSL's AES, one C call)."""
        return _native_key(key).cmac(message)

    def mic(key: bytes, message: bytes) -> bytes:  # noqa: F811
        """The first 4 bytes of AES-CMAC(key, message)."""
        return _native_key(key).cmac(message)[:MIC_BYTES]

    def xor_keystream(key: bytes, direction: int, device_id: int, counter: int, offset: int,  # noqa: F811
                      data: bytes) -> bytes:
        """Encrypt or decrypt `data` placed at byte `offset` of the payload (one C call)."""
        if not 0 <= counter <= 0xFFFFFFFF or not 0 <= device_id <= 0xFFFF:
            raise ValueError("device id is 16 bits and the frame counter 32 bits")
        return _native_key(key).xor_keystream(direction, device_id, counter, offset, data)

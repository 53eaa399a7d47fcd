"""The v2 frame's cryptography: AES-128-CTR keystream and a 32-bit truncated AES-CMAC MIC.

Why these two (docs/PROTOCOL.md §4): CTR XORs a keystream into the payload, so a bit the
channel flips in the ciphertext flips exactly that bit of the plaintext and the codec's error
tolerance is untouched; CMAC (RFC 4493, NIST SP 800-38B) is the MAC LoRaWAN uses and needs only
the AES block an MCU already has. Both come from `cryptography` (OpenSSL); nothing here is
hand-written AES.

Counter block i of a keystream (16 bytes)::

    direction (1: 0x00 uplink, 0x01 downlink) | device id (2) | frame counter (4) | 0 (7) | i (2)

A (key, direction, device, counter) never repeats (docs/PROTOCOL.md §4.3), so no keystream
block is ever used twice. Payload byte j is XORed with keystream byte j: fragments of one
inference use disjoint parts of the same keystream.
"""
from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

UPLINK, DOWNLINK = 0, 1
KEY_BYTES = 16
MIC_BYTES = 4
ZERO_KEY = bytes(KEY_BYTES)       # --insecure: every device uses it (docs/PROTOCOL.md §4.5)
_BLOCK0 = struct.Struct(">BHI7xH")


def counter_block(direction: int, device_id: int, counter: int, index: int = 0) -> bytes:
    """Counter block `index` of the keystream for one frame (the AES-CTR input)."""
    return _BLOCK0.pack(direction, device_id, counter, index)


def keystream(key: bytes, direction: int, device_id: int, counter: int, offset: int, n: int) -> bytes:
    """Keystream bytes [offset, offset + n) for one (direction, device, counter)."""
    start, skip = divmod(offset, 16)
    enc = Cipher(algorithms.AES(key), modes.CTR(counter_block(direction, device_id, counter, start))).encryptor()
    return enc.update(bytes(skip + n))[skip:]


def xor_keystream(key: bytes, direction: int, device_id: int, counter: int, offset: int, data: bytes) -> bytes:
    """Encrypt or decrypt (the same operation) `data` placed at byte `offset` of the payload."""
    if not data:
        return b""
    ks = keystream(key, direction, device_id, counter, offset, len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(ks, "big")).to_bytes(len(data), "big")


def mic(key: bytes, message: bytes) -> bytes:
    """The first 4 bytes of AES-CMAC(key, message)."""
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return c.finalize()[:MIC_BYTES]

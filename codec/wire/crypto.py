"""The v2 frame's cryptography: per-device AES-128 keys, AES-CTR for payloads, AES-CMAC MICs.

Why these: AES-CTR is a stream cipher, so a bit the link flips in the ciphertext flips exactly
that bit of the plaintext and the codec's error tolerance is untouched; AES-CMAC (RFC 4493)
truncated to 32 bits is LoRaWAN's MIC; both need only an AES block encryption, which every
MCU has in hardware or in a small C file. Two subkeys are derived from the provisioned key so
that the cipher and the MAC never share a key (LoRaWAN separates them the same way):

    K_enc = AES_K(01 00 .. 00)        K_mic = AES_K(02 00 .. 00)

Keystream of one (direction, device, 32-bit counter): block i = AES_Kenc(dir ‖ device id (2) ‖
counter (4) ‖ 00 × 7 ‖ i (2)), i = 0, 1, … — big-endian, i.e. AES-CTR with that initial counter
block. The counter never repeats under a key (a device persists it), and the direction byte
keeps uplink and downlink keystreams apart, so no keystream is ever reused.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

UPLINK = 0
DOWNLINK = 1
KEY_BYTES = 16
_SUFFIX = [bytes(7) + i.to_bytes(2, "big") for i in range(4096)]   # 00 x 7 ‖ block index
MIC_BYTES = 4
INSECURE_KEY = bytes(KEY_BYTES)   # the public all-zero key of `--insecure` (no security at all)


class DeviceKeys:
    """The derived keys of one device, with the AES objects built once (not per frame)."""

    __slots__ = ("device_id", "key", "_ecb", "_cmac")

    def __init__(self, device_id: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a device key is {KEY_BYTES} bytes, not {len(key)}")
        if not 0 <= device_id <= 0xFFFF:
            raise ValueError(f"device id {device_id} outside 0..65535")
        self.device_id = device_id
        self.key = bytes(key)
        root = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()
        k_enc = root.update(b"\x01" + bytes(15))
        k_mic = root.update(b"\x02" + bytes(15))
        self._ecb = Cipher(algorithms.AES(k_enc), modes.ECB()).encryptor()
        self._cmac = cmac.CMAC(algorithms.AES(k_mic))

    def keystream(self, direction: int, counter: int, nbytes: int) -> bytes:
        """The first `nbytes` keystream bytes of (direction, this device, counter)."""
        prefix = bytes([direction]) + self.device_id.to_bytes(2, "big") + (counter & 0xFFFFFFFF).to_bytes(4, "big")
        count = -(-nbytes // 16)
        suffixes = _SUFFIX[:count] if count <= len(_SUFFIX) else [bytes(7) + i.to_bytes(2, "big") for i in range(count)]
        return self._ecb.update(b"".join([prefix + s for s in suffixes]))[:nbytes]

    def crypt(self, direction: int, counter: int, data: bytes, offset: int = 0) -> bytes:
        """data XOR keystream[offset : offset + len(data)] (encryption and decryption alike)."""
        if not data:
            return b""
        stream = self.keystream(direction, counter, offset + len(data))[offset:]
        return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")

    def mic(self, direction: int, counter: int, fields: bytes) -> bytes:
        """The 4-byte MIC: AES-CMAC_Kmic(dir ‖ counter (4) ‖ fields), first 4 bytes."""
        mac = self._cmac.copy()
        mac.update(bytes([direction]) + (counter & 0xFFFFFFFF).to_bytes(4, "big") + fields)
        return mac.finalize()[:MIC_BYTES]

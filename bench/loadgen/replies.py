"""Replies off a load generator's socket, and the one reply matcher.

A reply echoes the low 16 bits of its frame's counter. Load generators number their frames
0, 1, 2, ... with counters first, first+1, ... (`frames.FrameMaker`, the fleet's schedule), so
`ReplyMatcher.frame_of` turns those bits back into the frame: the newest one made with them
(replies come within 65,536 frames). Loopback only: no BCH decoding or MIC check of replies.
"""
from __future__ import annotations

import socket

from codec.wire.crypto import DOWNLINK, xor_keystream
from codec.wire.frame import REPLY_BLOCK_BYTES


def classify(data: bytes) -> tuple[int, int] | None:
    """(kind, counter low 16 bits) of a reply, cheaply (the fields sit at fixed places of a clean
    first block); None for what is not a reply."""
    if len(data) < REPLY_BLOCK_BYTES or len(data) % REPLY_BLOCK_BYTES:
        return None
    return (data[9] >> 4) & 3, int.from_bytes(data[:2], "big")


def waiting_replies(sock: socket.socket):
    """Every datagram waiting on non-blocking `sock` that looks like a reply: (kind, low, data)."""
    recv = sock.recv
    while True:
        try:
            data = recv(2048)
        except BlockingIOError:
            return
        info = classify(data)
        if info is not None:
            yield info[0], info[1], data


def drain(sock: socket.socket) -> int:
    """Read and count every datagram waiting on non-blocking `sock`."""
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


class ReplyMatcher:
    """Frame j carries counter `first + j`; a reply's low counter bits name the newest frame
    made with them."""

    def __init__(self, first: int) -> None:
        self.first = first

    def frame_of(self, low: int, made: int) -> int:
        """The index of the frame a reply with counter bits `low` answers, given `made` frames
        numbered so far; -1 when it names none of them."""
        j = (made - 1) - ((((self.first + made - 1) & 0xFFFF) - low) & 0xFFFF)
        return j if 0 <= j < made else -1


def error_code(data: bytes, key: bytes, device: int, counter: int) -> int:
    """The code of an ERROR reply to (device, counter), decrypted with the device's key."""
    return xor_keystream(key, DOWNLINK, device, counter, 0, data[2:5])[0]

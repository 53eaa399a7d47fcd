"""Byte accounting for the ways bytes cross a bit-flipping link, every byte on air counted.

All transports cut a message into fragments that fit the link MTU; fragment sizes follow
PROTOCOL.md §2.2 (K = ceil(n / room) equal chunks, the last one shorter). Each fragment carries
the 17 header fields of a SemanticNN frame (magic, version, flags, fingerprint, device, sequence,
fragment, length, SNR, pilots, truth: `HEADER_FIELDS`); how they are protected is the transport's
business. The channel is
always `channel.bit_errors` (`ErrorModel.flip_positions`): the packets of one round are laid back to
back on one bit stream, so i.i.d. and Gilbert–Elliott bursts hit them exactly as they would on
the link, and retransmissions are later rounds of the same stream.

- ARQ (`arq`): 17 header bytes + data + CRC-32 per fragment. A fragment with any flipped bit fails its
  CRC and is resent, up to `cap` attempts; fragments go in order and an inference is abandoned
  (failed) when one fragment hits the cap (later fragments are then not sent). Undetected errors
  (2^-32) are ignored. Bytes = every attempt of every fragment sent.
- Reed–Solomon FEC (`rs`): each fragment (17 header bytes + data) is one RS codeword over GF(256)
  (`reedsolo`) of n = min(MTU, 255) bytes at the rate of the named code: RS(255, k) on links whose
  MTU allows 255-byte frames, else n bytes with round(n (255 - k) / 255) parity bytes
  (`rs_parity`); the last fragment is shortened. No retransmission. A codeword with at
  most t = nsym // 2 byte errors decodes (bounded-distance decoding; `tests/bench` checks this
  rule against `reedsolo` itself); with more, the inference fails (a decoder error, or a
  miscorrection that the frame's own checks reject).
- Header-only protection (`header_only`, SemanticNN's own v2 frames and the "no CRC, no ARQ"
  baseline, which uses them too): the 13-byte header block of `codec.wire.frame` (14 when
  fragmented: b0, device id, counter, [fragment], MIC, BCH parity), sent 1, 3 or 5 times, is
  accepted when, after the bitwise majority of its copies, at most 4 of its bits are wrong
  (bounded-distance BCH decoding; beyond that the block is dropped, and a miscorrection fails the
  MIC; `tests/bench` checks this rule against `codec.wire.frame.read_header`); otherwise the
  frame is dropped and the device resends it (timeout, a new counter) up to `cap` attempts. The
  body arrives with its bit errors. The header's flipped bits (counted against the corrected
  block, every copy) are the edge's BER measurement: `header_flips` / `header_bits`.

Only the uplink is counted (the device's bytes); replies and ACKs are not, for any method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.wire import bch
from codec.wire.frame import block_bytes, plan_frames

HEADER_FIELDS = 17            # header fields of the bit-level baselines (as v1 SemanticNN frames had)
FRAME_HEADER = block_bytes()  # 13: SemanticNN's v2 header block, one copy, one fragment
FRAME_HEADER_T = bch.T        # bit errors the BCH code of the header block corrects
CRC32_BYTES = 4
DEFAULT_CAP = 8
RS_RATES = {"rs223": 32, "rs191": 64, "rs127": 128}  # name -> parity bytes nsym of RS(255, 255 - nsym)


@dataclass
class Transfer:
    """Per item: bytes on air, whether it was delivered, packets sent and (header_only) bodies."""

    bytes_on_air: np.ndarray
    delivered: np.ndarray
    packets: np.ndarray
    received: list | None = None
    erased: list | None = None
    pilot_flips: np.ndarray | None = None
    pilot_bits: np.ndarray | None = None
    header_flips: np.ndarray | None = None
    header_bits: np.ndarray | None = None
    header_loss: float = 0.0      # fraction of transmitted fragments whose header was lost

    def summary(self) -> dict:
        return {"bytes_on_air": float(self.bytes_on_air.mean()),
                "delivered": float(self.delivered.mean()),
                "packets": float(self.packets.mean())}


def fragment_plan(lengths: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """(fragment count K (N,), chunk size (N,)) for messages of `lengths` bytes, `room` per fragment."""
    if room <= 0:
        raise ValueError(f"no room for data in a fragment ({room} bytes)")
    lengths = np.asarray(lengths, dtype=np.int64)
    k = np.maximum(1, -(-lengths // room))
    chunk = -(-lengths // k)
    return k, chunk


def fragment_length(lengths: np.ndarray, chunk: np.ndarray, index: int) -> np.ndarray:
    """Data bytes of fragment `index` of each message (0 past its end)."""
    return np.clip(lengths - index * chunk, 0, chunk)


def flips_per_packet(model, rng: np.random.Generator, sizes: np.ndarray,
                     header: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Send packets of `sizes` bytes back to back through `model`.

    Returns (bit flips per packet, byte errors per packet, byte errors within the first `header`
    bytes of each packet).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pos = np.asarray(model.flip_positions(int(starts[-1]) * 8, rng), dtype=np.int64)
    per_byte = np.bincount(pos // 8, minlength=int(starts[-1]))
    c_flips = np.concatenate([[0], np.cumsum(per_byte)])
    c_bytes = np.concatenate([[0], np.cumsum(per_byte > 0)])
    first = starts[:-1]
    head_end = np.minimum(first + header, starts[1:])
    return (c_flips[starts[1:]] - c_flips[first], c_bytes[starts[1:]] - c_bytes[first],
            c_bytes[head_end] - c_bytes[first])


def arq(model, rng: np.random.Generator, lengths, mtu: int, cap: int = DEFAULT_CAP,
        header: int = HEADER_FIELDS) -> Transfer:
    """CRC-32 + stop-and-wait ARQ per fragment, capped at `cap` attempts (see the module doc)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    k, chunk = fragment_plan(lengths, mtu - header - CRC32_BYTES)
    n = len(lengths)
    sent = np.zeros(n, dtype=np.int64)
    packets = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for index in range(int(k.max()) if n else 0):
        pending = alive & (index < k)
        size = header + CRC32_BYTES + fragment_length(lengths, chunk, index)
        for _ in range(cap):
            idx = np.flatnonzero(pending)
            if idx.size == 0:
                break
            flips, _, _ = flips_per_packet(model, rng, size[idx])
            sent[idx] += size[idx]
            packets[idx] += 1
            pending[idx[flips == 0]] = False
        alive &= ~pending
    return Transfer(sent.astype(np.float64), alive, packets)


def rs_parity(nsym: int, mtu: int) -> tuple[int, int]:
    """(codeword bytes n, parity bytes) of an RS code of the rate of RS(255, 255 - nsym) on this MTU."""
    n_cw = min(int(mtu), 255)
    return n_cw, max(2, int(round(nsym * n_cw / 255)))


def rs(model, rng: np.random.Generator, lengths, mtu: int, nsym: int, header: int = HEADER_FIELDS) -> Transfer:
    """Reed–Solomon FEC, one codeword per fragment (rate kept on small MTUs), no retransmission."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_cw, nsym = rs_parity(nsym, mtu)
    k, chunk = fragment_plan(lengths, n_cw - nsym - header)
    n = len(lengths)
    sent = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    t = nsym // 2
    owners, sizes = [], []
    for index in range(int(k.max()) if n else 0):
        idx = np.flatnonzero(index < k)
        owners.append(idx)
        sizes.append(header + nsym + fragment_length(lengths, chunk, index)[idx])
    if owners:
        owner = np.concatenate(owners)
        size = np.concatenate(sizes)
        _, byte_err, _ = flips_per_packet(model, rng, size)
        np.add.at(sent, owner, size)
        bad = owner[byte_err > t]
        ok[bad] = False
    return Transfer(sent.astype(np.float64), ok, k.copy())


def _plan(n: int, mtu: int, copies: int) -> tuple[int, int]:
    """(copies, fragments) as a device plans them (`plan_frames`); for baselines whose messages
    need more than the frame's 16 fragments (e.g. 8-bit features), as many as they need."""
    try:
        return plan_frames(n, mtu, copies)
    except ValueError:
        return copies, -(-n // (mtu - copies * block_bytes(True)))


def header_only(model, rng: np.random.Generator, messages: list[bytes], mtu: int, cap: int = DEFAULT_CAP,
                t: int = FRAME_HEADER_T, extra: int = 0, copies: int = 1) -> Transfer:
    """v2 frames: resend a fragment while its header block is lost (<= cap), keep body errors.

    `copies` (1, 3, 5): the header block is sent that many times and the receiver takes the
    bitwise majority; the block survives with at most `t` wrong bits after the vote. When the MTU
    cannot hold the copies, fewer are used (`plan_frames`, as a device does).

    `extra` bytes per fragment (pilots, for the comparison in `bench/ber_estimate.py`) travel
    between the header and the data and count as bytes on air; `pilot_flips[i]` counts their
    flipped bits in the accepted attempts of item i and `pilot_bits[i]` how many arrived;
    `header_flips` / `header_bits` the same for the header copies. `received[i]` is the message
    as it arrived (bit errors included) and `erased[i]` marks the bytes of fragments that hit the
    cap (zeros in `received`); `delivered` is False only when no fragment of the item arrived.
    """
    lengths = np.array([len(m) for m in messages], dtype=np.int64)
    n = len(messages)
    plans = {int(m): _plan(int(m), mtu - extra, copies) for m in set(lengths.tolist())}
    c_used = np.array([plans[int(m)][0] for m in lengths], dtype=np.int64)
    k = np.array([plans[int(m)][1] for m in lengths], dtype=np.int64)
    block = np.where(k > 1, block_bytes(True), block_bytes(False)).astype(np.int64)
    span = block * c_used                      # header bytes on the air per fragment
    chunk = -(-lengths // k)
    sent = np.zeros(n, dtype=np.int64)
    packets = np.zeros(n, dtype=np.int64)
    arrived = np.zeros(n, dtype=np.int64)
    pilot_flips = np.zeros(n, dtype=np.int64)
    header_flips = np.zeros(n, dtype=np.int64)
    header_bits = np.zeros(n, dtype=np.int64)
    flat = np.frombuffer(b"".join(messages), dtype=np.uint8).copy()
    erased = np.zeros(flat.size, dtype=bool)
    offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    width = int(block.max()) * 8 if n else 0
    for index in range(int(k.max()) if n else 0):
        pending = index < k
        dlen = fragment_length(lengths, chunk, index)
        size = span + extra + dlen
        for _ in range(cap):
            idx = np.flatnonzero(pending)
            if idx.size == 0:
                break
            starts = np.concatenate([[0], np.cumsum(size[idx])])
            pos = np.asarray(model.flip_positions(int(starts[-1]) * 8, rng), dtype=np.int64)
            byte = pos // 8
            pkt = np.searchsorted(starts, byte, side="right") - 1
            off = byte - starts[pkt]
            head_span = span[idx][pkt]
            in_head = off < head_span
            blk = block[idx][pkt]
            # wrong bits of the voted block: a bit is wrong when most of its copies flipped
            key = pkt[in_head] * width + (off[in_head] % blk[in_head]) * 8 + pos[in_head] % 8
            hits = np.bincount(key, minlength=idx.size * width).reshape(idx.size, width)
            good = (hits > c_used[idx][:, None] // 2).sum(axis=1) <= t
            flips_head = np.bincount(pkt[in_head], minlength=idx.size)
            sent[idx] += size[idx]
            packets[idx] += 1
            ok_flip = good[pkt]
            pil = ok_flip & ~in_head & (off < head_span + extra)
            np.add.at(pilot_flips, idx[pkt[pil]], 1)
            header_flips[idx[good]] += flips_head[good]
            header_bits[idx[good]] += 8 * span[idx[good]]
            body = ok_flip & (off >= head_span + extra)
            owner = idx[pkt[body]]
            where = offset[owner] + index * chunk[owner] + off[body] - head_span[body] - extra
            np.bitwise_xor.at(flat, where, (0x80 >> (pos[body] % 8)).astype(np.uint8))
            arrived[idx[good]] += 1
            pending[idx[good]] = False
        for i in np.flatnonzero(pending):  # fragments that hit the cap: their bytes are erased
            a = offset[i] + index * chunk[i]
            erased[a:a + dlen[i]] = True
            flat[a:a + dlen[i]] = 0
    delivered = arrived > 0
    out = [flat[o:o + m].tobytes() if d else None for o, m, d in zip(offset, lengths, delivered)]
    tr = Transfer(sent.astype(np.float64), delivered, packets, out)
    tr.erased = [erased[o:o + m] for o, m in zip(offset, lengths)]
    tr.pilot_flips = pilot_flips
    tr.pilot_bits = arrived * extra * 8
    tr.header_flips = header_flips
    tr.header_bits = header_bits
    tr.header_loss = float(1 - arrived.sum() / packets.sum()) if packets.sum() else 0.0
    return tr

"""Byte accounting for the ways bytes cross a bit-flipping link, every byte on air counted.

All transports cut a message into fragments that fit the link MTU; fragment sizes follow
PROTOCOL.md §2.2 (K = ceil(n / room) equal chunks, the last one shorter). Each fragment carries
the 17 header bytes of a protocol v1 SemanticNN frame (magic, version, flags, fingerprint, device,
sequence, fragment, length, SNR, pilots, truth: `HEADER_FIELDS`; v2 frames are `FRAME_HEADER`); how they are protected is the transport's
business. The channel is
always `channel.bit_errors` (`ErrorModel.packet_flip_positions`): the packets of one round are laid
back to back on one bit stream, so i.i.d. and Gilbert–Elliott bursts hit them exactly as they
would on the link, and retransmissions are later rounds of the same stream; a packet-level model
(the bit-true LoRa PHY, `channel.lora_phy`) codes and damages each packet (fragment) on its own.

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
  baseline, which uses them too): each fragment is `copies` BCH-protected header blocks of
  `codec.wire.frame` (12 bytes, 13 when fragmented: device id, counter, MIC, version/kind and 28
  parity bits) followed by the data; a block is accepted when, after the bitwise majority of
  its copies, at most 4 of its bits are wrong (BCH t = 4; a miscorrection beyond t is caught by
  the MIC, so it is a loss too; `tests/bench` checks this rule against
  `codec.wire.frame.parse_data`). The edge decodes an inference with the fragments whose header
  arrived (the others erased); only when none arrived does the device resend the whole
  inference (timeout, a new counter, the long 32-bit counter: blocks 2 bytes longer), up to
  `cap` transmissions. The body arrives with its bit errors; the bits the header decoding
  corrected are the edge's BER estimate (`header_flips` / `header_bits`).

Only the uplink is counted (the device's bytes); replies and ACKs are not, for any method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.wire import bch
from codec.wire.copies import cheapest_plan
from codec.wire.frame import BLOCK_BYTES, FRAG_BLOCK_BYTES, LONG_EXTRA, TRUTH_BYTES

HEADER_FIELDS = 17            # v1 header fields a baseline frame carries (the bit-level baselines)
FRAME_HEADER = BLOCK_BYTES    # 12: a v2 header block (device, counter, MIC, version/kind, BCH parity)
FRAME_HEADER_T = bch.T        # bit errors a v2 header block corrects
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
    header_flips: np.ndarray | None = None   # header bits found wrong in accepted frames
    header_bits: np.ndarray | None = None    # header bits received in accepted frames

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


def _packet_flips(model, rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """Flipped bit positions over packets of `sizes` bytes sent back to back (any object with
    `flip_positions` is a bit-stream model; `packet_flip_positions` codes packets one by one)."""
    each = getattr(model, "packet_flip_positions", None)
    if each is not None:
        return np.asarray(each(sizes, rng), dtype=np.int64)
    return np.asarray(model.flip_positions(int(np.sum(sizes)) * 8, rng), dtype=np.int64)


def flips_per_packet(model, rng: np.random.Generator, sizes: np.ndarray,
                     header: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Send packets of `sizes` bytes back to back through `model`.

    Returns (bit flips per packet, byte errors per packet, byte errors within the first `header`
    bytes of each packet).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pos = _packet_flips(model, rng, sizes)
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


def _plan(length: int, mtu: int, copies: int, extra: int, long_counter: bool) -> int:
    """Fragments of a v2 inference (`codec.wire.frame.frame_plan`'s rule, without its 16-fragment
    limit, so that large baseline messages can be costed too)."""
    grow = LONG_EXTRA if long_counter else 0
    if copies * (BLOCK_BYTES + grow) + length + extra <= mtu:
        return 1
    room = mtu - copies * (FRAG_BLOCK_BYTES + grow) - extra
    if room <= 0:
        raise ValueError(f"no room for data in a fragment at MTU {mtu} with {copies} header copies")
    return max(2, -(-length // room))


def _auto_plan(length: int, mtu: int, ber: float, truth: bool, long_counter: bool, extra: int) -> tuple[int, int]:
    """(copies, fragments) of the cost rule; beyond its 16 fragments (a large baseline message),
    one copy in as few fragments as fit."""
    try:
        plan = cheapest_plan(length, mtu, ber, truth, long_counter)
        return plan.copies, plan.fragments
    except ValueError:
        return 1, _plan(length, mtu, 1, extra, long_counter)


def header_only(model, rng: np.random.Generator, messages: list[bytes], mtu: int, cap: int = DEFAULT_CAP,
                t: int = FRAME_HEADER_T, copies: int = 1, truth: bool = False,
                plan_ber: float | None = None) -> Transfer:
    """SemanticNN v2 frames: BCH-protected header blocks, body errors kept (see the module doc).

    `copies` (1, 3, 5): the header block is sent that many times and the receiver takes the
    bitwise majority before the BCH decoder. `plan_ber`: instead, copies and fragments of each
    transmission as a `--header-copies auto` device plans them at that BER
    (`codec.wire.copies.cheapest_plan`; on an i.i.d. channel the device's own link estimate agrees). `received[i]` is the message as it arrived (bit
    errors included) and `erased[i]` marks the bytes of fragments whose header was lost (zeros
    in `received`); `delivered` is False only when no fragment of the item arrived in `cap`
    transmissions. `truth` adds the 3 test-mode truth bytes to the last fragment.
    """
    lengths = np.array([len(m) for m in messages], dtype=np.int64)
    n = len(messages)
    sent = np.zeros(n, dtype=np.int64)
    packets = np.zeros(n, dtype=np.int64)
    header_flips = np.zeros(n, dtype=np.int64)
    header_bits = np.zeros(n, dtype=np.int64)
    flat = np.frombuffer(b"".join(messages), dtype=np.uint8).copy()
    clean = flat.copy()
    erased = np.ones(flat.size, dtype=bool)
    offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    extra = TRUTH_BYTES if truth else 0
    pending = np.ones(n, dtype=bool)            # no fragment of the item has arrived yet
    for attempt in range(cap):
        idx_all = np.flatnonzero(pending)
        if idx_all.size == 0:
            break
        long_counter = attempt > 0                 # resends carry the whole counter
        if plan_ber is None:
            cps = np.full(idx_all.size, copies)
            k = np.array([_plan(int(m), mtu, copies, extra, long_counter) for m in lengths[idx_all]])
        else:
            plans = {int(m): _auto_plan(int(m), mtu, plan_ber, truth, long_counter, extra)
                     for m in np.unique(lengths[idx_all])}
            cps = np.array([plans[int(m)][0] for m in lengths[idx_all]])
            k = np.array([plans[int(m)][1] for m in lengths[idx_all]])
        chunk = -(-lengths[idx_all] // k)
        block = np.where(k > 1, FRAG_BLOCK_BYTES, BLOCK_BYTES) + (LONG_EXTRA if long_counter else 0)
        arrived_any = np.zeros(idx_all.size, dtype=bool)
        for index in range(int(k.max())):
            sel = np.flatnonzero(index < k)
            idx = idx_all[sel]
            dlen = np.clip(lengths[idx] - index * chunk[sel], 0, chunk[sel])
            span = block[sel] * cps[sel]
            size = span + dlen + np.where(index == k[sel] - 1, extra, 0)
            starts = np.concatenate([[0], np.cumsum(size)])
            pos = _packet_flips(model, rng, size)
            byte = pos // 8
            pkt = np.searchsorted(starts, byte, side="right") - 1
            off = byte - starts[pkt]
            in_head = off < span[pkt]
            # a header bit is wrong after the vote when more than half of its copies flipped
            hb = block[sel][pkt[in_head]]
            key = pkt[in_head] * 1024 + (off[in_head] % hb) * 8 + pos[in_head] % 8
            uniq, votes = np.unique(key, return_counts=True)
            wrong = np.bincount(uniq[votes > cps[sel][uniq // 1024] // 2] // 1024, minlength=sel.size)
            good = wrong <= t
            sent[idx] += size
            packets[idx] += 1
            flips_head = np.bincount(pkt[in_head], minlength=sel.size)
            header_flips[idx[good]] += flips_head[good]
            header_bits[idx[good]] += (span * 8)[good]
            body = good[pkt] & ~in_head & (off - span[pkt] < dlen[pkt])
            owner = idx[pkt[body]]
            where = offset[owner] + index * chunk[sel][pkt[body]] + off[body] - span[pkt[body]]
            np.bitwise_xor.at(flat, where, (0x80 >> (pos[body] % 8)).astype(np.uint8))
            for j in np.flatnonzero(good):
                a = offset[idx[j]] + index * chunk[sel][j]
                erased[a:a + dlen[j]] = False
            arrived_any[sel[good]] = True
        pending[idx_all[arrived_any]] = False
        # items that got nothing start over on their next transmission: undo any partial state
        for i in idx_all[~arrived_any]:
            flat[offset[i]:offset[i] + lengths[i]] = clean[offset[i]:offset[i] + lengths[i]]
    flat[erased] = 0
    delivered = ~pending
    out = [flat[o:o + m].tobytes() if d else None for o, m, d in zip(offset, lengths, delivered)]
    tr = Transfer(sent.astype(np.float64), delivered, packets, out)
    tr.erased = [erased[o:o + m] for o, m in zip(offset, lengths)]
    tr.header_flips = header_flips
    tr.header_bits = header_bits
    return tr

"""Byte accounting of the bit-level transports against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from bench import delivery
from bench.delivery import (
    arq,
    flips_per_packet,
    fragment_plan,
    header_only,
    rs,
    rs_parity,
)


class Scripted:
    """An error model that flips the bit positions it is given, one list per call (then none)."""

    def __init__(self, *calls):
        self.calls = [np.asarray(c, dtype=np.int64) for c in calls]

    def flip_positions(self, n_bits, rng):
        pos = self.calls.pop(0) if self.calls else np.zeros(0, dtype=np.int64)
        assert (pos < n_bits).all()
        return pos


class Always:
    """Flips the first bit of every packet of the given size, forever."""

    def __init__(self, size):
        self.size = size

    def flip_positions(self, n_bits, rng):
        return np.arange(0, n_bits, 8 * self.size)


RNG = np.random.default_rng(0)


def test_fragment_plan_follows_protocol():
    k, chunk = fragment_plan(np.array([784, 200, 201, 1]), 201)
    assert k.tolist() == [4, 1, 1, 1] and chunk.tolist() == [196, 200, 201, 1]


def test_arq_clean_link_counts_headers_and_crc():
    # 784 B at MTU 222: room 222 - 17 - 4 = 201 -> 4 fragments of 196 B, each + 21 B
    tr = arq(Scripted(), RNG, [784], 222)
    assert tr.bytes_on_air[0] == 4 * (196 + 17 + 4) == 868
    assert tr.delivered[0] and tr.packets[0] == 4


def test_arq_counts_retransmissions():
    # a flip in the first attempt of fragment 0 -> it is sent twice
    tr = arq(Scripted([5]), RNG, [784], 222)
    assert tr.bytes_on_air[0] == 868 + 217 and tr.packets[0] == 5 and tr.delivered[0]


def test_arq_cap_fails_the_inference_and_stops_sending():
    tr = arq(Always(217), RNG, [784], 222, cap=8)
    assert not tr.delivered[0]
    assert tr.bytes_on_air[0] == 8 * 217 and tr.packets[0] == 8


def test_rs_rate_is_kept_on_small_mtus():
    assert rs_parity(128, 255) == (255, 128)
    assert rs_parity(32, 222) == (222, 28)
    assert rs_parity(128, 51) == (51, 26)


def test_rs_bounded_distance_rule():
    n_cw, nsym = rs_parity(32, 222)  # 28 parity bytes -> t = 14
    size = n_cw  # a message that fills exactly one codeword: 222 - 28 - 17 = 177 B
    ok = rs(Scripted(np.arange(14) * 8), RNG, [177], 222, 32)
    assert ok.delivered[0] and ok.bytes_on_air[0] == size
    bad = rs(Scripted(np.arange(15) * 8), RNG, [177], 222, 32)
    assert not bad.delivered[0] and bad.bytes_on_air[0] == size
    # several flips inside one byte are one byte error
    same = rs(Scripted(np.arange(14 * 8)), RNG, [177], 222, 32)
    assert same.delivered[0]


def test_rs_rule_matches_reedsolo():
    reedsolo = pytest.importorskip("reedsolo")
    from channel.bit_errors import make_error_model

    nsym = 32
    codec = reedsolo.RSCodec(nsym)
    rng = np.random.default_rng(1)
    model = make_error_model("iid", 2e-2)
    agree = 0
    for _ in range(40):
        msg = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        cw = np.frombuffer(bytes(codec.encode(msg)), dtype=np.uint8)
        bad, _ = model.corrupt(cw, rng)
        errors = int((bad != cw).sum())
        try:
            decoded = bytes(codec.decode(bytearray(bad.tobytes()))[0]) == msg
        except reedsolo.ReedSolomonError:
            decoded = False
        agree += decoded == (errors <= nsym // 2)
    assert agree >= 39  # a miscorrection beyond t is possible but rare


KEY, FP = bytes(range(16)), b"\x01\x02\x03\x04"


def _parses(frame: bytes) -> bool:
    from types import SimpleNamespace

    from codec.wire.frame import parse_data
    from snn.errors import FrameError
    peer = SimpleNamespace(key=KEY, fingerprint=FP, payload_bytes=40)
    try:
        parse_data(frame, lambda dev: [peer], lambda dev, low: low)
        return True
    except FrameError:
        return False


def test_header_only_rule_matches_parse_data():
    from codec.wire.frame import encode_inference

    (frame,) = encode_inference(bytes(range(40)), key=KEY, device_id=7, fingerprint=FP, counter=9, mtu=222)
    for k, accepted in ((4, True), (5, False), (7, False)):
        bad = bytearray(frame)
        flips = [8 * i + 3 for i in range(k)]           # k header bits wrong (bytes 0..k-1, bit 3)
        for p in flips:
            bad[p // 8] ^= 0x80 >> (p % 8)
        assert _parses(bytes(bad)) == accepted
        tr = header_only(Scripted(flips), RNG, [bytes(range(40))], 222, cap=1)
        assert bool(tr.delivered[0]) == accepted
        if accepted:
            assert tr.header_flips[0] == k and tr.header_bits[0] == 96


def test_header_only_resends_with_the_long_counter_and_keeps_body_errors():
    msg = bytes(50)
    h = delivery.FRAME_HEADER
    # transmission 1: 5 header bits hit -> lost; 2 (long counter, 14-byte block): one body bit flipped
    first = [8 * i for i in range(5)]
    second = [8 * (h + 2 + 10) + 1]
    tr = header_only(Scripted(first, second), RNG, [msg], 222)
    assert tr.delivered[0] and tr.packets[0] == 2 and tr.bytes_on_air[0] == (h + 50) + (h + 2 + 50)
    got = np.frombuffer(tr.received[0], dtype=np.uint8)
    assert got[10] == 0x40 and got.sum() == 0x40


def test_header_only_cap_fails_the_inference():
    tr = header_only(Always(1), RNG, [bytes(10)], 222, cap=3, t=0)
    assert not tr.delivered[0] and tr.packets[0] == 3 and tr.received[0] is None


def test_header_only_lost_fragment_is_erased_not_resent():
    msg = bytes(range(60))
    # MTU 40: 13-byte blocks, 27 bytes of room -> 3 fragments of 20; fragment 1's header destroyed
    tr = header_only(Scripted([], [8 * i for i in range(6)], []), RNG, [msg], 40)
    assert tr.delivered[0] and tr.packets[0] == 3
    assert tr.erased[0][20:40].all() and not tr.erased[0][:20].any() and not tr.erased[0][40:].any()


def test_flips_per_packet_counts():
    flips, byte_err, head = flips_per_packet(Scripted([0, 1, 9, 80, 81]), RNG, np.array([10, 10]), header=2)
    assert flips.tolist() == [3, 2] and byte_err.tolist() == [2, 1] and head.tolist() == [2, 1]


def test_header_copies_vote_like_parse_data():
    """3 header copies: a bit flipped in 2 of 3 copies is wrong after the vote, in 1 of 3 it is not."""
    from codec.wire.frame import BLOCK_BYTES, encode_inference

    (frame,) = encode_inference(bytes(range(40)), key=KEY, device_id=7, fingerprint=FP, counter=9, mtu=400,
                                copies=3)
    for copies_hit, accepted in ((1, True), (2, False)):
        bad = bytearray(frame)
        flips = []
        for i in range(6):  # 6 wrong header bits > t = 4, if the vote keeps them
            for c in range(copies_hit):
                bad[c * BLOCK_BYTES + i] ^= 0x01
                flips.append(8 * (c * BLOCK_BYTES + i) + 7)
        assert _parses(bytes(bad)) == accepted
        tr = header_only(Scripted(sorted(flips)), RNG, [bytes(range(40))], 400, cap=1, copies=3)
        assert bool(tr.delivered[0]) == accepted


def test_lora_phy_codes_each_fragment_as_its_own_packet():
    """ARQ through the bit-true LoRa PHY: every 222-byte fragment is one radio packet, so the
    attempts per fragment follow that packet's error rate, 1 / (1 - PER)."""
    from channel.lora_phy import LoRaPhy
    phy = LoRaPhy(sf=7, snr_db=-7.0)
    tr = arq(phy, np.random.default_rng(1), np.full(400, 784), 222, cap=50)
    per = phy.measure(217, 8000, np.random.default_rng(2))["packet_error_rate"]
    attempts = tr.packets.sum() / (4 * 400)
    assert 0.02 < per < 0.5
    assert abs(attempts - 1 / (1 - per)) < 0.08 * (1 / (1 - per)), (attempts, per)


def test_header_only_auto_plans_copies_and_fragments_like_a_device():
    """plan_ber: each transmission framed by the cost rule at the BER (resends: long counter)."""
    from codec.wire.copies import cheapest_plan

    class Everything:
        def flip_positions(self, n_bits, rng):
            return np.arange(n_bits)

    msgs = [bytes(37)] * 50
    tr = header_only(Scripted(), RNG, msgs, 51, plan_ber=5e-2)
    plan = cheapest_plan(37, 51, 5e-2)
    assert tr.delivered.all() and (tr.bytes_on_air == plan.bytes).all() and (tr.packets == plan.fragments).all()
    # every header lost: the resend is planned with the long counter
    tr = header_only(Everything(), RNG, msgs[:1], 51, plan_ber=5e-2, cap=2)
    again = cheapest_plan(37, 51, 5e-2, long_counter=True)
    assert not tr.delivered[0] and tr.bytes_on_air[0] == plan.bytes + again.bytes
    assert tr.packets[0] == plan.fragments + again.fragments

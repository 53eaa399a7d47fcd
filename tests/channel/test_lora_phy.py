"""channel/lora_phy.py: the LoRa PHY chain is bit-true and invertible, its demodulator statistics
match a chirp-level FFT simulation, and its analytic BER matches what real packets suffer."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.bit_errors import make_error_model
from channel.links.lora import LoRaLink
from channel.lora_phy import (
    SEMTECH_SNR_LIMIT_DB,
    LoRaPhy,
    hamming_decode_table,
    hamming_encode_table,
    parse_cr,
    simulate_demodulator,
    symbol_outcomes,
    whitening_sequence,
)
from snn.errors import SnnError

Z999 = 3.2905


def test_whitening_sequence_is_loras():
    # the first bytes of LoRa's whitening sequence as published by the reverse-engineering work
    assert whitening_sequence()[:16].tolist() == [0xFF, 0xFE, 0xFC, 0xF8, 0xF0, 0xE1, 0xC2, 0x85,
                                                  0x0B, 0x17, 0x2F, 0x5E, 0xBC, 0x78, 0xF1, 0xE3]
    assert len(set(whitening_sequence().tolist())) == 255  # a maximal-length LFSR: every non-zero state


@pytest.mark.parametrize("cr, distance", [(1, 2), (2, 2), (3, 3), (4, 4)])
def test_hamming_codes_distance_and_decoding(cr, distance):
    codes = hamming_encode_table(cr).astype(int)
    dists = [(a ^ b).bit_count() for i, a in enumerate(codes) for b in codes[i + 1:]]
    assert min(dists) == distance
    dec = hamming_decode_table(cr)
    n = 4 + cr
    for nib, word in enumerate(codes):
        assert dec[word] == nib
        for i in range(n):
            single = int(dec[word ^ (1 << i)])
            if cr >= 3:
                assert single == nib  # 4/7 and 4/8 correct one wrong bit
            else:
                assert (single ^ nib).bit_count() <= 1  # 4/5, 4/6 only detect: at most the flipped bit
        if cr == 4:
            for i in range(n):
                for j in range(i + 1, n):
                    got = int(dec[word ^ (1 << i) ^ (1 << j)])
                    assert (got ^ nib).bit_count() <= 2  # a double error is left as received


def test_parse_cr():
    assert [parse_cr(v) for v in ("4/5", "4/8", "5", "8", 1, "3")] == [1, 4, 1, 4, 1, 3]
    for bad in ("4/9", "3/5", "x", "9", 0):
        with pytest.raises(SnnError):
            parse_cr(bad)


@settings(max_examples=80, deadline=None)
@given(sf=st.integers(7, 12), cr=st.integers(1, 4), ldro=st.booleans(), n=st.integers(0, 255),
       seed=st.integers(0, 2**32 - 1))
def test_chain_inverts_and_symbol_count_is_semtechs(sf, cr, ldro, n, seed):
    phy = LoRaPhy(sf=sf, cr=cr, ldro=ldro, snr_db=0)
    rng = np.random.default_rng(seed)
    packets = rng.integers(0, 256, (3, n), dtype=np.uint8)
    bins = phy.encode(packets)
    assert bins.min() >= 0 and bins.max() < 2 ** sf
    assert np.array_equal(phy.decode(bins, n), packets)
    link = LoRaLink(sf=sf, cr=cr, explicit_header=False, crc=False, ldro=ldro)
    assert bins.shape[1] == phy.symbols(n) == link.payload_symbols(n)


@pytest.mark.parametrize("sf, ldro", [(7, False), (9, False), (12, True)])
def test_one_bin_off_costs_at_most_one_bit_and_nothing_at_reduced_rate(sf, ldro):
    phy = LoRaPhy(sf=sf, cr=1, ldro=ldro, snr_db=0)
    rng = np.random.default_rng(sf)
    packets = rng.integers(0, 256, (40, 51), dtype=np.uint8)
    bins = phy.encode(packets)
    reduced = np.zeros(bins.shape[1], bool)
    reduced[:8] = True  # the first block is always reduced rate
    if ldro:
        reduced[:] = True
    for k in range(bins.shape[1]):
        for step in (-1, 1):
            rx = bins.copy()
            rx[:, k] = (rx[:, k] + step) % 2 ** sf
            wrong = np.unpackbits(phy.decode(rx, 51) ^ packets, axis=1).sum(axis=1)
            if reduced[k]:
                assert wrong.max() == 0, (k, step)
            else:
                assert wrong.max() <= 1, (k, step)  # Gray: one bit; CR 4/5 cannot correct it


@pytest.mark.parametrize("cr", [3, 4])
def test_any_single_wrong_symbol_is_corrected_at_cr_4_7_and_4_8(cr):
    phy = LoRaPhy(sf=8, cr=cr, snr_db=0)
    rng = np.random.default_rng(cr)
    packets = rng.integers(0, 256, (64, 40), dtype=np.uint8)
    bins = phy.encode(packets)
    for k in range(bins.shape[1]):
        rx = bins.copy()
        rx[:, k] = rng.integers(0, 256, 64)  # any value: the interleaver gives each codeword one bit of it
        assert np.array_equal(phy.decode(rx, 40), packets), k


@pytest.mark.parametrize("sf, snr, eps", [(7, -9.0, 0.0), (7, -10.5, 0.0), (8, -11.5, 0.0), (7, -8.0, 0.3),
                                          (7, -6.0, 0.5), (9, -13.5, 0.2)])
def test_outcomes_match_the_chirp_level_fft_demodulator(sf, snr, eps):
    p = np.array(symbol_outcomes(sf, snr, eps))
    assert abs(p.sum() - 1) < 1e-9 and (p >= 0).all()
    n = 12000
    err = simulate_demodulator(sf, snr, n, np.random.default_rng(int(100 * abs(snr)) + sf), offset_bins=eps)
    for got, want in (((err != 0).mean(), 1 - p[3]), ((err == 1).mean(), p[4]), ((err == -1).mean(), p[2]),
                      ((np.abs(err) > 3).mean(), p[-1])):
        half = Z999 * math.sqrt(max(want * (1 - want), 1 / n) / n) + 0.02 * want
        assert abs(got - want) <= half, (got, want)


def test_without_offset_a_wrong_bin_is_uniform():
    p = symbol_outcomes(7, -9.0, 0.0)
    per_far_bin = p[-1] / (128 - 7)
    for j in (0, 1, 2, 4, 5, 6):
        assert p[j] == pytest.approx(per_far_bin, rel=1e-3)


@pytest.mark.parametrize("sf", range(7, 13))
def test_error_rates_fall_with_snr_and_the_ideal_demodulator_meets_semtechs_limit(sf):
    limit = SEMTECH_SNR_LIMIT_DB[sf]
    sers = [LoRaPhy(sf=sf, snr_db=limit + d).symbol_error_rate for d in (-4, -2, 0, 2)]
    assert all(a > b for a, b in zip(sers, sers[1:]))
    assert sers[0] > 1e-2 and sers[2] < 1e-3  # AWGN, ideal sync: a margin over the datasheet figure


@pytest.mark.parametrize("kw", [dict(sf=7, snr_db=-9.0), dict(sf=7, snr_db=-6.5, offset_bins=0.4),
                                dict(sf=9, snr_db=-13.0, cr="4/6", offset_bins=-0.3),
                                dict(sf=12, snr_db=-21.5), dict(sf=11, snr_db=-18.5, cr="4/7", offset_bins=0.45)])
def test_expected_ber_matches_real_packets(kw):
    phy = LoRaPhy(**kw)
    got = phy.measure(51, 12000, np.random.default_rng(3))
    want = phy.expected_ber(51)
    # errors come in clusters (one symbol, several bits): allow for it
    assert abs(got["ber"] - want) <= 0.12 * want + 5e-6, (got, want)
    assert got["packet_error_rate"] > 0


def test_corrupt_reports_exact_flips_and_leaves_input_alone():
    phy = make_error_model("lora-phy", snr_db=-9.0, sf=7)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (500, 49), dtype=np.uint8)
    before = frames.copy()
    out, flipped = phy.corrupt(frames, rng)
    assert np.array_equal(frames, before)
    assert np.array_equal(np.unpackbits(out ^ frames, axis=1).sum(axis=1), flipped)
    assert flipped.sum() > 0
    one, n = phy.corrupt(frames[0], rng)
    assert one.shape == (49,) and np.ndim(n) == 0
    a = phy.corrupt(frames, np.random.default_rng(5))
    b = phy.corrupt(frames, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0])
    long, _ = phy.corrupt(np.zeros(600, np.uint8), rng)  # longer than a LoRa packet: 255-byte packets
    assert long.shape == (600,)


def test_packet_flip_positions_stay_in_their_packets():
    phy = LoRaPhy(sf=7, snr_db=-10.5)
    sizes = np.array([49, 13, 49, 30] * 200)
    pos = phy.packet_flip_positions(sizes, np.random.default_rng(0))
    assert pos.size > 0 and np.all(np.diff(pos) > 0) and pos.max() < sizes.sum() * 8
    starts = np.concatenate([[0], np.cumsum(sizes)]) * 8
    per = np.bincount(np.searchsorted(starts, pos, side="right") - 1, minlength=sizes.size)
    # each packet is coded on its own: a 13-byte packet suffers at the rate of a 13-byte packet
    for size in (13, 49):
        got = per[sizes == size].sum() / ((sizes == size).sum() * size * 8)
        assert abs(got - phy.expected_ber(size)) < 0.2 * phy.expected_ber(size)
    # a bit-stream model: one stream, as before
    iid = make_error_model("iid", 1e-2)
    assert iid.packet_flip_positions(sizes, np.random.default_rng(4)).tolist() == \
        iid.flip_positions(int(sizes.sum()) * 8, np.random.default_rng(4)).tolist()


def test_ldro_follows_semtechs_rule_and_bad_parameters_are_refused():
    assert not LoRaPhy(sf=10).low_data_rate and LoRaPhy(sf=11).low_data_rate and LoRaPhy(sf=12).low_data_rate
    assert not LoRaPhy(sf=12, bw_hz=500_000).low_data_rate and LoRaPhy(sf=12, bw_hz=250_000).low_data_rate
    for kw in (dict(sf=6), dict(sf=13), dict(cr="4/9"), dict(offset_bins=0.7), dict(snr_db=float("nan")),
               dict(bw_hz=100_000)):
        with pytest.raises(SnnError):
            LoRaPhy(**kw)
    with pytest.raises(SnnError, match="SNR"):
        make_error_model("lora-phy", sf=7)
    with pytest.raises(SnnError, match="not a BER"):
        make_error_model("lora-phy", ber=1e-2, snr_db=-5)
    assert "SF12 CR4/8" in make_error_model("lora-phy", snr_db=-20, sf=12, cr="4/8").describe()

"""channel/bit_errors.py: exact flip accounting and error statistics over 10^7 bits."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.bit_errors import (
    GilbertElliott,
    IIDModel,
    apply_flips,
    ber_from_snr,
    bernoulli_positions,
    make_error_model,
    q_function,
    snr_from_ber,
)
from snn.errors import SnnError

Z999 = 3.2905  # two-sided 99.9 % normal quantile
N_BITS = 10**7


def popcount_rows(a):
    a = np.atleast_2d(a)
    return np.unpackbits(a, axis=1).sum(axis=1).astype(np.int64)


def binomial_interval(n, p):
    half = Z999 * math.sqrt(n * p * (1 - p))
    return n * p - half, n * p + half


@pytest.mark.parametrize("ber", [1e-4, 1e-3, 1e-2, 0.1, 0.5])
def test_iid_ber_within_binomial_interval(ber):
    rng = np.random.default_rng(123)
    frames = np.zeros((N_BITS // 8 // 1250, 1250), dtype=np.uint8)
    out, flipped = make_error_model("iid", ber).corrupt(frames, rng)
    total = int(flipped.sum())
    lo, hi = binomial_interval(frames.size * 8, ber)
    assert lo <= total <= hi, (total, lo, hi)
    assert np.array_equal(popcount_rows(out), flipped)  # reports exactly what it flipped


def test_iid_flips_are_per_frame_and_independent_of_content():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, size=(4000, 100), dtype=np.uint8)
    before = frames.copy()
    out, flipped = make_error_model("iid", 1e-2).corrupt(frames, rng)
    assert np.array_equal(frames, before), "input must not be modified"
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert flipped.shape == (4000,) and flipped.dtype == np.int64
    assert np.array_equal(popcount_rows(out ^ frames), flipped)
    # per-frame counts are Binomial(800, 0.01): mean 8, variance 7.92
    assert abs(flipped.mean() - 8.0) < Z999 * math.sqrt(7.92 / 4000)
    assert abs(flipped.var() - 7.92) < 1.0


def test_one_dimensional_frame_gives_scalar_count():
    rng = np.random.default_rng(0)
    out, n = make_error_model("iid", 0.05).corrupt(np.zeros(1000, np.uint8), rng)
    assert out.shape == (1000,) and np.ndim(n) == 0
    assert int(np.unpackbits(out).sum()) == int(n)


def test_seeded_runs_repeat():
    frames = np.zeros((10, 64), np.uint8)
    for name in ("iid", "ge"):
        a = make_error_model(name, 0.05).corrupt(frames, np.random.default_rng(9))
        b = make_error_model(name, 0.05).corrupt(frames, np.random.default_rng(9))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), width=st.integers(0, 70), ber=st.sampled_from([0.0, 1e-3, 0.05, 0.3, 0.5]),
       model=st.sampled_from(["iid", "ge"]), seed=st.integers(0, 2**32 - 1))
def test_reported_flips_equal_actual_flips(n, width, ber, model, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(n, width), dtype=np.uint8)
    out, flipped = make_error_model(model, ber, 3).corrupt(frames, rng)
    assert np.array_equal(popcount_rows(out ^ frames) if width else np.zeros(n, np.int64), flipped)
    if ber == 0.0:
        assert np.array_equal(out, frames)


def test_bernoulli_positions_sorted_distinct_in_range():
    rng = np.random.default_rng(1)
    for p in (1e-5, 0.01, 0.5, 0.99):
        pos = bernoulli_positions(100_000, p, rng)
        assert pos.dtype == np.int64 and (np.diff(pos) > 0).all()
        assert pos.size == 0 or (pos[0] >= 0 and pos[-1] < 100_000)
    buf = np.zeros(2, np.uint8)
    apply_flips(buf, np.array([0, 7, 8], dtype=np.int64))  # MSB first: bit 0 is 0x80
    assert buf.tolist() == [0x81, 0x80]


def ge_flip_count_variance(n, m: GilbertElliott):
    """Asymptotic variance of the number of errors in n bits of a stationary GE chain.

    Errors are correlated through the state: Cov(e_0, e_k) = (pB - pG)^2 piG piB lam^k with
    lam = 1 - p_gb - p_bg, so Var S_n ~ n [p(1-p) + 2 (pB - pG)^2 piG piB lam / (1 - lam)].
    (A plain binomial interval would be too narrow for a bursty channel.)
    """
    p, pib = m.ber, m.pi_bad
    lam = 1.0 - m.p_gb - m.p_bg
    return n * (p * (1 - p) + 2 * (m.ber_bad - m.ber_good) ** 2 * (1 - pib) * pib * lam / (1 - lam))


@pytest.mark.parametrize("ber,burst", [(1e-3, 8), (1e-2, 8), (1e-2, 32), (0.05, 4)])
def test_ge_mean_ber_within_interval(ber, burst):
    model = make_error_model("ge", ber, burst)
    assert model.ber == pytest.approx(ber) and model.burst == pytest.approx(burst)
    rng = np.random.default_rng(2024)
    runs = []
    original = model.bad_runs
    model.bad_runs = lambda n, r: runs.append(original(n, r)) or runs[-1]
    frames = np.zeros((1000, N_BITS // 8000), np.uint8)
    out, flipped = model.corrupt(frames, rng)
    total = int(flipped.sum())
    n = frames.size * 8
    half = Z999 * math.sqrt(ge_flip_count_variance(n, model))
    assert abs(total - n * ber) <= half, (total, n * ber, half)
    # given the bad-state bits the chain visited, the flips are exactly Binomial(B, ber_bad)
    starts, lengths = runs[0]
    bad_bits = int(lengths.sum())
    lo, hi = binomial_interval(bad_bits, model.ber_bad)
    assert lo <= total <= hi
    # and every flip lies inside a bad run (good-state BER is 0)
    pos = np.flatnonzero(np.unpackbits(out.reshape(-1)))
    run = np.searchsorted(starts, pos, side="right") - 1
    assert (pos < starts[run] + lengths[run]).all()


@pytest.mark.parametrize("burst", [2, 8, 30])
def test_ge_mean_burst_length_matches(burst):
    model = make_error_model("ge", 1e-2, burst)
    starts, lengths = model.bad_runs(N_BITS, np.random.default_rng(7))
    inner = lengths[1:-1]  # the first and last runs are cut by the window
    p = 1.0 / burst
    se = math.sqrt(1 - p) / p / math.sqrt(inner.size)  # Geom(p) std / sqrt(k)
    assert abs(inner.mean() - burst) <= Z999 * se, (inner.mean(), burst, se)
    # the fraction of time in the bad state is the stationary pi_B
    assert abs(lengths.sum() / N_BITS - model.pi_bad) < 0.15 * model.pi_bad


def test_ge_state_carries_across_calls():
    """Many small frames one call at a time: same mean BER, bursts spanning frame boundaries."""
    model = make_error_model("ge", 0.02, 16)
    rng = np.random.default_rng(3)
    total, n = 0, 0
    boundary_pairs = 0
    prev_last = False
    for _ in range(20000):
        out, f = model.corrupt(np.zeros(8, np.uint8), rng)
        bits = np.unpackbits(out)
        boundary_pairs += int(prev_last and bits[0])
        prev_last = bool(bits[-1])
        total += int(f)
        n += 64
    half = Z999 * math.sqrt(ge_flip_count_variance(n, model))
    assert abs(total - n * 0.02) <= half
    # with state carried over, an error at the end of a frame is often followed by one at the
    # start of the next (P ~ ber_bad (1 - p_bg)), far above the independent rate 0.02
    assert boundary_pairs > 0.2 * (total / 64)


def test_ge_with_good_state_errors():
    model = make_error_model("ge", 0.01, 8, ber_good=1e-3, ber_bad=0.3)
    rng = np.random.default_rng(11)
    out, flipped = model.corrupt(np.zeros((100, 12500), np.uint8), rng)
    n = out.size * 8
    assert abs(int(flipped.sum()) - n * 0.01) <= Z999 * math.sqrt(ge_flip_count_variance(n, model))


def test_snr_to_ber_curves():
    assert q_function(0.0) == pytest.approx(0.5)
    # BPSK: the textbook 1e-5 at Eb/N0 = 9.59 dB
    assert ber_from_snr(9.59, "bpsk") == pytest.approx(1e-5, rel=0.05)
    assert ber_from_snr(0.0, "bpsk") == pytest.approx(0.5 * math.erfc(1.0))
    for target in (1e-2, 1e-3, 1e-5):
        assert ber_from_snr(snr_from_ber(target), "bpsk") == pytest.approx(target, rel=1e-6)
        assert ber_from_snr(snr_from_ber(target, "lora", 9), "lora", 9) == pytest.approx(target, rel=1e-6)
    # LoRa: each SF step buys ~2.5 dB; at the datasheet demodulation floors the raw BER is small
    floors = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
    for sf, snr in floors.items():
        assert ber_from_snr(snr, "lora", sf) < 1e-3
        assert ber_from_snr(snr - 6, "lora", sf) > 1e-2
    assert ber_from_snr(-10, "lora", 12) < ber_from_snr(-10, "lora", 7)
    model = make_error_model("awgn", snr_db=6.0)
    assert isinstance(model, IIDModel) and model.ber == pytest.approx(ber_from_snr(6.0))
    lora = make_error_model("lora", snr_db=-10, sf=8)
    assert lora.ber == pytest.approx(ber_from_snr(-10, "lora", 8))
    assert make_error_model("iid", snr_db=6.0).ber == pytest.approx(model.ber)


@pytest.mark.parametrize("call", [
    lambda: make_error_model("iid", 0.7),
    lambda: make_error_model("iid", -0.1),
    lambda: make_error_model("iid", "x"),
    lambda: make_error_model("nope", 0.1),
    lambda: make_error_model("ge", 0.1, 0.5),
    lambda: make_error_model("ge", 0.4, 8, ber_bad=0.3),
    lambda: make_error_model("awgn"),
    lambda: make_error_model("iid", 0.1, bogus=1),
    lambda: ber_from_snr(3, "qam"),
])
def test_bad_input_is_snn_error(call):
    with pytest.raises(SnnError):
        call()


def test_wrong_dtype_rejected():
    with pytest.raises(TypeError):
        make_error_model("iid", 0.1).corrupt(np.zeros(4, np.int32), np.random.default_rng())

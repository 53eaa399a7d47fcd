"""edge/ber.py: pooled known-bit estimate, SNR-hint prior, clamping, bounded memory."""
import math

import numpy as np

from edge.ber import BER_MAX, BER_MIN, BerEstimator, ber_from_snr_hint, clamp_ber


def test_clamp():
    assert clamp_ber(0.0) == BER_MIN and clamp_ber(0.9) == BER_MAX and clamp_ber(float("nan")) == BER_MAX
    assert clamp_ber(1e-3) == 1e-3


def test_snr_hint_is_bpsk():
    assert math.isclose(ber_from_snr_hint(0.0), 0.5 * math.erfc(1.0), rel_tol=1e-9)
    assert ber_from_snr_hint(20.0) == BER_MIN
    assert ber_from_snr_hint(-3) > ber_from_snr_hint(3)


def test_converges_to_true_ber_over_frames():
    rng = np.random.default_rng(0)
    for true in (1e-2, 5e-2, 1e-1):
        est = BerEstimator(decay=0.95)
        values = [est.update(1, int(rng.binomial(32, true)), 32) for _ in range(400)]
        assert abs(np.mean(values[100:]) / true - 1) < 0.3, (true, np.mean(values[100:]))


def test_clean_link_goes_low_and_devices_are_separate():
    est = BerEstimator()
    for _ in range(50):
        clean = est.update("a", 0, 32)
        noisy = est.update("b", 3, 32)
    assert clean < 2e-4 and 0.05 < noisy < 0.15


def test_snr_prior_without_known_bits():
    est = BerEstimator()
    assert est.update(1, 0, 0, snr_hint=-3) > 0.1
    assert est.update(2, 0, 0) == BerEstimator().default_ber


def test_bounded_devices():
    est = BerEstimator(max_devices=10)
    for dev in range(1000):
        est.update(dev, 0, 32)
    assert len(est) == 10 and est.current(999) is not None and est.current(0) is None

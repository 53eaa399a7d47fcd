"""channel/loss.py: erasure rates and loss-burst lengths."""
import math

import numpy as np
import pytest

from channel.loss import BurstLoss, IIDLoss, make_loss_model
from snn.errors import SnnError

Z999 = 3.2905


def run_lengths(mask):
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    d = np.diff(padded)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def test_iid_loss_rate():
    n, p = 200_000, 0.05
    lost = make_loss_model(p).drop(n, np.random.default_rng(1))
    assert isinstance(make_loss_model(p), IIDLoss)
    assert abs(lost.sum() - n * p) <= Z999 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p,burst", [(0.05, 4), (0.2, 10)])
def test_bursty_loss_rate_and_run_length(p, burst):
    model = make_loss_model(p, burst)
    assert isinstance(model, BurstLoss)
    rng = np.random.default_rng(2)
    # one frame per call, as the proxy does: the state must carry over between calls
    lost = np.concatenate([model.drop(1, rng) for _ in range(20_000)] + [model.drop(100_000, rng)])
    runs = run_lengths(lost)[1:-1]
    q = 1 / burst
    assert abs(runs.mean() - burst) <= Z999 * math.sqrt(1 - q) / q / math.sqrt(runs.size)
    assert abs(lost.mean() - p) < 0.15 * p


def test_bad_loss_arguments():
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(SnnError):
            make_loss_model(bad)
    with pytest.raises(SnnError):
        make_loss_model(0.1, 0.5)
    assert not make_loss_model(0.0).drop(10, np.random.default_rng()).any()

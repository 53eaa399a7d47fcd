"""Image sources and the 8-bit feature baseline."""
from __future__ import annotations

import numpy as np

from bench.accuracy import feat8_decode, feat8_encode
from bench.sources import Source


def test_sources_round_trip():
    rng = np.random.default_rng(0)
    img = (rng.random((28, 28, 1)) * 255).astype(np.uint8)
    for s in (Source("raw", "raw"), Source("png", "png")):
        assert np.array_equal(s.decode(s.encode(img), img.shape), img)
    j = Source("jpeg50", "jpeg", 50)
    data = j.encode(img)
    assert data[:2] == b"\xff\xd8" and j.decode(data, img.shape).shape == img.shape
    assert j.decode(b"garbage", img.shape) is None


def test_feat8_round_trip_within_one_step():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 4, 5, 5)).astype(np.float32)
    msgs = feat8_encode(f)
    assert len(msgs[0]) == 8 + 100
    back = feat8_decode(msgs, (4, 5, 5))
    step = (f.reshape(3, -1).max(1) - f.reshape(3, -1).min(1)) / 255
    assert (np.abs(back - f).reshape(3, -1).max(1) <= step * 0.51).all()

"""edge/history.py: one point per second from cumulative counters, bounded however long it runs."""
from dataclasses import dataclass

import numpy as np

from edge.history import History


@dataclass
class Dev:
    device_id: int
    answered: int = 0
    truth: int = 0
    correct: int = 0
    ber: float = 0.0


def test_points_are_per_second_differences():
    h = History(seconds=5, max_devices=2)
    a, b, c = Dev(1), Dev(2), Dev(3)
    h.sample(100.0, 0, np.array([]), {"auth": 3}, [a, b, c])        # the first sample sets the baseline
    a.answered, a.truth, a.correct, a.ber = 10, 10, 9, 0.01
    b.answered, b.ber = 4, 0.001
    c.answered = 1
    p = h.sample(101.0, 15, np.array([1.0, 2.0, 3.0, 100.0]), {"auth": 5, "replay": 1}, [a, b, c])
    assert p["answers"] == 15 and p["rejects"] == {"auth": 2, "replay": 1}
    assert p["p50_ms"] == 2.5 and 90 < p["p99_ms"] <= 100
    assert list(p["devices"]) == ["1", "2"]                              # the two busiest of that second
    assert p["devices"]["1"] == {"answers": 10, "ber": 0.01, "accuracy": 0.9}
    assert p["devices"]["2"]["accuracy"] is None                          # no ground truth sent
    q = h.sample(102.0, 15, np.array([]), {"auth": 5, "replay": 1}, [a, b, c])
    assert q["answers"] == 0 and q["rejects"] == {} and q["devices"] == {} and q["p50_ms"] is None


def test_memory_is_bounded_by_the_window_and_since_returns_only_newer_points():
    h = History(seconds=10, max_devices=3)
    devs = [Dev(i) for i in range(500)]
    for t in range(100):
        for d in devs:
            d.answered += 1
        h.sample(float(t), t * 500, np.ones(50), {"auth": t}, devs)
    assert len(h) == 10 and [p["t"] for p in h.points()] == [float(t) for t in range(90, 100)]
    assert all(len(p["devices"]) == 3 for p in h.points())
    assert [p["t"] for p in h.points(since=97.0)] == [98.0, 99.0]

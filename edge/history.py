"""Per-second history of the edge's figures, for the dashboard's time-series charts.

Once a second `History.sample` turns the edge's cumulative counters into one point: answers in
that second, the p50/p99 latency of the inferences answered in it, refusals by reason, and for
the busiest devices of that second their BER estimate and (test mode) accuracy. Memory is
bounded however long the edge runs and however many devices it sees: `seconds` points (10 min by
default), at most `max_devices` devices per point, and one small previous-counters entry per
device of the edge's own bounded device table (`DeviceTable`, an LRU).

`points(since)` returns the points newer than a time, so the page fetches the whole window once
and then only what is new.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


class History:
    """A ring of one-second points (module docstring)."""

    def __init__(self, seconds: int = 600, max_devices: int = 8) -> None:
        if seconds < 1 or max_devices < 0:
            raise ValueError("history needs at least one second and a non-negative device count")
        self.seconds = int(seconds)
        self.max_devices = int(max_devices)
        self._points: deque[dict] = deque(maxlen=self.seconds)
        self._answered: int | None = None
        self._rejects: dict[str, int] = {}
        self._devices: dict[int, tuple[int, int, int]] = {}   # id -> (answered, truth, correct) at the last sample

    def sample(self, now: float, answered: int, latencies_ms: np.ndarray, rejects: dict[str, int],
               devices: Iterable) -> dict:
        """Add the point for the second ending at `now` (Unix seconds).

        `answered` and `rejects` (reason -> count) are cumulative counters, `latencies_ms` the
        total latencies of the inferences answered since the last sample, `devices` objects
        with device_id, answered, truth, correct (cumulative) and ber (the current estimate)."""
        first = self._answered is None
        point: dict = {"t": round(float(now), 3),
                       "answers": 0 if first else max(0, int(answered) - self._answered)}
        self._answered = int(answered)
        lat = np.asarray(latencies_ms, dtype=np.float64)
        if lat.size:
            p50, p99 = np.percentile(lat, (50, 99))
            point["p50_ms"], point["p99_ms"] = round(float(p50), 3), round(float(p99), 3)
        else:
            point["p50_ms"] = point["p99_ms"] = None
        refused = {}
        for reason, count in rejects.items():
            delta = int(count) - self._rejects.get(reason, int(count) if first else 0)
            if delta > 0:
                refused[reason] = delta
        self._rejects = {r: int(c) for r, c in rejects.items()}
        point["rejects"] = refused
        point["devices"] = self._device_points(devices, first)
        self._points.append(point)
        return point

    def _device_points(self, devices: Iterable, first: bool) -> dict:
        seen, active = {}, []
        for d in devices:
            now = (int(d.answered), int(d.truth), int(d.correct))
            before = self._devices.get(d.device_id, now if first else (0, 0, 0))
            seen[d.device_id] = now
            answers = now[0] - before[0]
            if answers <= 0:
                continue
            truth, correct = now[1] - before[1], now[2] - before[2]
            active.append((answers, d.device_id, {
                "answers": answers, "ber": round(float(d.ber), 6),
                "accuracy": round(correct / truth, 4) if truth > 0 else None}))
        self._devices = seen            # the device table's own bound bounds this one
        active.sort(key=lambda a: (-a[0], a[1]))
        return {str(device_id): fig for _, device_id, fig in active[:self.max_devices]}

    def points(self, since: float | None = None) -> list[dict]:
        """The points newer than `since` (all when None), oldest first."""
        if since is None:
            return list(self._points)
        return [p for p in self._points if p["t"] > since]

    def __len__(self) -> int:
        return len(self._points)

"""Latency figures of a phase: p50, p99, mean and max in milliseconds."""
from __future__ import annotations

import numpy as np


def percentiles(lat_ms: list[float]) -> dict:
    """p50/p99/mean/max (ms, 3 decimals) of the latencies; None for each when there are none."""
    if not lat_ms:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    arr = np.asarray(lat_ms)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3), "max_ms": round(float(arr.max()), 3)}

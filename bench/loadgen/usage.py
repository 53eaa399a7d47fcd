"""What a process costs: CPU seconds, RSS, open files (from /proc), CPU per answered frame."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def own_cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    t = os.times()
    return t.user + t.system


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int | None:
    """Open file descriptors of a process (None when it cannot be read)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@contextmanager
def cpu_account(pid: int, out: dict, key: str = "answered"):
    """Add server and load-generator CPU microseconds per answered frame (`out[key]`) to `out`."""
    s0, c0, w0 = cpu_s(pid), own_cpu_s(), time.perf_counter()
    yield
    s1, c1, w1 = cpu_s(pid), own_cpu_s(), time.perf_counter()
    n = max(1, out.get(key, 0))
    out["server_cpu_us_per_frame"] = round(1e6 * (s1 - s0) / n, 1)
    out["loadgen_cpu_us_per_frame"] = round(1e6 * (c1 - c0) / n, 1)
    out["server_cpu_share"] = round((s1 - s0) / (w1 - w0), 2)

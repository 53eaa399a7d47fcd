"""`snn bench http-abuse` end to end, small: a real edge with the shipped bundle, attacker
processes, /healthz probes, a device over UDP (slow: it loads the model and runs the device twice)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_http_abuse_small_run_reports_the_bar(tmp_path):
    out = tmp_path / "abuse.json"
    r = subprocess.run([sys.executable, "-m", "snn", "bench", "http-abuse", "--connections", "1200",
                        "--clients", "2", "--hold", "3", "--rate", "300", "--max-connections", "200",
                        "--device-count", "20", "--json", str(out)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["max_connections"] == 200 and res["server"]["open_peak"] <= 200
    assert res["clients_opened"] >= 1200 and res["server"]["closed"]["evicted"] >= 1000
    assert res["healthz_flood"]["probes"] >= 10 and res["healthz_flood"]["failed"] == 0
    assert res["device_flood"]["answered"] >= 19
    assert res["log"]["tracebacks"] == 0 and res["log"]["bytes_during_flood"] < 4096
    assert "bar (healthz < 1 s" in r.stdout

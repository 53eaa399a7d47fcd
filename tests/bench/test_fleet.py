"""`snn bench fleet` end to end: a real edge, thousands of device ids, bounded per-device state."""
import json
import subprocess
import sys
from pathlib import Path

from bench.fleet import CLASSES, fleet_devices

ROOT = Path(__file__).resolve().parents[2]


def test_fleet_devices_follow_the_class_shares():
    devices = fleet_devices(2000)
    assert len(devices) == 2000 and len({d for d, _ in devices}) == 2000
    counts = {c.name: sum(1 for _, k in devices if k is c) for c in CLASSES}
    assert counts == {"sensor": 1600, "camera": 100, "far": 300}


def test_bench_fleet_accounts_every_datagram_and_bounds_device_state(tmp_path):
    out = tmp_path / "fleet.json"
    r = subprocess.run([sys.executable, "-m", "snn", "bench", "fleet", "--devices", "1500", "--max-devices",
                        "256", "--duration", "1", "--loads", "0.5,3", "--json", str(out)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["accounted"] and res["capacity_fps"] > 0 and len(res["loads"]) == 2
    for row in res["loads"]:
        c = row["server_counts"]
        assert row["sent"] == c["answered"] + c["rejected"] + c["kernel_drops"]
        assert set(row["classes"]) == {"sensor", "camera", "far"}
        assert sum(v["frames"] for v in row["classes"].values()) == row["sent"]
    assert res["loads"][0]["goodput_fps"] > 0
    # 1,500 device ids against a table of 256: the table stays bounded and evicts
    assert res["server"]["devices_tracked"] <= 256 and res["server"]["devices_evicted"] > 0
    assert res["server"]["alive"] and "fleet bench" in r.stdout

"""`snn bench edge` end to end against a real `snn edge serve` with the shipped bundle."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONTRACT = ("sent", "answered", "rejected", "throughput_fps", "model_fps", "p50_ms", "p99_ms")


def _bench(tmp_path, *args, timeout=300):
    out = tmp_path / "edge.json"
    r = subprocess.run([sys.executable, "-m", "snn", "bench", "edge", *args, "--json", str(out)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, json.loads(out.read_text())


def test_bench_edge_quick_contract(tmp_path):
    r, result = _bench(tmp_path, "--duration", "1", "--rate", "300", "--garbage", "0.1")
    for key in CONTRACT:
        assert key in result, key
    # every frame accounted: on a loaded machine the closed loop (256 in flight) may overflow the
    # kernel queue or be shed in the model's queue (counted drops, silent refusals), never lost
    silent = result["udp_max"]["server_refused_silently"]
    assert result["sent"] == result["answered"] + result["rejected"] + result["kernel_drops"] + silent
    assert result["lost"] == result["kernel_drops"] + silent and result["accounted"]
    assert result["answered"] > 0 and result["throughput_fps"] > 0 and result["model_fps"] > 0
    assert result["http"]["answered"] > 0 and result["http"]["lost"] == 0
    # the keyed server answers garbage with silence; its refusal counters account for it
    rate = result["udp_rate"]
    assert rate["sent_garbage"] > 0 and rate["garbage_answered"] == 0
    assert rate["refused_silently"] == rate["sent_garbage"] and rate["valid_unanswered"] == 0
    assert result["server"]["exit_code"] == 0 and result["server"]["sigterm_exit_s"] < 5
    assert "udp closed loop" in r.stdout and "http 16 clients" in r.stdout


def test_bench_edge_overload_and_engines_side_by_side(tmp_path):
    r, result = _bench(tmp_path, "--duration", "1", "--rate", "300", "--http-clients", "2",
                       "--overload", "3", "--engines", "onnx,torch", "--reps", "1")
    over = result["udp_overload"]
    assert result["engine"] == "onnx" and result["model"]["engine"] == "onnx"
    # offered 3 x the closed loop of this run; every datagram accounted by the server's counters
    assert over["offered_fps"] == pytest.approx(3 * result["udp_max"]["throughput_fps"], rel=1e-3)
    assert over["sent_fps"] > 0 and over["sent"] > 0
    c = over["server_counts"]
    assert over["server_accounted"] and over["sent"] == c["answered"] + c["rejected"] + c["kernel_drops"]
    assert c["answered"] > 0 and result["accounted"]
    e = result["engines"]
    assert e["onnx"]["throughput_fps_median"] > 0 and e["torch"]["model_fps_median"] > 0
    assert "throughput_fps" in e["onnx_vs_torch"] and "udp overload 3x" in r.stdout


@pytest.mark.slow
def test_soak_60s_with_garbage(tmp_path):
    """60 s at 1,000 frames/s with 5% garbage: no crash, every frame accounted, RSS growth <= 10%."""
    _, result = _bench(tmp_path, "--soak", "60", "--rate", "1000", "--garbage", "0.05", timeout=400)
    soak = result["soak"]
    assert result["alive"] and result["health"] == "ok"
    assert soak["lost"] == 0 and soak["sent"] == soak["answered"] + soak["rejected"]
    assert soak["sent_garbage"] > 0 and soak["garbage_answered"] == 0
    assert soak["refused_silently"] == soak["sent_garbage"]
    assert result["rss_growth"] <= 0.10, result["rss_growth"]


@pytest.mark.slow
def test_flood_of_garbage_from_one_source_does_not_starve_a_keyed_device(tmp_path):
    """20,000 garbage datagrams/s from one source, a keyed device at 100 frames/s: >= 90 % answered,
    nothing sent back to the garbage, every garbage datagram counted by the server."""
    out = tmp_path / "flood.json"
    r = subprocess.run([sys.executable, "-m", "snn", "bench", "flood", "--json", str(out)], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["garbage_replies"] == 0 and result["answered_fraction"] >= 0.9, result
    assert result["healthz"] == "ok"

"""edge/stats.py: bounded device table, rate meter, latency ring, metrics text."""
from edge.stats import DeviceTable, EdgeMetrics, LatencyRing, RateMeter


def test_device_table_is_an_lru():
    m = EdgeMetrics()
    table = DeviceTable(m, max_devices=5)
    for dev in range(20):
        table.get(dev, "udp", float(dev)).frames += 1
    table.get(16, "udp", 30.0)
    assert len(table) == 5
    assert [d["device_id"] for d in table.top(3, 31.0)] == [16, 19, 18]
    assert b"snn_edge_devices_evicted_total 15.0" in m.render()


def test_rate_meter_counts_completed_seconds():
    r = RateMeter(window_s=2)
    for t in (10.1, 10.5, 11.2, 11.3, 11.9):
        r.add(1, now=t)
    assert r.rate(now=12.0) == (2 + 3) / 2
    assert r.rate(now=20.0) == 0


def test_latency_ring_percentiles():
    ring = LatencyRing(size=100)
    assert ring.percentiles()["p50_ms"] is None
    for v in range(1000):
        ring.add(float(v % 100))
    p = ring.percentiles()
    assert 45 <= p["p50_ms"] <= 55 and p["p99_ms"] >= 95


def test_reject_reasons_counted():
    m = EdgeMetrics()
    m.reject("busy")
    m.reject("busy")
    assert m.reject_counts["busy"] == 2
    assert b'snn_edge_rejects_total{reason="busy"} 2.0' in m.render()

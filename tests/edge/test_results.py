"""Results out of a real edge: the SSE stream of answered inferences and the per-second history
(GET /v1/events, GET /v1/history; edge/results.py), on the stand-in edge over real UDP."""
import json
import threading
import time

import httpx
import pytest
from conftest import UdpClient, start_standin
from standin import FP_A
from wire_client import data_frame


class EventReader:
    """Reads GET /v1/events in a thread; `events` collects (kind, data) as they come."""

    def __init__(self, edge, headers=None):
        self.events: list[tuple[str, dict]] = []
        self.status: int | None = None
        self.ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, args=(edge, headers), daemon=True)
        self._thread.start()
        assert self.ready.wait(10)

    def _read(self, edge, headers):
        with httpx.stream("GET", edge.http + "/v1/events", headers={**edge.auth, **(headers or {})},
                          timeout=httpx.Timeout(10.0, read=None)) as r:
            self.status = r.status_code
            self.ready.set()
            if r.status_code != 200:
                r.read()
                return
            kind = None
            for line in r.iter_lines():
                if self._stop:
                    return
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: ") and kind:
                    self.events.append((kind, json.loads(line[len("data: "):])))
                    kind = None

    def of(self, kind):
        return [data for k, data in self.events if k == kind]

    def wait(self, kind, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.of(kind)

    def stop(self):
        self._stop = True


@pytest.fixture(scope="module")
def results_edge(tmp_path_factory):
    # a generous deadline: a loaded machine must not turn answers into BUSY refusals here
    edge = start_standin(tmp_path_factory.mktemp("results"), "--history-seconds", "30", "--deadline-ms", "2000")
    yield edge
    edge.stop()


def test_every_answer_goes_to_the_event_stream_as_its_record(results_edge):
    edge = results_edge
    reader = EventReader(edge)
    assert reader.status == 200
    udp = UdpClient(edge.udp)
    try:
        got = {}
        for i in range(20):
            reply = udp.ask(data_frame(i % 10, FP_A, device=1210 + i % 2, truth=i % 10))
            got[reply.counter] = reply.label
        results = reader.wait("result", 20)
    finally:
        udp.close()
        reader.stop()
    assert len(results) == 20
    assert {r["counter"]: r["label"] for r in results} == got           # the label the device got
    r = results[0]
    assert set(r) == {"device", "label", "class_name", "confidence", "ber", "codec", "counter", "truth",
                      "transport", "time", "timings"}                   # never a key, never a payload
    assert r["codec"] == FP_A.hex() and r["transport"] == "udp" and r["device"] in (1210, 1211)
    assert r["class_name"] == f"class{r['label']}" and r["truth"] == r["label"]
    assert 0 < r["timings"]["total_ms"] < 5000 and r["timings"]["queue_ms"] >= 0
    assert abs(r["time"] - time.time()) < 60


def test_history_has_one_point_a_second_with_answers_latency_rejects_and_devices(results_edge):
    edge = results_edge
    udp = UdpClient(edge.udp)
    t0 = time.time()
    try:
        for i in range(40):
            udp.ask(data_frame(i % 10, FP_A, device=1220 + i % 3, truth=(i % 10) if i % 4 else 0))
            udp.send(b"\x00" * 17)                                      # garbage: refused silently
            time.sleep(0.05)
        time.sleep(1.2)
    finally:
        udp.close()
    body = edge.get("/v1/history").json()
    assert body["seconds"] == 30
    points = [p for p in body["points"] if p["t"] >= t0 - 1]
    assert len(points) >= 2
    ours = [fig for p in points for d, fig in p["devices"].items() if d in ("1220", "1221", "1222")]
    assert sum(fig["answers"] for fig in ours) == 40 and sum(p["answers"] for p in points) >= 40
    busy = [p for p in points if p["answers"]]
    assert all(p["p50_ms"] is not None and p["p99_ms"] >= p["p50_ms"] for p in busy)
    assert sum(n for p in points for n in p["rejects"].values()) == 40
    devices = {d for p in points for d in p["devices"]}
    assert {"1220", "1221", "1222"} <= devices
    fig = next(p["devices"]["1220"] for p in busy if "1220" in p["devices"])
    assert set(fig) == {"answers", "ber", "accuracy"} and 0 <= fig["accuracy"] <= 1
    # ?since= gives only the newer points (the page fetches the window once, then what is new)
    last = body["points"][-1]["t"]
    assert edge.get(f"/v1/history?since={last}").json()["points"] == []
    later = [p["t"] for p in edge.get(f"/v1/history?since={points[0]['t']}").json()["points"]]
    assert later and min(later) > points[0]["t"]


def test_history_points_reach_the_stream_and_streams_are_bounded(results_edge):
    edge = results_edge
    deadline = time.monotonic() + 5                              # the earlier tests' streams have closed
    while "snn_edge_events_subscribers 0.0" not in edge.get("/metrics").text and time.monotonic() < deadline:
        time.sleep(0.1)
    readers = [EventReader(edge) for _ in range(8)]              # the most streams at once
    try:
        assert all(r.status == 200 for r in readers)
        extra = EventReader(edge)
        assert extra.status == 503                              # one more is refused, the edge goes on
        assert readers[0].wait("point", 1, timeout=5)
        metrics = edge.get("/metrics").text
        assert "snn_edge_events_subscribers 8.0" in metrics and "snn_edge_events_refused_total 1.0" in metrics
    finally:
        for r in readers:
            r.stop()
    assert edge.get("/healthz").json()["status"] == "ok"


def test_an_open_event_stream_does_not_hold_the_edge_up_on_sigterm(tmp_path):
    edge = start_standin(tmp_path)
    reader = EventReader(edge)
    assert reader.status == 200 and reader.wait("point", 1, timeout=5)
    seconds = edge.stop()
    reader.stop()
    assert edge.proc.returncode == 0 and seconds < 5, (seconds, edge.log()[-2000:])


def test_events_and_history_are_the_operators_only(results_edge):
    edge = results_edge
    for path in ("/v1/history", "/v1/events"):
        r = httpx.get(edge.http + path, timeout=10)
        assert r.status_code == 401 and r.json()["reason"] == "operator", path
        r = httpx.get(edge.http + path, headers={"Authorization": "Bearer " + "x" * 40}, timeout=10)
        assert r.status_code == 401, path
    schema = edge.get("/openapi.json").json()["paths"]
    assert all("401" in schema[path]["get"]["responses"] for path in ("/v1/history", "/v1/events"))

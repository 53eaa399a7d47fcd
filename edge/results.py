"""Results out of the edge: where each answered inference goes besides its device.

`ResultsOut` wires issue 24's outlets onto one `EdgeCore` (server.build makes one per edge):

- the core's result sink (`EdgeCore.add_result_sink`, called on the loop once per answered
  inference with its record, `result_record`): the record goes to the MQTT broker (`--mqtt`,
  edge/mqtt.py: a bounded outbox, never blocking) and to the SSE subscribers (edge/events.py);
- once a second, the history point (edge/history.py) sampled from the core's counters, kept for
  ``GET /v1/history`` (the dashboard's charts) and sent to SSE subscribers;
- their figures on ``/metrics``: ``snn_edge_mqtt_messages_total{outcome}``,
  ``snn_edge_mqtt_connected``, ``snn_edge_mqtt_queued``, ``snn_edge_events_subscribers``,
  ``snn_edge_events_dropped_total``, ``snn_edge_events_refused_total``.

Both HTTP routes need the operator credential (labels and figures go only to the operator).
"""
from __future__ import annotations

import asyncio
import logging
import time

from edge.events import EventStream
from edge.history import History
from edge.mqtt import MqttOptions, MqttPublisher

log = logging.getLogger("snn.edge")


def result_record(job, label: int, confidence: float, now: float) -> dict:
    """What leaves the edge for an answered inference (`job`: edge.core.Pending): never its key,
    never its payload. `now`: perf_counter when the answer went out."""
    codec = job.codec
    return {"device": int(job.device_id), "label": int(label), "class_name": codec.class_name(label),
            "confidence": round(float(confidence), 6), "ber": round(float(job.ber), 8),
            "codec": codec.fingerprint_hex, "counter": int(job.counter), "truth": job.truth,
            "transport": job.transport, "time": round(time.time(), 3),
            "timings": {"queue_ms": round((job.t_start - job.t_recv) * 1e3, 3),
                        "model_ms": round(job.t_model * 1e3, 3),
                        "total_ms": round((now - job.t_recv) * 1e3, 3)}}


class ResultsOut:
    """MQTT, SSE and the per-second history of one edge (module docstring)."""

    def __init__(self, core, mqtt: MqttOptions | None = None, history_s: int = 600,
                 history_devices: int = 8, max_streams: int = 8) -> None:
        self.core = core
        self.history = History(history_s, history_devices)
        self.events = EventStream(max_streams)
        self.mqtt = MqttPublisher(mqtt) if mqtt is not None else None
        self._task: asyncio.Task | None = None
        self._latency_mark = 0
        core.add_result_sink(self._result)
        core.register_collector(self)

    # --- lifetime (on the edge's loop) ---------------------------------------------------------

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()
        self.sample(time.time())                 # the baseline: the first chart point counts from here
        self._task = asyncio.get_running_loop().create_task(self._sample_every_second(), name="snn-history")

    async def stop(self) -> None:
        self.events.close()
        if self._task is not None:
            self._task.cancel()
        if self.mqtt is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.mqtt.stop)

    # --- the two inputs -----------------------------------------------------------------------

    def _result(self, record: dict) -> None:
        if self.mqtt is not None:
            self.mqtt.offer(record)
        self.events.publish("result", record)

    def sample(self, now: float) -> dict:
        """One history point from the core's counters (and to the SSE subscribers)."""
        core = self.core
        latencies, self._latency_mark = core.latencies.since(self._latency_mark)
        point = self.history.sample(now, core.answered, latencies, core.metrics.reject_counts, core.devices)
        self.events.publish("point", point)
        return point

    async def _sample_every_second(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(1.0 - now % 1.0)     # on the second, so points line up across edges
            try:
                self.sample(time.time())
            except Exception:  # noqa: BLE001 - the charts must never stop the edge
                log.exception("history sample failed")

    # --- what the operator reads -----------------------------------------------------------------

    def figures(self) -> dict:
        """For the ready JSON and /v1/stats."""
        return {"mqtt": self.mqtt.figures() if self.mqtt is not None else None, "events": self.events.figures(),
                "history_points": len(self.history)}

    def collect(self):
        """Prometheus families (called at scrape time)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        events = self.events
        yield GaugeMetricFamily("snn_edge_events_subscribers", "Server-Sent-Events streams open (GET /v1/events)",
                                value=len(events))
        yield CounterMetricFamily("snn_edge_events_dropped", "Events a slow SSE subscriber lost (oldest first)",
                                  value=events.dropped)
        yield CounterMetricFamily("snn_edge_events_refused", "SSE streams refused at the most streams at once",
                                  value=events.refused)
        if self.mqtt is None:
            return
        m = self.mqtt
        messages = CounterMetricFamily("snn_edge_mqtt_messages", "Result messages to the MQTT broker, by outcome: "
                                       "published (acknowledged, QoS 1), dropped (the outbox was full while the "
                                       "broker was away), failed (refused by the client)", labels=["outcome"])
        for outcome, n in m.counts.items():
            messages.add_metric([outcome], n)
        yield messages
        yield GaugeMetricFamily("snn_edge_mqtt_connected", "1 while connected to the MQTT broker",
                                value=1.0 if m.connected else 0.0)
        yield GaugeMetricFamily("snn_edge_mqtt_queued", "Result messages waiting for the broker (outbox + in flight)",
                                value=m.queued)

    def add_routes(self, app, dependencies: list) -> None:
        """GET /v1/history and GET /v1/events on `app`, behind `dependencies` (the operator check)."""
        from fastapi.responses import JSONResponse, StreamingResponse

        unauthorized = {401: {"description": "no or wrong operator credential"}}

        @app.get("/v1/history", summary="Per-second history for the dashboard's charts", dependencies=dependencies,
                 responses=unauthorized)
        async def history(since: float | None = None):
            """The points newer than `since` (Unix seconds; all kept when absent), oldest first: answers,
            p50/p99 latency (ms), refusals by reason and, per busiest device, answers, BER and accuracy."""
            return {"seconds": self.history.seconds, "points": self.history.points(since)}

        @app.get("/v1/events", summary="Server-Sent Events: each answered inference and each history point",
                 dependencies=dependencies, response_class=StreamingResponse,
                 responses={**unauthorized, 503: {"description": "already at the most SSE streams at once"}})
        async def events():
            sub = self.events.subscribe()
            if sub is None:
                return JSONResponse({"detail": f"at most {self.events.max_subscribers} event streams at once",
                                     "reason": "busy", "code": None}, status_code=503)
            return StreamingResponse(self.events.stream(sub), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

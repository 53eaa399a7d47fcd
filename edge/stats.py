"""What the edge counts: Prometheus metrics, per-device statistics and dashboard figures.

Every figure lives in fixed-size structures: the Prometheus registry has a fixed label set
(reasons, transports, stages, codecs the server loaded), the per-device table is an LRU of at
most ``max_devices`` entries (a flood of new device ids evicts the least recently seen, and the
evictions are counted), and latency percentiles come from a ring buffer. Nothing grows with
traffic.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Reasons a frame or request is refused (the label values of snn_edge_rejects_total).
# refusals by reason (docs/PROTOCOL.md §3.5, §6): what fails authentication is answered with
# silence ("length" .. "bad_length"), as are replays, late/duplicate fragments and rate limits
REJECT_REASONS = ("length", "damaged", "version", "kind", "fragment", "auth", "bad_length", "replay",
                  "late", "duplicate", "rate_limited", "bad_truth", "bad_frame", "unknown_codec", "busy",
                  "too_large", "content_type", "internal", "shutdown", "expired", "shed", "operator",
                  "unverified", "gap", "resync_refused")
TRANSPORTS = ("udp", "serial", "http")
BER_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 0.5)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class BucketCounts:
    """A histogram the hot path updates with one bisect and two additions, without a lock.

    The edge observes three or four values per frame, all on the event loop; prometheus_client's
    Histogram takes a lock and walks its buckets per observation (~0.7 µs each, measured), which
    the loop pays while the model thread waits for the GIL. Exported at scrape time by
    `EdgeMetrics.collect` under the same names and buckets."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)   # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count of observations <= le) per bucket, as Prometheus wants them."""
        out, running = [], 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            running += count
            out.append((floatToGoString(bound), float(running)))
        return out


class EdgeMetrics:
    """The Prometheus metrics of one server (its own registry, so servers never collide).

    What changes per frame (frames, inferences, refusals, ground-truth hits, the BER, latency,
    batch and loop-lag histograms) lives in plain counters and `BucketCounts`, exported by
    `collect` when /metrics is scraped; what changes rarely (evictions, send failures) uses
    prometheus_client objects directly."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.incomplete = Counter("snn_edge_incomplete_inferences",
                                  "Inferences decoded with erased (never received) fragments",
                                  registry=r)
        self.queue_depth = Gauge("snn_edge_queue_depth", "Inferences waiting for the model",
                                 registry=r)
        self.devices = Gauge("snn_edge_devices", "Devices in the per-device table", registry=r)
        self.reply_failures = Counter("snn_edge_reply_send_failures",
                                      "Replies that could not be sent (peer gone, link stalled, "
                                      "send backlog full)", ["transport"], registry=r)
        self.kernel_drops = Gauge("snn_edge_udp_kernel_drops",
                                  "Datagrams the kernel dropped before the edge could read them "
                                  "(UDP receive buffer full)", registry=r)
        self.evicted = Counter("snn_edge_devices_evicted",
                               "Devices dropped from the bounded per-device table", registry=r)
        # refusals by reason: a plain dict on the hot path (a flood is refused at tens of
        # thousands a second), every reason exported (zeros too) by collect()
        self.reject_counts = dict.fromkeys(REJECT_REASONS, 0)
        # the hot-path figures, exported by collect()
        self.frame_counts = dict.fromkeys(TRANSPORTS, 0)
        self.inference_counts: dict[str, int] = {}   # by codec name: the codecs loaded
        self.truth = 0
        self.correct = 0
        self.ber = BucketCounts(BER_BUCKETS)
        self.batch = BucketCounts(BATCH_BUCKETS)
        self.loop_lag = BucketCounts(LATENCY_BUCKETS)
        self._lat = {stage: BucketCounts(LATENCY_BUCKETS) for stage in ("queue", "model", "total")}
        r.register(self)

    def watch_state(self, state) -> None:
        """Export the replay state's figures (edge.replay_state.ReplayState)."""
        r = self.registry
        Gauge("snn_edge_replay_state_writes", "Group commits of the replay state written to disk",
              registry=r).set_function(lambda: state.writes)
        Gauge("snn_edge_replay_state_write_failures", "Replay state writes that failed (replies wait)",
              registry=r).set_function(lambda: state.write_failures)
        Gauge("snn_edge_replies_waiting_for_commit", "REPLY frames held until their counter is on disk",
              registry=r).set_function(lambda: len(state._waiting))
        Gauge("snn_edge_counters_near_exhaustion", "Devices with fewer than 2^24 frame counters left under "
              "their key (re-key them: snn keys rotate)", registry=r).set_function(lambda: len(state.near_exhaustion))

    def frame(self, transport: str) -> None:
        self.frame_counts[transport] += 1

    def inference(self, codec: str) -> None:
        self.inference_counts[codec] = self.inference_counts.get(codec, 0) + 1

    def reject(self, reason: str) -> None:
        self.reject_counts[reason] += 1

    def observe_latency(self, stage: str, seconds: float) -> None:
        self._lat[stage].observe(seconds)

    def collect(self):
        """The hot-path figures as Prometheus families (called by the registry at scrape time)."""
        frames = CounterMetricFamily("snn_edge_frames", "Frames and requests received, by transport",
                                     labels=["transport"])
        for transport, n in self.frame_counts.items():
            frames.add_metric([transport], n)
        inferences = CounterMetricFamily("snn_edge_inferences", "Inferences answered, by codec",
                                         labels=["codec"])
        for codec, n in self.inference_counts.items():
            inferences.add_metric([codec], n)
        rejects = CounterMetricFamily("snn_edge_rejects", "Frames or requests refused, by reason",
                                      labels=["reason"])
        for reason, n in self.reject_counts.items():
            rejects.add_metric([reason], n)
        yield frames
        yield inferences
        yield rejects
        yield CounterMetricFamily("snn_edge_truth_inferences",
                                  "Answered inferences that carried a ground-truth label (test mode)",
                                  value=self.truth)
        yield CounterMetricFamily("snn_edge_correct_inferences",
                                  "Answered test-mode inferences whose label matched the truth",
                                  value=self.correct)
        for name, doc, hist in (
                ("snn_edge_estimated_ber", "Estimated bit error rate per inference", self.ber),
                ("snn_edge_batch_size", "Inferences per model batch", self.batch),
                ("snn_edge_loop_lag_seconds",
                 "How late a 50 ms timer on the event loop fired (loop stalls)", self.loop_lag)):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], hist.cumulative(), hist.total)
            yield family
        latency = HistogramMetricFamily("snn_edge_latency_seconds",
                                        "Latency by stage: queue (wait for the model), model (per "
                                        "batch), total (frame received to reply sent)",
                                        labels=["stage"])
        for stage, hist in self._lat.items():
            latency.add_metric([stage], hist.cumulative(), hist.total)
        yield latency

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class DeviceStats:
    """What the dashboard shows for one device."""

    device_id: int
    frames: int = 0
    answered: int = 0
    rejected: int = 0
    ber: float = 0.0
    truth: int = 0
    correct: int = 0
    last_seen: float = 0.0
    transport: str = ""
    last_label: int | None = None
    last_class: str | None = None

    def as_dict(self, now: float) -> dict:
        return {"device_id": self.device_id, "frames": self.frames, "answered": self.answered,
                "rejected": self.rejected, "ber": self.ber, "transport": self.transport,
                "accuracy": (self.correct / self.truth) if self.truth else None,
                "truth": self.truth, "last_seen_s": round(now - self.last_seen, 3),
                "last_label": self.last_label, "last_class": self.last_class}


class DeviceTable:
    """Per-device statistics in an LRU of at most `max_devices` entries."""

    def __init__(self, metrics: EdgeMetrics, max_devices: int = 1024) -> None:
        self.metrics = metrics
        self.max_devices = max_devices
        self._devices: OrderedDict[int, DeviceStats] = OrderedDict()

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, device_id: int, transport: str, now: float) -> DeviceStats:
        stats = self._devices.get(device_id)
        if stats is None:
            stats = DeviceStats(device_id, transport=transport)
            self._devices[device_id] = stats
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
                self.metrics.evicted.inc()
            self.metrics.devices.set(len(self._devices))
        else:
            self._devices.move_to_end(device_id)
        stats.last_seen = now
        return stats

    def top(self, n: int, now: float) -> list[dict]:
        """The n most recently seen devices, most recent first."""
        out = []
        for stats in reversed(self._devices.values()):
            out.append(stats.as_dict(now))
            if len(out) >= n:
                break
        return out


class LatencyRing:
    """The last `size` total latencies (ms) for percentiles on the dashboard."""

    def __init__(self, size: int = 4096) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._n = 0

    def add(self, ms: float) -> None:
        self._values[self._n % len(self._values)] = ms
        self._n += 1

    def percentiles(self, qs=(50, 90, 99)) -> dict:
        count = min(self._n, len(self._values))
        if count == 0:
            return {f"p{q}_ms": None for q in qs}
        vals = np.percentile(self._values[:count], qs)
        return {f"p{q}_ms": round(float(v), 3) for q, v in zip(qs, vals)}


class RateMeter:
    """Events per second over the last `window_s` seconds, in one-second buckets."""

    def __init__(self, window_s: int = 5) -> None:
        self.window_s = window_s
        self._buckets = [0] * (window_s + 1)
        self._second = 0

    def add(self, n: int = 1, now: float | None = None) -> None:
        sec = int(time.monotonic() if now is None else now)
        self._roll(sec)
        self._buckets[sec % len(self._buckets)] += n

    def rate(self, now: float | None = None) -> float:
        sec = int(time.monotonic() if now is None else now)
        self._roll(sec)
        # the completed seconds only (the current one is still filling)
        total = sum(self._buckets[(sec - k) % len(self._buckets)] for k in range(1, self.window_s + 1))
        return total / self.window_s

    def _roll(self, sec: int) -> None:
        if sec == self._second:
            return
        gap = min(sec - self._second, len(self._buckets))
        for k in range(1, gap + 1):
            self._buckets[(self._second + k) % len(self._buckets)] = 0
        self._second = sec

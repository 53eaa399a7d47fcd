"""The server's own accounting, read from its ``/metrics`` with prometheus_client's parser.

A load generator cannot see what the kernel dropped or what the server refused without a reply
(docs/PROTOCOL.md §6: nothing unauthenticated is answered); the server counts both. Each
function here takes one parsed scrape (`Metrics`, from `EdgeServer.metrics()`).
"""
from __future__ import annotations

# the server's silent refusals (docs/PROTOCOL.md §6): read from /metrics, since they get no reply
SILENT_REASONS = ("length", "damaged", "version", "kind", "fragment", "auth", "bad_length", "replay", "late",
                  "duplicate", "rate_limited", "expired", "shed", "unverified")


class Metrics:
    """One scrape of a Prometheus text exposition, parsed once: (name, labels, value) samples."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples = [(s.name, s.labels, float(s.value))
                        for family in text_string_to_metric_families(text) for s in family.samples]

    def sum(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels`."""
        return sum(value for n, lab, value in self.samples
                   if n == name and all(lab.get(k) == v for k, v in labels.items()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """The samples called `name` summed per value of one label."""
        out: dict[str, float] = {}
        for n, lab, value in self.samples:
            if n == name and label in lab:
                out[lab[label]] = out.get(lab[label], 0.0) + value
        return out

    def first(self, name: str) -> float | None:
        """The value of the first sample called `name` (a gauge), None when there is none."""
        return next((value for n, _, value in self.samples if n == name), None)


def server_counts(m: Metrics) -> dict:
    """Frames received over UDP, inferences answered, refusals (all and BUSY), kernel drops, and
    answered frames within 50 / 100 ms of arrival (the server's own latency, socket to reply)."""
    total = "snn_edge_latency_seconds_bucket"
    return {"udp_frames": m.sum("snn_edge_frames_total", transport="udp"),
            "answered": m.sum("snn_edge_inferences_total"),
            "rejected": m.sum("snn_edge_rejects_total"),
            "busy": m.sum("snn_edge_rejects_total", reason="busy"),
            "kernel_drops": m.sum("snn_edge_udp_kernel_drops"),
            "total_le_50ms": m.sum(total, stage="total", le="0.05"),
            "total_le_100ms": m.sum(total, stage="total", le="0.1")}


def silent_refusals(m: Metrics) -> float:
    """Frames the server refused without a reply so far (docs/PROTOCOL.md §6)."""
    return sum(v for reason, v in m.by_label("snn_edge_rejects_total", "reason").items()
               if reason in SILENT_REASONS)


def refusals(m: Metrics) -> dict[str, int]:
    """Refusals so far by reason, those that happened only."""
    return {reason: int(v) for reason, v in m.by_label("snn_edge_rejects_total", "reason").items() if v}


def stalls(m: Metrics) -> dict:
    """Server-side stalls so far: loop timer wake-ups and model batches later/longer than 100 ms."""
    def over(name: str, **labels: str) -> int:
        return int(m.sum(name, le="+Inf", **labels) - m.sum(name, le="0.1", **labels))
    return {"loop_lag_over_100ms": over("snn_edge_loop_lag_seconds_bucket"),
            "model_batches_over_100ms": over("snn_edge_latency_seconds_bucket", stage="model")}


def batch_stats(m: Metrics) -> tuple[float, float]:
    """(sum, count) of the server's batch sizes so far."""
    return m.sum("snn_edge_batch_size_sum"), m.sum("snn_edge_batch_size_count")


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """The mean batch between two `batch_stats` readings (None when no batch ran)."""
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count, 2) if count else None

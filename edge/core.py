"""The per-frame pipeline shared by every listener: check, reassemble, estimate BER, queue, reply.

    bytes ─► parse_frame (header CRC) ─► codec by fingerprint ─► Reassembler (erasures after
    the timeout) ─► BER estimate (pilots + device history + SNR hint) ─► MicroBatcher ─► model
    thread ─► REPLY frame / JSON

Every frame ends in exactly one of: a REPLY, an ERROR reply (bad frame, unknown codec, busy,
unsupported), or — for fragments — a place in a pending inference that is answered once it is
complete or timed out. Each refusal is counted by reason. Nothing here blocks the loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from codec.wire.frame import (
    ErrorCode,
    Kind,
    encode_error,
    encode_reply,
    parse_frame,
    peek,
    pilot_bit_errors,
)
from codec.wire.reassembly import Assembled, Reassembler
from edge.batcher import Expired, Job, MicroBatcher
from edge.ber import BerEstimator
from edge.codecs import CodecRegistry, ServedCodec
from edge.stats import DeviceStats, DeviceTable, EdgeMetrics, LatencyRing, RateMeter
from snn.errors import FrameError

log = logging.getLogger("snn.edge")

# BUSY replies carry a short reason: the ERROR body is Reed-Solomon protected, and reedsolo took
# ~61 us for the old 28-character text against ~5 us for this one (a BUSY is the cheap path)
BUSY_TEXT = "overloaded"


class Inference:
    """One whole inference as the pipeline sees it (a single frame or a reassembled set)."""

    __slots__ = ("fingerprint", "device_id", "seq", "payload", "erased", "pilot_errors",
                 "pilot_bits", "snr_hint", "truth", "header_copies")

    def __init__(self, fingerprint, device_id, seq, payload, erased, pilot_errors, pilot_bits,
                 snr_hint, truth, header_copies=1) -> None:
        self.fingerprint = fingerprint
        self.device_id = device_id
        self.seq = seq
        self.payload = payload
        self.erased = erased          # None when every byte arrived, else bool per payload byte
        self.pilot_errors = pilot_errors
        self.pilot_bits = pilot_bits
        self.snr_hint = snr_hint
        self.truth = truth
        self.header_copies = header_copies  # the reply is sent as robustly as the request came

    @classmethod
    def from_frame(cls, frame) -> "Inference":
        """A single-fragment frame, without the reassembler (the hot path)."""
        return cls(frame.fingerprint, frame.device_id, frame.seq, frame.data, None,
                   pilot_bit_errors(frame), 8 * frame.pilot_len, frame.snr_hint, frame.truth,
                   frame.header_copies)

    @classmethod
    def from_assembled(cls, item: Assembled) -> "Inference":
        return cls(item.fingerprint, item.device_id, item.seq, bytes(item.payload),
                   None if item.complete else item.erased, item.pilot_errors, item.pilot_bits,
                   item.snr_hint, item.truth, item.header_copies)


@dataclass
class EdgeConfig:
    """Tunables of the pipeline (the CLI flags of `snn edge serve`)."""

    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 2048
    reassembly_timeout_s: float = 0.5
    max_pending: int = 4096
    max_devices: int = 1024
    ber_decay: float = 0.9
    reply_bad_frames: bool = True
    max_body: int = 65536
    drain_s: float = 1.5
    deadline_ms: float = 50.0   # from a frame's arrival to its answer; later ones are refused BUSY


class Rejected(Exception):
    """A frame or request refused with a reason (metrics label), an ERROR code and a message."""

    def __init__(self, reason: str, code: ErrorCode, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message
        self.http_status = http_status


def classify_frame_error(exc: FrameError) -> Rejected:
    """Map a parse failure to a reason: a corrupted header, an unsupported feature, or garbage."""
    text = str(exc)
    if exc.reason == "damaged":
        return Rejected("crc", ErrorCode.BAD_FRAME, text)
    if exc.reason in ("version", "flags"):
        return Rejected("unsupported", ErrorCode.UNSUPPORTED, text, 422)
    return Rejected("bad_frame", ErrorCode.BAD_FRAME, text)


class EdgeCore:
    """State of one edge server: codecs, reassembly, BER estimates, devices, metrics, batcher."""

    def __init__(self, codecs: CodecRegistry, config: EdgeConfig | None = None) -> None:
        self.codecs = codecs
        self.config = config or EdgeConfig()
        cfg = self.config
        self.metrics = EdgeMetrics()
        self.devices = DeviceTable(self.metrics, cfg.max_devices)
        self.ber = BerEstimator(decay=cfg.ber_decay, max_devices=cfg.max_devices)
        self.reassembler = Reassembler(cfg.reassembly_timeout_s, cfg.max_pending)
        self.batcher = MicroBatcher(cfg.max_batch, cfg.max_wait_ms / 1000.0, cfg.max_queue,
                                    self.metrics, on_batch=self._on_batch,
                                    deadline_s=cfg.deadline_ms / 1000.0)
        self.metrics.queue_depth.set_function(self.batcher.__len__)
        self.latencies = LatencyRing()
        self.frame_rate = RateMeter()
        self.answer_rate = RateMeter()
        self.started = time.time()
        self.answered = 0
        self.received = 0
        self.snapshots = 0
        self._reply_to: dict[tuple, tuple[str, Callable]] = {}
        self._expire_task: asyncio.Task | None = None
        self.running = False

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.batcher.start()
        self._expire_task = asyncio.get_running_loop().create_task(self._expire_loop(),
                                                                   name="snn-reassembly")
        self.running = True

    async def stop(self) -> None:
        """Stop accepting, answer what is queued (within drain_s), refuse the rest as busy."""
        self.running = False
        if self._expire_task is not None:
            self._expire_task.cancel()
        for item in self.reassembler.expire(float("inf")):
            self._dispatch(item)
        left = await self.batcher.drain(self.config.drain_s)
        for job in left:
            job.done(job, -1, 0.0, Rejected("shutdown", ErrorCode.BUSY, "the edge is shutting down"))

    async def _expire_loop(self) -> None:
        period = max(0.01, min(0.05, self.config.reassembly_timeout_s / 5))
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(period)
            # how late the loop woke us: a stall of the loop (or of the whole process) shows here
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - t0 - period))
            try:
                for item in self.reassembler.expire(time.monotonic()):
                    self._dispatch(item)
            except Exception:  # noqa: BLE001 - the timer must survive anything
                log.exception("reassembly expiry failed")

    def _on_batch(self, n: int, seconds: float) -> None:
        self.metrics.batch.observe(n)
        self.metrics.observe_latency("model", seconds)

    # --- datagram / stream frames ----------------------------------------------------------

    def handle_frame(self, data: bytes, transport: str, reply: Callable[[bytes], None],
                     t_recv: float | None = None) -> None:
        """One frame from a datagram or stream link; answers through `reply` (never raises).
        `t_recv`: when it arrived (perf_counter; the kernel's stamp for UDP), default now."""
        if t_recv is None:
            t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame(transport)
        self.frame_rate.add()
        try:
            frame = self._check(data)
            if frame.frag_count == 1:
                if self.batcher.accepting and not self.batcher.admit(t_recv, time.perf_counter()):
                    # shed before the frame costs anything more (pilots, BER, queue, model)
                    self._busy(frame.fingerprint, frame.device_id, frame.seq, frame.header_copies,
                               transport, reply)
                    return
                self._submit(Inference.from_frame(frame), transport, reply, t_recv, admitted=True)
                return
            key = (frame.fingerprint, frame.device_id, frame.seq)
            self._reply_to[key] = (transport, reply)
            for item in self.reassembler.add(frame, time.monotonic()):
                self._dispatch(item, t_recv)
        except Rejected as rej:
            self._refuse(rej, data, reply, transport)
        except Exception:  # noqa: BLE001 - never a dead listener
            log.exception("internal error on a %s frame", transport)
            self._refuse(Rejected("internal", ErrorCode.INTERNAL, "internal error"), data, reply,
                         transport)

    def _check(self, data: bytes):
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            raise classify_frame_error(exc) from None
        if frame.kind != Kind.DATA:
            raise Rejected("bad_frame", ErrorCode.BAD_FRAME,
                           f"the edge accepts DATA frames only, got {frame.kind.name}")
        codec = self.codecs.get(frame.fingerprint)
        if codec is None:
            raise Rejected("unknown_codec", ErrorCode.UNKNOWN_CODEC,
                           f"unknown codec fingerprint {frame.fingerprint.hex()}; this edge serves "
                           f"{', '.join(self.codecs.fingerprints()) or 'none'}", 404)
        if frame.payload_bits != codec.payload_bits:
            raise Rejected("bad_payload", ErrorCode.BAD_FRAME,
                           f"payload of {frame.payload_bits} bits, codec {codec.fingerprint_hex} "
                           f"({codec.name}) takes {codec.payload_bits}", 422)
        return frame

    def _busy(self, fp: bytes, device_id: int, seq: int, copies: int, transport: str,
              reply: Callable[[bytes], None]) -> None:
        """Refuse an inference that could not be answered within its deadline: BUSY, counted."""
        self.metrics.reject("busy")
        self.devices.get(device_id, transport, time.monotonic()).rejected += 1
        self._send(reply, encode_error(fp, device_id, seq, ErrorCode.BUSY, BUSY_TEXT, copies))

    def _refuse(self, rej: Rejected, data: bytes, reply: Callable[[bytes], None],
                transport: str) -> None:
        self.metrics.reject(rej.reason)
        claimed = peek(data)
        fp, dev, seq = claimed.fingerprint, claimed.device_id, claimed.seq
        if rej.reason not in ("bad_frame", "crc"):  # the header is sound: the device is known
            self.devices.get(dev, transport, time.monotonic()).rejected += 1
        elif not self.config.reply_bad_frames:
            return
        self._send(reply, encode_error(fp, dev, seq, rej.code, rej.message))

    @staticmethod
    def _send(reply: Callable[[bytes], None], data: bytes) -> None:
        try:
            reply(data)
        except Exception:  # noqa: BLE001 - a vanished peer must not hurt the server
            log.debug("reply failed", exc_info=True)

    def _dispatch(self, item: Assembled, t_recv: float | None = None) -> None:
        """An inference left the reassembler (complete, timed out or evicted): queue it."""
        transport, reply = self._reply_to.pop(item.key, ("udp", None))
        if reply is None:
            return
        if not item.complete:
            self.metrics.incomplete.inc()
        self._submit(Inference.from_assembled(item), transport, reply, t_recv or time.perf_counter())

    def _submit(self, item: Inference, transport: str, reply: Callable[[bytes], None],
                t_recv: float, admitted: bool = False) -> None:
        if not admitted and self.batcher.accepting and not self.batcher.admit(t_recv, time.perf_counter()):
            # shed before the inference costs anything more (BER estimate, queue slot, model time)
            self._busy(item.fingerprint, item.device_id, item.seq, item.header_copies, transport, reply)
            return
        codec = self.codecs.get(item.fingerprint)
        job = self._job(item, transport, codec, t_recv, self._frame_done)
        job.meta = (item, reply, job.meta)
        if not self.batcher.submit(job):
            reason = "busy" if self.batcher.accepting else "shutdown"
            self.metrics.reject(reason)
            job.meta[2].rejected += 1
            self._send(reply, encode_error(item.fingerprint, item.device_id, item.seq, ErrorCode.BUSY,
                                           BUSY_TEXT if reason == "busy" else "shutting down",
                                           item.header_copies))

    def _job(self, item: Inference, transport: str, codec: ServedCodec, t_recv: float,
             done: Callable) -> Job:
        stats = self.devices.get(item.device_id, transport, time.monotonic())
        stats.frames += 1
        ber = self.ber.update(item.device_id, item.pilot_errors, item.pilot_bits, item.snr_hint)
        stats.ber = ber
        # the device's stats ride along (meta) so that answering needs no second table look-up
        return Job(codec, item.payload, item.erased, ber, done, t_recv, stats)

    def _frame_done(self, job: Job, label: int, confidence: float, error) -> None:
        item, reply, stats = job.meta
        if isinstance(error, Expired):
            self.metrics.reject("busy")
            stats.rejected += 1
            self._send(reply, encode_error(item.fingerprint, item.device_id, item.seq, ErrorCode.BUSY,
                                           BUSY_TEXT, item.header_copies))
            return
        if error is not None:
            rej = error if isinstance(error, Rejected) else Rejected(
                "internal", ErrorCode.INTERNAL, "internal error in the model")
            self.metrics.reject(rej.reason)
            self._send(reply, encode_error(item.fingerprint, item.device_id, item.seq, rej.code,
                                           rej.message, item.header_copies))
            return
        self._send(reply, encode_reply(item.fingerprint, item.device_id, item.seq, label, confidence,
                                       job.ber, item.header_copies))
        self._account(job, stats, item.truth, label)

    def _account(self, job: Job, stats: DeviceStats, truth: int | None, label: int) -> None:
        now = time.perf_counter()
        m = self.metrics
        m.inference(job.codec.name)
        m.ber.observe(job.ber)
        total = now - job.t_recv
        m.observe_latency("queue", job.t_start - job.t_recv)
        m.observe_latency("total", total)
        self.latencies.add(total * 1000.0)
        self.answered += 1
        self.answer_rate.add()
        stats.answered += 1
        if truth is not None:
            stats.truth += 1
            m.truth += 1
            if truth == label:
                stats.correct += 1
                m.correct += 1

    # --- HTTP ------------------------------------------------------------------------------

    async def infer_http(self, data: bytes) -> dict:
        """One whole inference in one DATA frame over HTTP; raises Rejected with an HTTP status."""
        t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame("http")
        self.frame_rate.add()
        try:
            frame = self._check(data)
        except Rejected as rej:
            self.metrics.reject(rej.reason)
            raise
        if frame.frag_count != 1:
            self.metrics.reject("bad_frame")
            raise Rejected("bad_frame", ErrorCode.UNSUPPORTED,
                           f"HTTP takes a whole inference in one frame; this is fragment "
                           f"{frame.frag_index + 1} of {frame.frag_count} (send fragments over UDP "
                           f"or serial, or frame with a larger MTU)", 422)
        item = Inference.from_frame(frame)
        if self.batcher.accepting and not self.batcher.admit(t_recv, time.perf_counter()):
            self.metrics.reject("busy")
            raise Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", 503)
        codec = self.codecs.get(frame.fingerprint)
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(job: Job, label: int, confidence: float, error) -> None:
            if not future.done():
                future.set_result((label, confidence, error))

        job = self._job(item, "http", codec, t_recv, done)
        if not self.batcher.submit(job):
            reason = "busy" if self.batcher.accepting else "shutdown"
            self.metrics.reject(reason)
            raise Rejected(reason, ErrorCode.BUSY, "edge overloaded: retry later", 503)
        label, confidence, error = await future
        if isinstance(error, Expired):
            error = Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", 503)
        if error is not None:
            rej = error if isinstance(error, Rejected) else Rejected(
                "internal", ErrorCode.INTERNAL, "internal error in the model", 500)
            if rej.reason == "shutdown":
                rej.http_status = 503
            self.metrics.reject(rej.reason)
            raise rej
        self._account(job, job.meta, item.truth, label)
        t_end = time.perf_counter()
        return {
            "label": label, "class_name": codec.class_name(label), "confidence": confidence,
            "ber": job.ber, "codec": codec.fingerprint_hex, "device_id": item.device_id,
            "seq": item.seq, "truth": item.truth,
            "timings": {"queue_ms": (job.t_start - t_recv) * 1e3, "model_ms": job.t_model * 1e3,
                        "total_ms": (t_end - t_recv) * 1e3},
        }

    # --- dashboard ---------------------------------------------------------------------------

    def snapshot(self, max_devices: int = 32) -> dict:
        """Live figures for the dashboard (bounded size)."""
        now = time.monotonic()
        self.snapshots += 1
        truth, correct = self.metrics.truth, self.metrics.correct
        return {
            "uptime_s": round(time.time() - self.started, 1), "snapshots": self.snapshots,
            "frames_total": self.received, "answered_total": self.answered,
            "frames_per_s": self.frame_rate.rate(), "answers_per_s": self.answer_rate.rate(),
            "queue_depth": len(self.batcher), "max_queue": self.batcher.max_queue,
            "batches": self.batcher.batches,
            "rejects": dict(self.metrics.reject_counts),
            "latency": self.latencies.percentiles(),
            "accuracy": (correct / truth) if truth else None, "truth_total": int(truth),
            "devices_total": len(self.devices), "devices": self.devices.top(max_devices, now),
            "codecs": [c.fingerprint_hex for c in self.codecs],
        }

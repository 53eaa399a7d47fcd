"""The per-frame pipeline shared by every listener: check, authenticate, reassemble, estimate
BER, queue, reply (protocol v2, docs/PROTOCOL.md §4.3).

    bytes ─► length known? ─► header block (BCH) ─► device key + MIC ─► replay window ─►
    decrypt ─► Reassembler (erasures after the timeout) ─► BER (header bit errors, per device)
    ─► MicroBatcher ─► model thread ─► REPLY frame / JSON (authenticated, encrypted)

Nothing that fails authentication gets an answer: garbage, wrong keys, replays and late
fragments are only counted (`snn_edge_rejects_total{reason}`), so the edge is neither a
reflector nor an amplifier. The cheap checks come first (length, then one CRC-32 for a clean
block) and a source that keeps failing authentication is refused before any of them. An
authenticated frame ends in exactly one of: a REPLY, an authenticated ERROR, or a place in a
pending inference that is answered once. Nothing here blocks the loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from codec.wire.crypto import INSECURE_KEY, DeviceKeys
from codec.wire.frame import (
    BadDetail,
    BodyLengths,
    DataHeader,
    ErrorCode,
    ReplayWindow,
    check_length,
    encode_error,
    encode_reply,
    frame_lengths,
    body_lengths,
    fragment_slice,
    is_v1,
    read_header,
    verify,
)
from codec.wire.keys import KeyEntry
from codec.wire.reassembly import Assembled, Reassembler
from edge.batcher import Job, MicroBatcher
from edge.ber import BerEstimator
from edge.codecs import CodecRegistry, ServedCodec
from edge.stats import DeviceStats, DeviceTable, EdgeMetrics, LatencyRing, RateMeter
from snn.errors import FrameError, SnnError

log = logging.getLogger("snn.edge")


class Device:
    """One provisioned device: its keys, its codec and its replay window (for the edge's life;
    an insecure device's window only reconstructs counters, it refuses no replay)."""

    __slots__ = ("keys", "codec", "window", "fingerprint", "tokens", "t_tokens")

    def __init__(self, keys: DeviceKeys, codec: ServedCodec | None, fingerprint: bytes | None,
                 replay: bool = True) -> None:
        self.keys = keys
        self.codec = codec
        self.fingerprint = fingerprint
        self.window = ReplayWindow() if replay else None
        self.tokens = -1.0            # the device's rate-limit bucket (-1: full, not yet used)
        self.t_tokens = 0.0

    def over_rate(self, rate: float, now: float) -> bool:
        """Token bucket (burst 2 s worth): whether this inference exceeds the device's rate."""
        burst = 2.0 * rate
        self.tokens = burst if self.tokens < 0 else min(burst, self.tokens + (now - self.t_tokens) * rate)
        self.t_tokens = now
        if self.tokens < 1.0:
            return True
        self.tokens -= 1.0
        return False


class Inference:
    """One whole authenticated inference as the pipeline sees it (one frame or reassembled)."""

    __slots__ = ("device", "counter", "payload", "erased", "bit_errors", "bits", "truth", "copies")

    def __init__(self, device: Device, counter: int, payload, erased, bit_errors: int, bits: int,
                 truth: int | None, copies: int = 1) -> None:
        self.device = device
        self.counter = counter
        self.payload = payload
        self.erased = erased          # None when every byte arrived, else bool per payload byte
        self.bit_errors = bit_errors  # header bits flipped: the frame's own BER measurement
        self.bits = bits
        self.truth = truth
        self.copies = copies          # the reply is sent as robustly as the request came

    @property
    def device_id(self) -> int:
        return self.device.keys.device_id


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
    max_body: int = 65536
    drain_s: float = 1.5
    auth_failures_per_s: float = 50.0   # per source; beyond it a source is refused unread
    auth_failure_burst: float = 200.0
    max_sources: int = 4096             # sources tracked by the failure limiter (LRU)
    device_rate: float = 1000.0         # inferences per s per authenticated device (burst 2x); beyond: BUSY
    keys: dict[int, KeyEntry] | None = None   # provisioned devices (`snn edge serve --keys`)
    insecure: bool = False              # without keys: any device id under the all-zero key
    state_path: str | None = None       # the replay windows' highest counters, kept across restarts


class Rejected(Exception):
    """A frame or request refused with a reason (metrics label), an ERROR code and a message.
    `answer` is False for what failed authentication: nothing may be sent back."""

    def __init__(self, reason: str, code: ErrorCode, message: str, http_status: int = 400,
                 detail: int = 0, answer: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message
        self.http_status = http_status
        self.detail = detail
        self.answer = answer


def _silent(reason: str, message: str, status: int = 403) -> Rejected:
    return Rejected(reason, ErrorCode.BAD_FRAME, message, status, answer=False)


class SourceLimiter:
    """Token bucket per source address for frames that fail authentication: a flood of garbage
    from one source is refused before any BCH or AES work once its bucket is empty, so it
    cannot starve keyed devices. Bounded LRU of sources."""

    def __init__(self, rate: float, burst: float, max_sources: int) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets: dict = {}

    def blocked(self, source, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            return False
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[0], bucket[1] = tokens, now
        return tokens < 1.0

    def failed(self, source, now: float) -> None:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[source] = [self.burst, now]
        bucket[0] -= 1.0


class EdgeCore:
    """State of one edge server: keys, codecs, reassembly, BER estimates, devices, metrics,
    batcher. `config.keys`: the provisioned devices (`codec.wire.keys.load_keys`); without
    them `config.insecure` accepts any device id under the public all-zero key (no replay
    window, no secrecy: for tests and demos on loopback)."""

    def __init__(self, codecs: CodecRegistry, config: EdgeConfig | None = None) -> None:
        keys = (config or EdgeConfig()).keys
        if keys is None and not (config or EdgeConfig()).insecure:
            raise SnnError("the edge needs --keys FILE (make one with: snn keys new --device ID -o FILE); "
                           "--insecure serves without authentication")
        self.codecs = codecs
        self.config = config or EdgeConfig()
        cfg = self.config
        self.insecure = keys is None
        self.metrics = EdgeMetrics()
        self.devices = DeviceTable(self.metrics, cfg.max_devices)
        self.ber = BerEstimator(decay=cfg.ber_decay, max_devices=cfg.max_devices)
        self.reassembler = Reassembler(cfg.reassembly_timeout_s, cfg.max_pending)
        self.batcher = MicroBatcher(cfg.max_batch, cfg.max_wait_ms / 1000.0, cfg.max_queue,
                                    self.metrics, on_batch=self._on_batch)
        self.metrics.queue_depth.set_function(self.batcher.__len__)
        self.limiter = SourceLimiter(cfg.auth_failures_per_s, cfg.auth_failure_burst, cfg.max_sources)
        self.latencies = LatencyRing()
        self.frame_rate = RateMeter()
        self.answer_rate = RateMeter()
        self.started = time.time()
        self.answered = 0
        self.received = 0
        self.snapshots = 0
        self._reply_to: dict[tuple, tuple[str, Callable]] = {}
        self._expire_task: asyncio.Task | None = None
        self._last_v1_log = 0.0
        self.running = False
        self._keyed: dict[int, Device] = {}
        self._insecure_devices: dict[int, Device] = {}
        served = list(codecs)
        default = served[0] if served else None
        for entry in (keys or {}).values():
            codec = default if entry.fingerprint is None else codecs.get(entry.fingerprint)
            self._keyed[entry.device_id] = Device(DeviceKeys(entry.device_id, entry.key), codec,
                                                  entry.fingerprint)
        sizes = {c.payload_bytes for c in served} | {d.codec.payload_bytes for d in self._keyed.values() if d.codec}
        for d in self._keyed.values():
            if d.codec is None:
                log.warning("device %d's codec %s is not served here: its frames are refused",
                            d.keys.device_id, d.fingerprint.hex() if d.fingerprint else "?")
        self._lengths = frozenset().union(*(frame_lengths(n) for n in sizes)) if sizes else frozenset()
        self._body_lengths = BodyLengths(frozenset(), frozenset())
        for n in sizes:
            self._body_lengths = self._body_lengths | body_lengths(n)
        self._state_dirty = False
        self._load_state()
        if self.insecure:
            log.warning("INSECURE: serving without --keys: any device id is accepted under the public "
                        "all-zero key; frames can be forged and read by anyone, and replays are answered")

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
        self.save_state()
        left = await self.batcher.drain(self.config.drain_s)
        for job in left:
            job.done(job, -1, 0.0, Rejected("shutdown", ErrorCode.BUSY, "the edge is shutting down"))

    async def _expire_loop(self) -> None:
        period = max(0.01, min(0.05, self.config.reassembly_timeout_s / 5))
        last_save = time.monotonic()
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(period)
            # how late the loop woke us: a stall of the loop (or of the whole process) shows here
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - t0 - period))
            try:
                now = time.monotonic()
                for item in self.reassembler.expire(now):
                    self._dispatch(item)
                if now - last_save >= 1.0:
                    last_save = now
                    self.save_state()
            except Exception:  # noqa: BLE001 - the timer must survive anything
                log.exception("reassembly expiry failed")

    def _on_batch(self, n: int, seconds: float) -> None:
        self.metrics.batch.observe(n)
        self.metrics.observe_latency("model", seconds)

    # --- replay windows across restarts ----------------------------------------------------

    def _load_state(self) -> None:
        """Restore each key's highest counter: a restarted edge neither reopens old counters to
        replay nor loses track of devices whose counters passed 2^16 (only low bits travel)."""
        path = self.config.state_path
        if not path or self.insecure:
            return
        import json
        import os
        if not os.path.exists(path):
            return
        try:
            highest = json.loads(open(path, encoding="utf-8").read())["highest"]
            for dev, value in highest.items():
                device = self._keyed.get(int(dev))
                if device is not None and device.window is not None:
                    device.window.highest = int(value)
                    device.window.bitmap = (1 << ReplayWindow.SIZE) - 1  # all at or below: used
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise SnnError(f"edge counter state {path} is damaged: remove it only if no device may "
                           f"replay (old frames would be answered again)") from None

    def save_state(self) -> None:
        """Write the windows' highest counters (atomically); called about once a second."""
        path = self.config.state_path
        if not path or self.insecure or not self._state_dirty:
            return
        import json
        import os
        self._state_dirty = False
        doc = {"format": "snn-edge-counters/1",
               "highest": {str(d): dev.window.highest for d, dev in self._keyed.items()
                           if dev.window is not None and dev.window.highest >= 0}}
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, path)
        except OSError:
            self._state_dirty = True
            log.warning("cannot write the edge counter state %s", path, exc_info=True)

    # --- datagram / stream frames ----------------------------------------------------------

    def handle_frame(self, data: bytes, transport: str, reply: Callable[[bytes], None],
                     source=None) -> None:
        """One frame from a datagram or stream link; answers through `reply` (never raises).
        `source` (the sender's IP address) keys the limiter of authentication failures: a source
        over its budget still gets frames whose header block arrives clean through (one CRC-32
        and one AES-CMAC), so a keyed device behind the same address keeps working."""
        t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame(transport)
        self.frame_rate.add()
        now = time.monotonic()
        # a source over its failure budget gets the cheap path only: a raw b0 of a v2 DATA frame,
        # then a clean block and its MIC
        limited = source is not None and self.limiter.blocked(source, now)
        if limited and (not data or data[0] & 0xF0 != 0x80):
            self.metrics.reject("rate_limited")
            return
        try:
            device, header, counter = self._authenticate(data, repair=not limited)
            item = self._open(device, header, counter, now)
            if item is None:
                self._reply_to.setdefault((device.keys.device_id, counter), (transport, reply))
                return
            self._submit(item, transport, reply, t_recv)
        except Rejected as rej:
            if not rej.answer and source is not None:
                self.limiter.failed(source, now)
            self.metrics.reject(rej.reason)
            if rej.answer:
                self._send(reply, encode_error(rej.device.keys, rej.counter, rej.code, rej.detail,
                                               rej.copies))
        except Exception:  # noqa: BLE001 - never a dead listener; nothing is said to the sender
            log.exception("internal error on a %s frame", transport)
            self.metrics.reject("internal")

    def _authenticate(self, data: bytes, repair: bool = True) -> tuple[Device, DataHeader, int]:
        """Length, header block, key, MIC and replay window; Rejected(answer=False) on failure."""
        if len(data) not in self._lengths:
            if is_v1(data):
                self._log_v1()
                raise _silent("version", "a v1 frame: upgrade the device to protocol v2", 426)
            raise _silent("length", f"no device sends a {len(data)}-byte frame", 400)
        try:
            header = read_header(data, self._body_lengths, repair)
        except FrameError as exc:
            raise _silent("rate_limited" if not repair else
                          "damaged" if exc.reason == "damaged" else
                          "version" if exc.reason == "version" else "bad_frame", str(exc), 400) from None
        device = self._device(header.device_id)
        if device is None:
            raise _silent("auth", "frame does not authenticate")
        window = device.window
        base = window.reconstruct(header.counter_low)
        # the nearest counter with these low bits, else up to three wraps ahead (a device that
        # sent thousands of frames the edge never saw, or a first contact after a long run)
        for counter in (base, base + 4096, base + 8192, base + 12288):
            if verify(header, device.keys, counter):
                break
        else:
            raise _silent("auth", "frame does not authenticate")
        codec = self._codec_for(device, header)
        if codec is not None:
            try:  # truncated or extended: silent, and the counter stays unused
                check_length(header, codec.payload_bytes)
            except FrameError as exc:
                raise _silent("length", str(exc), 400) from None
        if window.seen(counter) and not self.reassembler.is_open(header.device_id, counter) \
                and not self.insecure:
            raise _silent("replay", "counter already used (a replay, a duplicate or a late fragment)", 409)
        if not window.seen(counter):
            window.accept(counter)
            self._state_dirty = True
        return device, header, counter

    def _device(self, device_id: int) -> Device | None:
        if not self.insecure:
            return self._keyed.get(device_id)
        device = self._insecure_devices.get(device_id)
        if device is None:
            if len(self._insecure_devices) >= self.config.max_devices:
                self._insecure_devices.pop(next(iter(self._insecure_devices)))
            device = Device(DeviceKeys(device_id, INSECURE_KEY), None, None)
            self._insecure_devices[device_id] = device
        return device

    def _codec_for(self, device: Device, header: DataHeader) -> ServedCodec | None:
        """The device's codec; insecure devices are matched by the length their frame implies."""
        if not self.insecure:
            return device.codec
        for codec in self.codecs:
            piece = fragment_slice(codec.payload_bytes, header.frag_count, header.frag_index)
            if len(piece) == len(header.body) and piece:
                return codec
        return None

    def _open(self, device: Device, header: DataHeader, counter: int, now: float) -> Inference | None:
        """Checks an authenticated frame may fail (each answered with an authenticated ERROR),
        then decrypt; the whole inference, or None while fragments are missing."""
        def refuse(reason, code, message, status, detail=0):
            rej = Rejected(reason, code, message, status, detail)
            rej.device, rej.counter, rej.copies = device, counter, header.copies
            self.devices.get(header.device_id, "udp", now).rejected += 1
            return rej

        codec = self._codec_for(device, header)
        if codec is None:
            fp = device.fingerprint.hex() if device.fingerprint else "?"
            raise refuse("unknown_codec", ErrorCode.UNKNOWN_CODEC,
                         f"device {header.device_id}'s codec {fp} is not served here; this edge serves "
                         f"{', '.join(self.codecs.fingerprints()) or 'none'}", 404)
        piece = check_length(header, codec.payload_bytes)   # checked before the replay window
        if header.truth is not None and header.truth >= len(codec.classes):
            raise refuse("bad_truth", ErrorCode.BAD_FRAME,
                         f"truth label {header.truth} is not a class of codec {codec.fingerprint_hex} "
                         f"({len(codec.classes)} classes)", 422, BadDetail.TRUTH)
        if header.frag_index == 0 and device.over_rate(self.config.device_rate, now):
            raise refuse("device_rate", ErrorCode.BUSY, f"device {header.device_id} is over its rate of "
                         f"{self.config.device_rate:g} inferences/s", 429, 50)
        plain = device.keys.crypt(0, counter, header.body, piece.start)
        if header.frag_count == 1:
            return Inference(device, counter, plain, None, header.bit_errors, header.bits,
                             header.truth, header.copies)
        seen = self.reassembler.inconsistent, self.reassembler.duplicates
        done = self.reassembler.add(header, counter, plain, codec.payload_bytes, now)
        if self.reassembler.inconsistent != seen[0]:
            self.metrics.reject("bad_frame")
        elif self.reassembler.duplicates != seen[1]:
            self.metrics.reject("replay")   # a fragment index received twice: no second answer
        mine = None
        for item in done:
            if item.key == (header.device_id, counter) and item.complete:
                mine = self._from_assembled(device, item)
            else:
                self._dispatch(item)
        return mine

    def _from_assembled(self, device: Device, item: Assembled) -> Inference:
        return Inference(device, item.counter, bytes(item.payload),
                         None if item.complete else item.erased, item.bit_errors, item.bits,
                         item.truth, item.copies)

    def _log_v1(self) -> None:
        now = time.monotonic()
        if now - self._last_v1_log > 10.0:
            self._last_v1_log = now
            log.warning("v1 frames received (not answered: v1 cannot be authenticated); "
                        "upgrade those devices to protocol v2")

    @staticmethod
    def _send(reply: Callable[[bytes], None], data: bytes) -> None:
        try:
            reply(data)
        except Exception:  # noqa: BLE001 - a vanished peer must not hurt the server
            log.debug("reply failed", exc_info=True)

    def _dispatch(self, item: Assembled, t_recv: float | None = None) -> None:
        """An inference left the reassembler (complete, timed out or evicted): queue it."""
        transport, reply = self._reply_to.pop(item.key, ("udp", None))
        device = self._device(item.device_id)
        if reply is None or device is None:
            return
        if not item.complete:
            self.metrics.incomplete.inc()
        self._submit(self._from_assembled(device, item), transport, reply,
                     t_recv or time.perf_counter())

    def _submit(self, item: Inference, transport: str, reply: Callable[[bytes], None],
                t_recv: float) -> None:
        self._reply_to.pop((item.device_id, item.counter), None)
        codec = item.device.codec if not self.insecure else self._codec_by_size(len(item.payload))
        job = self._job(item, transport, codec, t_recv, self._frame_done)
        job.meta = (item, reply, job.meta)
        if not self.batcher.submit(job):
            reason = "busy" if self.batcher.accepting else "shutdown"
            self.metrics.reject(reason)
            job.meta[2].rejected += 1
            self._send(reply, encode_error(item.device.keys, item.counter, ErrorCode.BUSY,
                                           10 if reason == "busy" else 0, item.copies))

    def _codec_by_size(self, nbytes: int) -> ServedCodec:
        return next(c for c in self.codecs if c.payload_bytes == nbytes)

    def _job(self, item: Inference, transport: str, codec: ServedCodec, t_recv: float,
             done: Callable) -> Job:
        stats = self.devices.get(item.device_id, transport, time.monotonic())
        stats.frames += 1
        ber = self.ber.update(item.device_id, item.bit_errors, item.bits)
        stats.ber = ber
        # the device's stats ride along (meta) so that answering needs no second table look-up
        return Job(codec, item.payload, item.erased, ber, done, t_recv, stats)

    def _frame_done(self, job: Job, label: int, confidence: float, error) -> None:
        item, reply, stats = job.meta
        if error is not None:
            rej = error if isinstance(error, Rejected) else Rejected(
                "internal", ErrorCode.INTERNAL, "internal error in the model")
            self.metrics.reject(rej.reason)
            self._send(reply, encode_error(item.device.keys, item.counter, rej.code,
                                           10 if rej.code == ErrorCode.BUSY else 0, item.copies))
            return
        self._send(reply, encode_reply(item.device.keys, item.counter, label, confidence,
                                       job.ber, item.copies))
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
        """One whole inference in one authenticated DATA frame over HTTP; raises Rejected with an
        HTTP status (403 and no detail for what does not authenticate)."""
        t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame("http")
        self.frame_rate.add()
        try:
            device, header, counter = self._authenticate(data)
            if header.frag_count != 1:
                rej = Rejected("bad_frame", ErrorCode.BAD_FRAME,
                               f"HTTP takes a whole inference in one frame; this is fragment "
                               f"{header.frag_index + 1} of {header.frag_count} (send fragments over "
                               f"UDP or serial, or frame with a larger MTU)", 422, BadDetail.FRAGMENT)
                raise rej
            item = self._open(device, header, counter, time.monotonic())
        except Rejected as rej:
            self.metrics.reject(rej.reason)
            if not rej.answer:
                rej.message = "frame does not authenticate"
            raise
        codec = item.device.codec if not self.insecure else self._codec_by_size(len(item.payload))
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
            "counter": item.counter, "truth": item.truth,
            "reply": encode_reply(item.device.keys, item.counter, label, confidence, job.ber,
                                  item.copies).hex(),
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

"""The per-frame pipeline shared by every listener: authenticate, reassemble, estimate BER, queue, reply.

    bytes ─► source rate limit ─► parse_data (length look-up, BCH, MIC, exact length, decrypt)
    ─► replay window ─► device rate limit ─► Reassembler (erasures after the timeout) ─► BER
    estimate (bits the header decoding corrected, smoothed per device) ─► MicroBatcher ─►
    model thread ─► authenticated REPLY frame / JSON

Every frame ends in exactly one of: a REPLY; an authenticated ERROR (unknown codec, busy,
internal); a place in a pending inference that is answered once it is complete or timed out;
or silence, counted by reason — whatever fails authentication, replays, late and duplicate
fragments, rate-limited sources (docs/PROTOCOL.md §6: the edge never answers what it cannot
authenticate, and never with more bytes than it received). Nothing here blocks the loop.
"""
from __future__ import annotations

import asyncio
import binascii
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from codec.wire.frame import (
    VERSION,
    DataFrame,
    ErrorCode,
    encode_error,
    encode_reply,
    parse_data,
)
from codec.wire.control import block_is_codeword, is_control_length
from codec.wire.keys import DeviceKey
from codec.wire.reassembly import Assembled, Reassembler
from edge.auth import Keyring, TokenBuckets
from edge.batcher import Expired, Job, MicroBatcher
from edge.ber import BerEstimator
from edge.codecs import CodecRegistry, ServedCodec
from edge.stats import DeviceStats, DeviceTable, EdgeMetrics, LatencyRing, RateMeter
from snn.errors import FrameError

log = logging.getLogger("snn.edge")
BUSY_RETRY_10MS = 5     # a BUSY error asks the device to retry after 50 ms


class Inference:
    """One whole inference as the pipeline sees it (a single frame or a reassembled set)."""

    __slots__ = ("device_id", "counter", "payload", "erased", "header_errors", "header_bits", "truth",
                 "copies", "peer")

    def __init__(self, device_id, counter, payload, erased, header_errors, header_bits, truth, copies,
                 peer) -> None:
        self.device_id = device_id
        self.counter = counter
        self.payload = payload
        self.erased = erased          # None when every byte arrived, else bool per payload byte
        self.header_errors = header_errors
        self.header_bits = header_bits
        self.truth = truth
        self.copies = copies          # the reply is sent as robustly as the request came
        self.peer = peer              # edge.auth.Peer: key, fingerprint, codec

    @classmethod
    def from_frame(cls, frame: DataFrame) -> "Inference":
        """A single-fragment frame, without the reassembler (the hot path)."""
        return cls(frame.device_id, frame.counter, frame.data, None, frame.header_errors,
                   frame.header_bits, frame.truth, frame.copies, frame.peer)

    @classmethod
    def from_assembled(cls, item: Assembled) -> "Inference":
        return cls(item.device_id, item.counter, bytes(item.payload), None if item.complete else item.erased,
                   item.header_errors, item.header_bits, item.truth, item.header_copies, item.peer)


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
    keys: dict[int, DeviceKey] | None = None   # provisioned devices (codec.wire.keys.load_keys)
    insecure: bool = False                     # no keys: every device with the all-zero key
    source_fail_rate: float = 200.0            # failed datagrams/s a source may send (0: no limit)
    source_fail_burst: float = 400.0
    device_rate: float = 5000.0                # authenticated frames/s per device (0: no limit)
    device_burst: float = 10000.0
    state_path: str | None = None              # replay windows kept across restarts (FILE.edge-state)
    keys_path: str | None = None               # the keys file, reloaded on SIGHUP and when it changes
    state_every_s: float = 1.0                 # how often changed windows are written
    extra: dict = field(default_factory=dict)
    model_workers: int = 1      # batches in flight at once (Ray Serve: one per replica)
    deadline_ms: float = 50.0   # from a frame's arrival to its answer; later ones are refused BUSY
    busy_rate: float = 1000.0   # BUSY replies/s under overload; past it refusals are silent (0: no limit)


class Rejected(Exception):
    """A frame or request refused with a reason (metrics label), an ERROR code (None: answer
    nothing) and a message. `frame` is set when the frame authenticated: only then may an ERROR
    go back."""

    def __init__(self, reason: str, code: ErrorCode | None, message: str, http_status: int = 400,
                 frame: DataFrame | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message
        self.http_status = http_status
        self.frame = frame


_HTTP_STATUS = {"length": 400, "damaged": 400, "version": 400, "kind": 400, "fragment": 400, "auth": 401,
                "bad_length": 400, "replay": 409, "late": 409, "rate_limited": 429}


def _v1_claim(data: bytes) -> int | None:
    """The device id a v1 frame claims, when it is one (magic 0xA7, valid CRC-16 of its header)."""
    if len(data) >= 31 and data[0] == 0xA7 and data[1] >> 4 == 1 and \
            binascii.crc_hqx(data[:17], 0xFFFF) == int.from_bytes(data[17:19], "big"):
        return int.from_bytes(data[7:9], "big")
    return None


def _stamp(path) -> tuple | None:
    """What changes when a file is replaced or rewritten (inode, size, mtime), None when absent."""
    import os
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class EdgeCore:
    """State of one edge server: codecs, keys, reassembly, BER estimates, devices, metrics, batcher."""

    def __init__(self, codecs: CodecRegistry, config: EdgeConfig | None = None) -> None:
        self.codecs = codecs
        self.config = config or EdgeConfig()
        cfg = self.config
        if cfg.keys is None and not cfg.insecure:
            raise ValueError("EdgeConfig needs keys, or insecure=True")
        self.keyring = Keyring(codecs, cfg.keys, cfg.insecure)
        if cfg.state_path:
            restored = self.keyring.load_windows(cfg.state_path)
            if restored:
                log.info("restored %d replay windows from %s", restored, cfg.state_path)
        self.source_limits = TokenBuckets(cfg.source_fail_rate, cfg.source_fail_burst)
        self.device_limits = TokenBuckets(cfg.device_rate, cfg.device_burst, max_keys=65536)
        self.busy_replies = TokenBuckets(cfg.busy_rate, max(1.0, cfg.busy_rate / 10), max_keys=1)
        self.metrics = EdgeMetrics()
        self.devices = DeviceTable(self.metrics, cfg.max_devices)
        self.ber = BerEstimator(decay=cfg.ber_decay, max_devices=cfg.max_devices)
        self.reassembler = Reassembler(cfg.reassembly_timeout_s, cfg.max_pending)
        from edge.resync import ResyncDesk
        self.resync = ResyncDesk(self.keyring, self.commit_now)   # docs/PROTOCOL.md §4.7
        self.batcher = MicroBatcher(cfg.max_batch, cfg.max_wait_ms / 1000.0, cfg.max_queue,
                                    self.metrics, on_batch=self._on_batch, workers=cfg.model_workers,
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
        for entry in self.keyring.unserved:
            log.warning("device %d is provisioned for codec %s, which this edge does not serve: its "
                        "frames get UNKNOWN_CODEC", entry.device_id, entry.fingerprint.hex())

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
        self._save_windows()
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
                if now - last_save >= self.config.state_every_s:
                    last_save = now
                    self._save_windows()
                    if self._keys_changed():
                        self.reload_keys("keys file changed")
            except Exception:  # noqa: BLE001 - the timer must survive anything
                log.exception("reassembly expiry failed")

    def reload_keys(self, why: str = "SIGHUP") -> bool:
        """Read the keys file again (docs/PROTOCOL.md §4.4): every device whose key is unchanged keeps
        its replay window and traffic; a bad file keeps the old keys and logs one line."""
        path = self.config.keys_path
        if not path or self.keyring.insecure:
            return False
        from codec.wire.keys import load_keys
        from snn.errors import SnnError
        self._keys_stamp = _stamp(path)
        try:
            keys = load_keys(path)
        except SnnError as exc:
            log.warning("%s: keys not reloaded, the old keys stay in use: %s", why, exc)
            return False
        change = self.keyring.reload(keys)
        for dev in change["removed"] + change["rekeyed"]:
            self.resync.open.pop(dev, None)
        log.info("%s: reloaded %s: %d device(s); added %s, revoked %s, re-keyed %s", why, path, len(keys),
                 change["added"] or "none", change["removed"] or "none", change["rekeyed"] or "none")
        for entry in self.keyring.unserved:
            if entry.device_id in change["added"] or entry.device_id in change["rekeyed"]:
                log.warning("device %d is provisioned for codec %s, which this edge does not serve",
                            entry.device_id, entry.fingerprint.hex())
        return True

    def _keys_changed(self) -> bool:
        path = self.config.keys_path
        if not path or self.keyring.insecure:
            return False
        if not hasattr(self, "_keys_stamp"):
            self._keys_stamp = _stamp(path)
            return False
        return _stamp(path) != self._keys_stamp

    def commit_now(self) -> None:
        """Write the replay windows durably now (raises OSError): a resync's ACK waits for it."""
        if self.config.state_path and not self.keyring.insecure:
            self.keyring.save_windows(self.config.state_path)

    def _control(self, data: bytes, reply) -> None:
        """A resynchronisation frame (docs/PROTOCOL.md §4.7): answered by the desk, or counted."""
        reason = self.resync.handle(data, reply)
        if reason not in ("resync_offer", "resync_ack"):
            self.metrics.reject(reason if reason in ("auth", "damaged", "version", "kind", "length", "replay",
                                                     "rate_limited", "internal", "resync_refused") else "auth")

    def _save_windows(self) -> None:
        """Persist the replay windows' highest counters (a crash loses at most state_every_s of
        them: frames of that last second could be replayed once after the restart)."""
        if not self.config.state_path:
            return
        try:
            self.keyring.save_windows(self.config.state_path)
        except OSError:
            log.warning("cannot write the edge counter state %s", self.config.state_path, exc_info=True)

    def _on_batch(self, n: int, seconds: float) -> None:
        self.metrics.batch.observe(n)
        self.metrics.observe_latency("model", seconds)

    # --- datagram / stream frames ----------------------------------------------------------

    def handle_frame(self, data: bytes, transport: str, reply: Callable[[bytes], None],
                     source: object = None, t_recv: float | None = None, admitted: bool = False) -> None:
        """One frame from a datagram or stream link (`source`: the sender's address, for rate
        limits); answers through `reply` only when the frame authenticated (never raises).
        `t_recv`: when it arrived (perf_counter; the kernel's stamp for UDP), default now.
        `admitted`: the listener already ran admission for it, before authenticating (a second
        check a few microseconds later would refuse frames at the margin, at full cost)."""
        if source is not None and self.source_limits.empty(source):
            # a source over its failure budget: the cheapest possible refusal, before anything else
            self.metrics.reject("rate_limited")
            return
        if t_recv is None:
            t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame(transport)
        self.frame_rate.add()
        control = is_control_length(len(data))
        if control and block_is_codeword(data):      # a clean control block: the likely reading
            self._control(data, reply)
            return
        try:
            try:
                frame = self._open(data, source, reply)
            except Rejected as rej:
                if control and rej.frame is None:    # a control frame with bit errors in its first copy?
                    if self.resync.handle(data, reply) in ("resync_offer", "resync_ack"):
                        return
                raise
            if frame.frag_count == 1:
                if not admitted and self.batcher.accepting and not self.batcher.admit(t_recv, time.perf_counter()):
                    # shed before the frame costs anything more (BER, queue slot, model time)
                    self._busy(frame.peer, frame.device_id, frame.counter, frame.copies, transport, reply)
                    return
                self._submit(Inference.from_frame(frame), transport, reply, t_recv, admitted=True)
                return
            key = (frame.device_id, frame.counter)
            self._reply_to[key] = (transport, reply)
            before = self.reassembler.duplicates
            for item in self.reassembler.add(frame, time.monotonic()):
                self._dispatch(item, t_recv)
            if self.reassembler.duplicates != before:
                self.metrics.reject("duplicate")
        except Rejected as rej:
            self._refuse(rej, reply)
        except Exception:  # noqa: BLE001 - never a dead listener
            log.exception("internal error on a %s frame", transport)
            self.metrics.reject("internal")

    def _open(self, data: bytes, source: object, reply: Callable[[bytes], None] | None = None) -> DataFrame:
        """Authenticate, replay-check and rate-limit one DATA frame; Rejected otherwise."""
        ring = self.keyring
        try:
            frame = parse_data(data, ring.peers, ring.full_counter, ring.sizes)
        except FrameError as exc:
            if source is not None:
                self.source_limits.take(source)
            if reply is not None and data[:1] == b"\xa7":   # a v1 frame? (cheap: one byte first)
                self._v1_upgrade(data, source, reply)
            raise Rejected(exc.reason, None, str(exc), _HTTP_STATUS.get(exc.reason, 400)) from None
        dev = frame.device_id
        window = ring.window(dev)
        verdict = window.verdict(frame.counter)
        if verdict == "gap":   # authenticated, but too far ahead: never moves the window (§4.3)
            raise Rejected("gap", ErrorCode.RESYNC, f"device {dev}: counter {frame.counter} is beyond the "
                           f"window (highest {window.top}): resynchronise", 409, frame)
        if verdict == "replay":
            if not (frame.frag_count > 1 and self.reassembler.pending(dev, frame.counter)):
                reason = "late" if frame.frag_count > 1 else "replay"
                raise Rejected(reason, None, f"device {dev}: counter {frame.counter} was used already",
                               _HTTP_STATUS[reason])
        else:
            window.mark(frame.counter)
        ring.last_source[dev] = source
        if not self.device_limits.take(dev):
            raise Rejected("rate_limited", None, f"device {dev} is over its frame rate", 429)
        if frame.peer.codec is None:
            raise Rejected("unknown_codec", ErrorCode.UNKNOWN_CODEC,
                           f"device {dev} is provisioned for codec {frame.peer.fingerprint.hex()}; this edge "
                           f"serves {', '.join(self.codecs.fingerprints()) or 'none'}", 404, frame)
        return frame

    def _v1_upgrade(self, data: bytes, source: object, reply: Callable[[bytes], None]) -> None:
        """A v1 frame from the address a provisioned device last authenticated from: tell it to
        upgrade (an authenticated ERROR, 13 bytes, shorter than any v1 frame). Anyone else: silence."""
        dev = _v1_claim(data)
        if dev is None or source is None or self.keyring.insecure or self.keyring.last_source.get(dev) != source:
            return
        peer, window = self.keyring.peers(dev)[0], self.keyring.window(dev)
        self._send(reply, encode_error(key=peer.key, device_id=dev, fingerprint=peer.fingerprint,
                                       counter=max(0, window.top), code=ErrorCode.UNSUPPORTED, detail=VERSION))

    def _busy(self, peer, device_id: int, counter: int, copies: int, transport: str,
              reply: Callable[[bytes], None]) -> None:
        """Refuse an authenticated inference that could not be answered within its deadline:
        BUSY at once (before BER, queue slot or model time), counted."""
        self.metrics.reject("busy")
        self.devices.get(device_id, transport, time.monotonic()).rejected += 1
        self._send(reply, self._error(peer, device_id, counter, ErrorCode.BUSY, copies))

    def _refuse(self, rej: Rejected, reply: Callable[[bytes], None] | None) -> None:
        self.metrics.reject(rej.reason)
        frame = rej.frame
        if frame is None or rej.code is None or reply is None:
            return  # nothing goes back to what did not authenticate
        self.devices.get(frame.device_id, "udp", time.monotonic()).rejected += 1
        self._send(reply, self._error(frame.peer, frame.device_id, frame.counter, rej.code, frame.copies))

    @staticmethod
    def _error(peer, device_id: int, counter: int, code: ErrorCode, copies: int) -> bytes:
        return encode_error(key=peer.key, device_id=device_id, fingerprint=peer.fingerprint, counter=counter,
                            code=code, arg=BUSY_RETRY_10MS if code == ErrorCode.BUSY else 0, copies=copies)

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
            self._busy(item.peer, item.device_id, item.counter, item.copies, transport, reply)
            return
        job = self._job(item, transport, item.peer.codec, t_recv, self._frame_done)
        job.meta = (item, reply, job.meta)
        if not self.batcher.submit(job):
            reason = "busy" if self.batcher.accepting else "shutdown"
            self.metrics.reject(reason)
            job.meta[2].rejected += 1
            self._send(reply, self._error(item.peer, item.device_id, item.counter, ErrorCode.BUSY, item.copies))

    def _job(self, item: Inference, transport: str, codec: ServedCodec, t_recv: float,
             done: Callable) -> Job:
        stats = self.devices.get(item.device_id, transport, time.monotonic())
        stats.frames += 1
        ber = self.ber.update(item.device_id, item.header_errors, item.header_bits)
        stats.ber = ber
        if item.truth is not None and item.truth >= len(codec.classes):
            self.metrics.reject("bad_truth")  # not scored: a label this codec cannot give
            item.truth = None
        # the device's stats ride along (meta) so that answering needs no second table look-up
        return Job(codec, item.payload, item.erased, ber, done, t_recv, stats)

    def _frame_done(self, job: Job, label: int, confidence: float, error) -> None:
        item, reply, stats = job.meta
        if isinstance(error, Expired):  # it could no longer be answered in time: refused unrun
            self.metrics.reject("busy")
            stats.rejected += 1
            self._send(reply, self._error(item.peer, item.device_id, item.counter, ErrorCode.BUSY, item.copies))
            return
        if error is not None:
            rej = error if isinstance(error, Rejected) else Rejected(
                "internal", ErrorCode.INTERNAL, "internal error in the model")
            self.metrics.reject(rej.reason)
            self._send(reply, self._error(item.peer, item.device_id, item.counter,
                                          rej.code or ErrorCode.INTERNAL, item.copies))
            return
        peer = item.peer
        self._send(reply, encode_reply(key=peer.key, device_id=item.device_id, fingerprint=peer.fingerprint,
                                       counter=item.counter, label=label, confidence=confidence, ber=job.ber,
                                       copies=item.copies))
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
        stats.last_label, stats.last_class = label, job.codec.class_name(label)
        if truth is not None:
            stats.truth += 1
            m.truth += 1
            if truth == label:
                stats.correct += 1
                m.correct += 1

    # --- HTTP ------------------------------------------------------------------------------

    async def infer_http(self, data: bytes) -> dict:
        """One whole inference in one authenticated DATA frame over HTTP (the same frame as on UDP,
        docs/PROTOCOL.md §7); raises Rejected with an HTTP status."""
        t_recv = time.perf_counter()
        self.received += 1
        self.metrics.frame("http")
        self.frame_rate.add()
        try:
            frame = self._open(data, None)
        except Rejected as rej:
            self.metrics.reject(rej.reason)
            if rej.code is None:  # HTTP is a connection, not a reflector: a problem body says why
                rej.code = ErrorCode.BAD_FRAME
            raise
        if frame.frag_count != 1:
            self.metrics.reject("bad_frame")
            raise Rejected("bad_frame", ErrorCode.BAD_FRAME,
                           f"HTTP takes a whole inference in one frame; this is fragment "
                           f"{frame.frag_index + 1} of {frame.frag_count} (send fragments over UDP "
                           f"or serial, or frame with a larger MTU)", 422)
        item = Inference.from_frame(frame)
        if self.batcher.accepting and not self.batcher.admit(t_recv, time.perf_counter()):
            self.metrics.reject("busy")
            raise Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", 503)
        codec = item.peer.codec
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
            "counter": item.counter, "truth": item.truth,
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

"""The per-frame pipeline shared by every listener: admit, authenticate, reassemble, estimate BER, queue, answer.

    listener ─► EdgeCore.offer ─► admission by deadline ─► source rate limit ─► parse_data (length
    look-up, BCH, MIC, exact length, decrypt) ─► replay window ─► device rate limit ─► Reassembler
    (erasures after the timeout) ─► BER estimate (bits the header decoding corrected, smoothed per
    device) ─► MicroBatcher ─► model thread ─► authenticated REPLY frame (or an `Answer` on a future)

`offer` is the one way in: every listener (UDP, serial, HTTP; a LoRa gateway, ...) hands it a
frame and gets nothing else of the core but a `Front` (`EdgeCore.front`), which adds the two
signals a link reader needs (when to stop reading, a reply it could not send). Every frame ends
in exactly one of: a REPLY; an authenticated refusal (`Rejected` with an ERROR code: unknown
codec, busy, internal); a place in a pending inference that is answered once it is complete or
timed out; or silence, counted by reason — whatever fails authentication, replays, late and
duplicate fragments, rate-limited sources, frames shed unread under overload (docs/PROTOCOL.md
§6: the edge never answers what it cannot authenticate, and never with more bytes than it
received). Nothing here blocks the loop.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Protocol, Union

from codec.wire.control import block_is_codeword, is_control_length
from codec.wire.frame import (
    DataFrame,
    ErrorCode,
    encode_error,
    encode_reply,
    parse_data,
)
from codec.wire.keys import DeviceKey
from codec.wire.reassembly import Assembled, Reassembler
from edge.auth import Keyring, Peer, TokenBuckets
from edge.budgets import FailureBudgets, claimed_id
from edge.batcher import Expired, Job, MicroBatcher
from edge.ber import BerEstimator
from edge.codecs import CodecRegistry, ServedCodec
from edge.replay_state import ReplayState
from edge.resync import ANSWERED, ResyncDesk
from edge.stats import TRANSPORTS, DeviceStats, DeviceTable, EdgeMetrics, LatencyRing, RateMeter
from snn.errors import FrameError

log = logging.getLogger("snn.edge")
BUSY_RETRY_10MS = 5     # a BUSY error asks the device to retry after 50 ms

# Where a frame's answer goes: a datagram or stream link passes a callable that sends the bytes of
# an authenticated REPLY/ERROR frame; a transport that holds a connection open (HTTP) passes a
# future, resolved with an `Answer` or failed with the `Rejected` refusal.
ReplyTo = Union[Callable[[bytes], None], asyncio.Future]


@dataclass
class EdgeConfig:
    """Tunables of the pipeline; `snn edge serve` takes its flags' defaults from these fields.
    Validated on construction (ValueError naming the field and its flag)."""

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
    source_fail_burst: float | None = None     # default: twice the rate
    fail_cpu: float = 0.25                     # CPU s/s all frames failing authentication may cost (0: no limit)
    claim_fail_rate: float = 10.0              # failed MIC checks/s per claimed device id (0: no limit)
    pair_fail_rate: float = 2000.0             # failures/s from a device's own last (source, id) pair
    device_rate: float = 5000.0                # authenticated frames/s per device (0: no limit)
    device_burst: float | None = None          # default: twice the rate
    state_path: str | None = None              # replay state kept across restarts (KEYS.edge-state; required)
    reset_replay_state: bool = False           # start with every device's history unknown (logged)
    keys_path: str | None = None               # the keys file: reloaded on SIGHUP and when it changes
    extra: dict = field(default_factory=dict)
    model_workers: int = 1      # batches in flight at once (Ray Serve: one per replica)
    deadline_ms: float = 50.0   # from a frame's arrival to its answer; later ones are refused BUSY
    busy_rate: float = 1000.0   # BUSY replies/s under overload; past it refusals are silent (0: no limit)

    def __post_init__(self) -> None:
        if self.source_fail_burst is None:
            self.source_fail_burst = 2 * self.source_fail_rate
        if self.device_burst is None:
            self.device_burst = 2 * self.device_rate
        at_least_one = {"max_batch": "--max-batch", "max_queue": "--queue", "max_devices": "--max-devices",
                        "max_pending": None, "max_body": None, "model_workers": "--replicas"}
        for name, flag in at_least_one.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{_named(name, flag)} must be an integer of at least 1, got {value!r}")
        positive = {"reassembly_timeout_s": "--reassembly-timeout", "deadline_ms": "--deadline-ms"}
        not_negative = {"max_wait_ms": "--max-wait-ms", "drain_s": None, "source_fail_rate": "--source-fail-rate",
                        "fail_cpu": "--fail-cpu", "claim_fail_rate": "--claim-fail-rate",
                        "pair_fail_rate": "--pair-fail-rate",
                        "source_fail_burst": None, "device_rate": "--device-rate", "device_burst": None,
                        "busy_rate": "--busy-rate"}
        for names, ok, what in ((positive, lambda v: v > 0, "more than 0"),
                                (not_negative, lambda v: v >= 0, "at least 0")):
            for name, flag in names.items():
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or not ok(value):
                    raise ValueError(f"{_named(name, flag)} must be a number {what}, got {value!r}")
        if not 0 <= self.ber_decay < 1:
            raise ValueError(f"ber_decay must lie in [0, 1), got {self.ber_decay!r}")
        if self.keys is not None and self.insecure:
            raise ValueError("keys (--keys) and insecure (--insecure) exclude each other")
        if self.keys is not None and self.state_path is None:
            raise ValueError("a keyed edge keeps its replay state: state_path (KEYS.edge-state) is required")
        if self.keys is None and not self.insecure:
            raise ValueError("the edge needs keys (--keys FILE; make one with 'snn keys new --device ID -o FILE'), "
                             "or insecure (--insecure) to accept every device unauthenticated (trusted links only)")

    @classmethod
    def default(cls, name: str):
        """The default of field `name` (what the CLI shows and uses)."""
        for f in fields(cls):
            if f.name == name:
                return f.default
        raise KeyError(name)


def _stamp(path: str | None) -> tuple | None:
    """What changes when a file is replaced or rewritten (inode, size, mtime), None when absent."""
    import os
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _named(name: str, flag: str | None) -> str:
    return f"{name} ({flag})" if flag else name


class Request(Protocol):
    """What an authenticated refusal answers: the request's device, counter, copies and key."""

    device_id: int
    counter: int
    copies: int
    peer: Peer


class Rejected(Exception):
    """A frame or request refused: `reason` (its metrics label), `code` (the ERROR code that goes
    back, None: nothing goes back) and a message. `request` is set when the frame authenticated:
    only then may an ERROR go back, under that request's key and counter. HTTP maps the reason to
    a status (edge/app.py)."""

    def __init__(self, reason: str, code: ErrorCode | None, message: str,
                 request: Request | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message
        self.request = request
        self.frame: bytes | None = None   # the authenticated ERROR frame, once the core made it


@dataclass(slots=True, eq=False)
class Inference:
    """One whole inference as the pipeline sees it (a single frame or a reassembled set)."""

    device_id: int
    counter: int
    payload: bytes
    erased: object                # None when every byte arrived, else bool per payload byte
    header_errors: int
    header_bits: int
    truth: int | None
    copies: int                   # the reply is sent as robustly as the request came
    peer: Peer                    # key, fingerprint, codec

    @classmethod
    def from_frame(cls, frame: DataFrame) -> "Inference":
        """A single-fragment frame, without the reassembler (the hot path)."""
        return cls(frame.device_id, frame.counter, frame.data, None, frame.header_errors,
                   frame.header_bits, frame.truth, frame.copies, frame.peer)

    @classmethod
    def from_assembled(cls, item: Assembled) -> "Inference":
        return cls(item.device_id, item.counter, bytes(item.payload), None if item.complete else item.erased,
                   item.header_errors, item.header_bits, item.truth, item.header_copies, item.peer)


@dataclass(slots=True, eq=False)
class Pending(Job):
    """An inference queued for the model, with everything its answer needs (the batcher's `Job`
    plus who asked, over which transport, where the answer goes, whose statistics it counts)."""

    device_id: int = 0
    counter: int = 0
    copies: int = 1
    peer: Peer | None = None
    truth: int | None = None
    transport: str = "udp"
    reply: ReplyTo | None = None
    stats: DeviceStats | None = None
    state_version: int = 0          # the replay state's version its REPLY waits for (on disk)


@dataclass(slots=True, eq=False)
class Answer:
    """An answered inference, for a transport whose reply is a future (HTTP): the authenticated
    REPLY frame a datagram link would get, and its plaintext for whoever may see it."""

    frame: bytes
    label: int
    class_name: str
    confidence: float
    ber: float
    codec: ServedCodec
    device_id: int
    counter: int
    truth: int | None
    t_recv: float               # perf_counter: arrival, batch start, seconds in the model
    t_start: float
    t_model: float


class Front:
    """What a listener gets of the core: the one entry for its transport and two signals.

    `offer(data, arrival, reply, source)` is `EdgeCore.offer` for this transport; `pause_s()`
    says how long a reader that can leave frames in a bounded buffer (a UDP socket's kernel
    queue) should stop reading because the model is saturated; `reply_failed()` counts a reply
    the link could not send; `refused(reason)` counts a request the listener itself refused
    before it was a frame (HTTP: wrong content type, too large); `watch_kernel_drops(fn)` exports
    the datagrams the kernel dropped for the listener's socket."""

    __slots__ = ("transport", "_core")

    def __init__(self, core: "EdgeCore", transport: str) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r} (known: {', '.join(TRANSPORTS)})")
        self.transport = transport
        self._core = core

    def offer(self, data: bytes, arrival: float | None, reply: ReplyTo, source: object = None) -> None:
        self._core.offer(data, arrival, reply, source, self.transport)

    def pause_s(self) -> float:
        return self._core.pause_s()

    def reply_failed(self) -> None:
        self._core.metrics.reply_failures.labels(self.transport).inc()

    def refused(self, reason: str) -> None:
        self._core.metrics.reject(reason)

    def watch_kernel_drops(self, count: Callable[[], float]) -> None:
        self._core.metrics.kernel_drops.set_function(count)


class EdgeCore:
    """State of one edge server: codecs, keys, reassembly, BER estimates, devices, metrics, batcher."""

    def __init__(self, codecs: CodecRegistry, config: EdgeConfig) -> None:
        self.codecs = codecs
        self.config = cfg = config
        self.keyring = Keyring(codecs, cfg.keys, cfg.insecure)
        self.state = ReplayState(None if cfg.insecure else cfg.state_path, cfg.keys, cfg.reset_replay_state)
        self.budgets = FailureBudgets(cfg.fail_cpu, cfg.claim_fail_rate, cfg.source_fail_rate,
                                      cfg.source_fail_burst, cfg.pair_fail_rate)
        self.device_limits = TokenBuckets(cfg.device_rate, cfg.device_burst, max_keys=65536)
        self.busy_replies = TokenBuckets(cfg.busy_rate, max(1.0, cfg.busy_rate / 10), max_keys=1)
        self.metrics = EdgeMetrics()
        self.devices = DeviceTable(self.metrics, cfg.max_devices)
        self.ber = BerEstimator(decay=cfg.ber_decay, max_devices=cfg.max_devices)
        self.reassembler = Reassembler(cfg.reassembly_timeout_s, cfg.max_pending)
        self.resync = ResyncDesk(self.keyring, self.state)     # docs/PROTOCOL.md §4.7
        self._keys_stamp = _stamp(cfg.keys_path)
        self.batcher = MicroBatcher(cfg.max_batch, cfg.max_wait_ms / 1000.0, cfg.max_queue,
                                    self.metrics, on_batch=self._on_batch, workers=cfg.model_workers,
                                    deadline_s=cfg.deadline_ms / 1000.0)
        self.metrics.queue_depth.set_function(self.batcher.__len__)
        self.metrics.watch_state(self.state)
        self.latencies = LatencyRing()
        self.frame_rate = RateMeter()
        self.answer_rate = RateMeter()
        self._rated = (0, 0)        # (received, answered) when the rates were last sampled
        self.started = time.time()
        self.answered = 0
        self.received = 0
        self.snapshots = 0
        self._reply_to: dict[tuple, tuple[str, ReplyTo]] = {}
        self._expire_task: asyncio.Task | None = None
        self.running = False
        for entry in self.keyring.unserved:
            log.warning("device %d is provisioned for codec %s, which this edge does not serve: its "
                        "frames get UNKNOWN_CODEC", entry.device_id, entry.fingerprint.hex())

    # --- lifecycle -------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Before `start`: warm every codec up in the model thread itself (TorchScript specialises
        per thread as well as per shape, and a first call in a fresh thread held the GIL, and so
        the loop, for ~0.5 s), and seed the admission cost model from the slowest codec's
        measured batches of 1 and of max_batch."""
        run, top = self.batcher.run_in_model_thread, self.config.max_batch
        for codec in self.codecs:
            run(codec.warm_up, top)
        small, full = max((run(c.batch_seconds, 1), run(c.batch_seconds, top)) for c in self.codecs)
        self.batcher.calibrate(small, full)

    def capacity_fps(self) -> float:
        """Frames/s the model serves in full batches (from the admission cost model)."""
        return self.batcher.capacity_fps()

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
        await self.state.close()

    async def _expire_loop(self) -> None:
        period = max(0.01, min(0.05, self.config.reassembly_timeout_s / 5))
        last_look = time.monotonic()
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(period)
            # how late the loop woke us: a stall of the loop (or of the whole process) shows here
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - t0 - period))
            try:
                now = time.monotonic()
                # the dashboard's rates, sampled here rather than counted per frame
                self.frame_rate.add(self.received - self._rated[0], now)
                self.answer_rate.add(self.answered - self._rated[1], now)
                self._rated = (self.received, self.answered)
                for item in self.reassembler.expire(now):
                    self._dispatch(item)
                if now - last_look >= 1.0:
                    last_look = now
                    self.resync.expire(now)
                    if self._keys_changed():
                        self.reload_keys("keys file changed")
            except Exception:  # noqa: BLE001 - the timer must survive anything
                log.exception("reassembly expiry failed")

    def reload_keys(self, why: str = "SIGHUP") -> bool:
        """Read the keys file again (`snn keys add|revoke|rotate`, docs/PROTOCOL.md §4.4): every
        device whose key is unchanged keeps its replay window and traffic; a revoked or re-keyed
        id loses its window (under a new key it is a new device); a bad file keeps the old keys
        and logs one line. True when the new keys are served."""
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
        for dev in change["removed"]:
            self.state.forget(dev)
            self.resync.forget(dev)
        for dev in change["added"] + change["rekeyed"]:
            self.state.forget(dev, keys[dev].key)
            self.resync.forget(dev)
        log.info("%s: reloaded %s: %d device(s); added %s, revoked %s, re-keyed %s", why, path, len(keys),
                 change["added"] or "none", change["removed"] or "none", change["rekeyed"] or "none")
        for entry in self.keyring.unserved:
            if entry.device_id in change["added"] or entry.device_id in change["rekeyed"]:
                log.warning("device %d is provisioned for codec %s, which this edge does not serve",
                            entry.device_id, entry.fingerprint.hex())
        return True

    def _keys_changed(self) -> bool:
        path = self.config.keys_path
        return bool(path) and not self.keyring.insecure and _stamp(path) != self._keys_stamp

    def _on_batch(self, n: int, seconds: float) -> None:
        self.metrics.batch.observe(n)
        self.metrics.observe_latency("model", seconds)

    # --- the one entry -----------------------------------------------------------------------

    def front(self, transport: str) -> Front:
        """The handle a listener of `transport` ("udp", "serial", "http", ...) gets of the core."""
        return Front(self, transport)

    def offer(self, data: bytes, arrival: float | None, reply: ReplyTo, source: object = None,
              transport: str = "udp") -> None:
        """Admit and answer one frame: the one entry of every listener. Returns nothing, never
        raises, never blocks the loop; call it on the loop.

        `data`: one DATA frame (a datagram, a COBS-decoded stream frame, an HTTP body).
        `arrival`: when it arrived (`time.perf_counter()` scale; a UDP listener converts the
        kernel's receive stamp), None for now: its deadline (`deadline_ms`) runs from there.
        `reply`: where the answer goes — a callable that sends the bytes of an authenticated
        REPLY/ERROR frame back over the link (called at most once, perhaps later, from the loop),
        or an `asyncio.Future` for a transport that holds a connection open (HTTP), resolved with
        an `Answer` or failed with the `Rejected` refusal; such a transport takes whole
        inferences (one-fragment frames) only.
        `source`: the sender's address (hashable: a UDP (host, port), an HTTP client's host), or
        None for a link with one sender (serial): with the claimed device id it names the pair
        a device last authenticated from, whose frames go first (edge.budgets).
        `transport`: the metrics label ("udp", "serial", "http", ...).

        Admission is decided here, before authentication: a frame that can no longer be answered
        within its deadline is refused BUSY after it authenticated, within a budget of BUSY
        replies per second (each costs a full authentication), past which a link's frames are
        dropped unread (counted "expired" when it waited past its deadline before it was read,
        "shed" otherwise); a future always gets its refusal. Nothing goes back to a frame that
        fails authentication, to a replay or to a late or duplicate fragment. What fails
        authentication is bounded as a whole, per claimed device id and per source, before any
        decoding (edge.budgets: "unverified", "rate_limited")."""
        now = time.perf_counter()
        t_recv = now if arrival is None else arrival
        future = reply if isinstance(reply, asyncio.Future) else None
        batcher = self.batcher
        in_time = not batcher.accepting or batcher.admit(t_recv, now)
        if not in_time and future is None and not self.busy_replies.take(None, now):
            self.metrics.reject("expired" if now - t_recv > batcher.deadline_s else "shed")
            return
        # what has not authenticated spends budgets that no device's own frames need (edge.budgets)
        sender = transport if source is None else source
        claim = claimed_id(data)
        verdict = self.budgets.check(sender, claim, now)
        if verdict.__class__ is str:    # dropped unread: the cheapest possible refusal
            self.metrics.reject(verdict)
            if future is not None and not future.done():
                future.set_exception(Rejected(verdict, None, "over the budget of frames that fail "
                                                             "authentication: retry later"))
            return
        self.received += 1
        self.metrics.frame(transport)
        control = is_control_length(len(data))
        if control and block_is_codeword(data):      # a clean control block: the likely reading (§4.7)
            self._control(data, reply, sender, claim, verdict, now)
            return
        try:
            frame = self._open(data, sender, claim, verdict, now)
            if frame.frag_count == 1:
                item = Inference.from_frame(frame)
                if in_time:
                    self._submit(item, transport, reply, t_recv)
                else:   # shed before the frame costs anything more (BER, queue slot, model time)
                    self._refuse(Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", item),
                                 reply, transport)
                return
            if future is not None:
                raise Rejected("bad_frame", ErrorCode.BAD_FRAME,
                               f"{transport.upper()} takes a whole inference in one frame; this is fragment "
                               f"{frame.frag_index + 1} of {frame.frag_count} (send fragments over UDP "
                               f"or serial, or frame with a larger MTU)", frame)
            # the answer goes where the inference's first fragment came from: a later fragment
            # (even one that authenticates: a replay of a captured one) never redirects it
            self._reply_to.setdefault((frame.device_id, frame.counter), (transport, reply))
            for assembled in self.reassembler.add(frame, time.monotonic()):
                self._dispatch(assembled, t_recv)
        except FrameError as exc:
            if control and self._control(data, reply, sender, claim, verdict, now, retry=True):
                return                                # a control frame with bit errors in its first copy
            self.metrics.reject(exc.reason)
            if future is not None and not future.done():
                future.set_exception(Rejected(exc.reason, None, str(exc)))
        except Rejected as rej:
            self._refuse(rej, reply, transport)
        except Exception:  # noqa: BLE001 - never a dead listener
            log.exception("internal error on a %s frame", transport)
            self._refuse(Rejected("internal", None, "internal error (see the server log)"), reply, transport)

    _CONTROL_REASONS = frozenset(("auth", "damaged", "version", "kind", "length", "replay", "rate_limited",
                                  "resync_refused"))

    def _control(self, data: bytes, reply: ReplyTo, sender: object, claim: int, verdict: int,
                 now: float, retry: bool = False) -> bool:
        """A resynchronisation frame (docs/PROTOCOL.md §4.7), answered by the desk on datagram and
        stream links (a transport that holds a connection open, HTTP, takes DATA only). Counted
        like DATA: what fails authentication is charged to the budgets and gets silence (`retry`:
        it failed as DATA already, and was charged and is counted as that). True when it
        authenticated (answered or refused after authentication)."""
        if isinstance(reply, asyncio.Future):
            if not reply.done():
                reply.set_exception(Rejected("kind", None, "control frames (§4.7) go over UDP or serial"))
            self.metrics.reject("kind")
            return True
        reason = self.resync.handle(data, reply)
        if reason in ANSWERED:
            return True
        if reason in ("replay", "rate_limited", "resync_refused"):
            self.metrics.reject(reason)
            return True
        if not retry:
            self.budgets.failed(verdict, sender, claim, reason, time.perf_counter() - now, now)
            self.metrics.reject(reason if reason in self._CONTROL_REASONS else "auth")
        return False

    def pause_s(self) -> float:
        """How long a reader should stop reading (0.0: keep reading). Overload: when the model
        has half a deadline of work queued, about half a batch. The kernel holds what arrives
        meanwhile (a bounded `--udp-queue`) and drops what overflows, counted: the cheapest
        refusal there is, and it leaves the CPU to the model. (Pausing only when a fresh frame
        would be refused let the model's queue grow to the whole deadline, so every frame read
        after waiting in the kernel was refused: 3 reads per frame answered at 4x load.) Frames
        read after the pause carry their arrival time, so one that waited too long is still
        refused by admission."""
        b = self.batcher
        if not b.accepting:
            return 0.0
        now = time.perf_counter()
        if b.admit(now - b.deadline_s / 2, now):
            return 0.0
        return min(0.005, max(0.0005, b.expected_s(b.max_batch) / 2))

    # --- authentication ---------------------------------------------------------------------

    def _open(self, data: bytes, sender: object, claim: int, verdict: int, now: float) -> DataFrame:
        """Authenticate, replay-check and rate-limit one DATA frame; FrameError when it does not
        authenticate, Rejected when it is refused after it did. A
        duplicate fragment of a pending inference is refused before it spends the device's
        rate budget (a replayed fragment must not cost the device anything)."""
        ring, state = self.keyring, self.state
        try:
            frame = parse_data(data, ring.peers, state.full_counter, ring.sizes)
        except FrameError as exc:   # did not authenticate: counted, charged, and never answered
            self.budgets.failed(verdict, sender, claim, exc.reason, time.perf_counter() - now, now)
            raise
        dev = frame.device_id
        verdict = state.window(dev).verdict(frame.counter)
        if verdict == "replay":
            if not (frame.frag_count > 1 and self.reassembler.pending(dev, frame.counter)):
                reason = "late" if frame.frag_count > 1 else "replay"
                raise Rejected(reason, None, f"device {dev}: counter {frame.counter} was used already")
            if self.reassembler.has_fragment(dev, frame.counter, frame.frag_index):
                raise Rejected("duplicate", None, f"device {dev}: fragment {frame.frag_index + 1} of counter "
                                                  f"{frame.counter} arrived already")
        elif verdict == "gap":      # authenticated, but it must not move the window (§4.3)
            raise Rejected("gap", ErrorCode.RESYNC, f"device {dev}: counter {frame.counter} is more than "
                                                    f"MAX_GAP above its window: resynchronise", frame)
        else:
            state.mark(dev, frame.counter)
            self.budgets.authenticated(dev, sender, now)
        if not self.device_limits.take(dev):
            raise Rejected("rate_limited", None, f"device {dev} is over its frame rate")
        if frame.peer.codec is None:
            raise Rejected("unknown_codec", ErrorCode.UNKNOWN_CODEC,
                           f"device {dev} is provisioned for codec {frame.peer.fingerprint.hex()}; this edge "
                           f"serves {', '.join(self.codecs.fingerprints()) or 'none'}", frame)
        return frame

    # --- refusals and replies ---------------------------------------------------------------

    def _refuse(self, rej: Rejected, reply: ReplyTo | None, transport: str,
                stats: DeviceStats | None = None) -> None:
        """Count a refusal; answer it only when the request authenticated and the refusal has a
        code (a future always learns why: HTTP is a connection, not a reflector)."""
        self.metrics.reject(rej.reason)
        req = rej.request
        if req is not None:
            if stats is None:
                stats = self.devices.get(req.device_id, transport, time.monotonic())
            stats.rejected += 1
        future = reply if isinstance(reply, asyncio.Future) else None
        if req is not None and rej.code is not None and reply is not None:
            rej.frame = self._error(req.peer, req.device_id, req.counter, rej.code, req.copies)
        if future is not None:
            if not future.done():
                future.set_exception(rej)
        elif rej.frame is not None:   # nothing goes back to what did not authenticate
            self._send(reply, rej.frame)

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

    # --- queueing ----------------------------------------------------------------------------

    def _dispatch(self, item: Assembled, t_recv: float | None = None) -> None:
        """An inference left the reassembler (complete, timed out or evicted): admit and queue it."""
        transport, reply = self._reply_to.pop(item.key, ("udp", None))
        if reply is None:
            return
        if not item.complete:
            self.metrics.incomplete.inc()
        now = time.perf_counter()
        t_recv = t_recv or now
        inference = Inference.from_assembled(item)
        if self.batcher.accepting and not self.batcher.admit(t_recv, now):
            self._refuse(Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", inference),
                         reply, transport)
            return
        self._submit(inference, transport, reply, t_recv)

    def _submit(self, item: Inference, transport: str, reply: ReplyTo, t_recv: float) -> None:
        codec = item.peer.codec
        stats = self.devices.get(item.device_id, transport, time.monotonic())
        stats.frames += 1
        ber = self.ber.update(item.device_id, item.header_errors, item.header_bits)
        stats.ber = ber
        truth = item.truth
        if truth is not None and truth >= len(codec.classes):
            self.metrics.reject("bad_truth")  # not scored: a label this codec cannot give
            truth = None
        job = Pending(codec, item.payload, item.erased, ber, self._done, t_recv, item.device_id, item.counter,
                      item.copies, item.peer, truth, transport, reply, stats, self.state.version)
        self.state.kick()       # the commit its REPLY needs runs while the model works
        if not self.batcher.submit(job):
            accepting = self.batcher.accepting
            self._refuse(Rejected("busy" if accepting else "shutdown", ErrorCode.BUSY,
                                  "edge overloaded: retry later" if accepting else "the edge is shutting down",
                                  job), reply, transport, stats)

    def _done(self, job: Pending, label: int, confidence: float, error) -> None:
        """The model answered (or refused) a queued inference: reply, and count it."""
        if error is not None:
            if isinstance(error, Expired):  # it could no longer be answered in time: refused unrun
                rej = Rejected("busy", ErrorCode.BUSY, "edge overloaded: retry later", job)
            elif isinstance(error, Rejected):
                rej, error.request = error, job
            else:
                rej = Rejected("internal", ErrorCode.INTERNAL, "internal error in the model", job)
            self._refuse(rej, job.reply, job.transport, job.stats)
            return
        if self.state.durable(job.state_version):
            self._answer(job, label, confidence)
        else:   # a REPLY vouches for its counter: not before that counter is on disk
            self.state.after(job.state_version, lambda: self._answer(job, label, confidence))

    def _answer(self, job: Pending, label: int, confidence: float) -> None:
        peer = job.peer
        frame = encode_reply(key=peer.key, device_id=job.device_id, fingerprint=peer.fingerprint,
                             counter=job.counter, label=label, confidence=confidence, ber=job.ber,
                             copies=job.copies)
        reply = job.reply
        if isinstance(reply, asyncio.Future):
            self._account(job, label)
            if not reply.done():
                codec = job.codec
                reply.set_result(Answer(frame, label, codec.class_name(label), confidence, job.ber, codec,
                                        job.device_id, job.counter, job.truth, job.t_recv, job.t_start,
                                        job.t_model))
            return
        self._send(reply, frame)
        self._account(job, label)

    def _account(self, job: Pending, label: int) -> None:
        now = time.perf_counter()
        m, stats, truth = self.metrics, job.stats, job.truth
        m.inference(job.codec.name)
        m.ber.observe(job.ber)
        total = now - job.t_recv
        m.observe_latency("queue", job.t_start - job.t_recv)
        m.observe_latency("total", total)
        self.latencies.add(total * 1000.0)
        self.answered += 1
        stats.answered += 1
        stats.last_label, stats.last_class = label, job.codec.class_name(label)
        if truth is not None:
            stats.truth += 1
            m.truth += 1
            if truth == label:
                stats.correct += 1
                m.correct += 1

    # --- operators' views ----------------------------------------------------------------------

    def health(self) -> dict:
        """Liveness, answered on the loop even when the model queue is full."""
        return {"status": "ok" if self.running else "stopping", "codecs": len(self.codecs),
                "queue_depth": len(self.batcher), "max_queue": self.batcher.max_queue,
                "uptime_s": round(time.time() - self.started, 1)}

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this edge."""
        return self.metrics.render()

    def register_collector(self, collector) -> None:
        """Export another component's figures (e.g. the HTTP connection guard) on /metrics."""
        self.metrics.registry.register(collector)

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

"""The device client: encode, pack, frame, send, and wait for the edge's label.

Policy (docs/PROTOCOL.md §4.3, §5.2, §7):

- up to `window` inferences are in flight at once;
- every transmission takes a fresh frame counter from the device's `CounterStore` (never reused
  under its key, persisted ahead across restarts); the first transmission of a process and every
  resend carry the long 32-bit counter so an edge that lost track resynchronises;
- an inference that gets no REPLY/ERROR within `timeout` seconds of its last transmission is
  resent whole, under a *new* counter, at most `retries` times, then counted lost; a late reply
  to an earlier transmission still counts (every counter of the inference stays pending).
  Nothing is ever resent because of bit errors: the device cannot see them and does not need to;
- replies are authenticated (MIC under the device's key): anything else is dropped and counted;
- a BUSY error is retried after a jittered back-off that doubles with each BUSY of that
  inference (`busy_backoff`: the delay the edge names x 2^k x a random 0.5-1.5, at most
  `timeout`; same bound), so a fleet refused together does not come back together; BAD_FRAME is
  resent at once;
  any other ERROR ends that inference, and UNKNOWN_CODEC / UNSUPPORTED end the run (every later
  inference would be refused too);
- the header copies (1, 3, 5; `auto` from the BER the edge reports, one step more on each resend)
  are degraded to what the MTU fits, never a reason to stop;
- a device that has no counter it may use — no state file, a state made for another key, or its
  counter past the limit the edge last vouched for (§4.3) — runs the resynchronisation exchange
  first (§4.7: RESYNC → OFFER → CONFIRM → ACK, no encrypted payload, no counter used); so does one
  told ERROR RESYNC, and one whose every inference went unanswered (once per run, before it gives
  up: the edge may have been reset, or a forged frame may have moved its window);
- when the edge never answers at all, a run over a data set stops after `give_up_after`
  inferences were lost (by default one window's worth), so an unreachable edge costs
  (1 + retries) x timeout, not count x that; a run over live input (a watched folder, stdin, a
  camera) goes on, counting each unanswered inference lost, since the edge may come back.

Per inference we record the encode time (ONNX + packing), bytes and frames on the air (COBS and
its delimiter included on stream links), time on air on a chosen link model, round-trip time
(first transmission to reply, so retries show up in it), the edge's answer and, when the truth is
known, whether it was right.

Images come as `device.sources.Sample`s from any iterable; a live source (a watched folder,
stdin, a camera) is read through a `Feeder` thread so that waiting for the next image never
holds up the replies and resends of the inferences in flight. Memory is bounded for runs of any
length: the summary's counts and means run over every inference, its percentiles and
`records` over the last `keep_records`.
"""
from __future__ import annotations

import random
import resource
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from codec.wire.frame import (
    HEADER_COPIES,
    ErrorCode,
    ErrorReply,
    encode_inference,
    fitting_copies,
    header_copies_for,
    parse_reply,
)
from codec.wire.control import (
    CONTROL_BLOCK_BYTES,
    STATUS_TEXT,
    ControlKind,
    ResyncStatus,
    encode_confirm,
    encode_resync,
    is_control_length,
    new_nonce,
    parse_control_down,
)
from codec.wire.keys import CounterStore, DeviceKey, ResyncNeeded
from device.sources import Feeder, Sample, Source
from snn.errors import FrameError, SnnError

FATAL_ERRORS = {ErrorCode.UNKNOWN_CODEC, ErrorCode.UNSUPPORTED}
MAX_BAD_CONTROL = 16     # downlink control frames failing their MIC before a resync attempt is dropped


@dataclass
class InferenceRecord:
    """One inference, as printed and saved."""

    index: int
    counter: int                 # of the last transmission
    truth: int | None
    encode_ms: float
    frames: int
    bytes_on_air: int            # one transmission, all fragments
    airtime_ms: float | None     # one transmission on the chosen link model
    attempts: int = 0
    status: str = "pending"      # ok | lost | error | unsent
    label: int | None = None
    confidence: float | None = None
    edge_ber: float | None = None
    rtt_ms: float | None = None
    error: str | None = None
    correct: bool | None = None
    header_copies: int = 1       # header block copies of the last transmission
    bytes_sent: int = 0          # every transmission, all fragments
    name: str | None = None      # the source's name for the image (file name, stdin:N, camera frame)
    done_at: float | None = None # wall-clock time (Unix seconds) the inference finished
    _counters: list = field(default_factory=list, repr=False)
    _payload: bytes = field(default=b"", repr=False)
    _frames: list = field(default_factory=list, repr=False)
    _first_sent: float = 0.0
    _due: float = 0.0
    _busy: int = 0               # BUSY replies so far (the back-off doubles with each)

    def public(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec; ru_maxrss would carry over
    the peak of the (possibly large) parent that forked us. Elsewhere: ru_maxrss (KiB on Linux,
    bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


class _Stopped(SnnError):
    """The run cannot go on (no counter can be had, or the edge refused the key)."""


class DeviceClient:
    """Runs inferences of an `OnnxEncoder` against an edge over a `channel.transports` Transport."""

    def __init__(self, encoder, transport, *, key: DeviceKey, counters: CounterStore | None = None,
                 mtu: int = 1400, link=None, timeout: float = 1.0, retries: int = 2, window: int = 4,
                 send_truth: bool = False, give_up_after: int | None = None, on_result=None,
                 header_copies: int | str = 1, keep_records: int = 10_000):
        if timeout <= 0:
            raise SnnError("--timeout must be > 0 seconds")
        if retries < 0 or window < 1:
            raise SnnError("--retries must be >= 0 and --window >= 1")
        if key.fingerprint is not None and key.fingerprint != encoder.info.fingerprint:
            raise SnnError(f"device {key.device_id} is provisioned for codec {key.fingerprint.hex()}, but this "
                           f"encoder is codec {encoder.info.fingerprint.hex()}: use the matching encoder or "
                           f"provision the device for this one")
        self.encoder = encoder
        self.transport = transport
        self.key = key
        self.device_id = key.device_id
        self.counters = counters if counters is not None else CounterStore(None)
        self._long_next = True   # the first transmission carries the whole counter (edge resync)
        self.mtu = int(mtu)
        self.link = link
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.window = int(window)
        self.send_truth = send_truth
        self.give_up_after = give_up_after if give_up_after is not None else self.window
        self._rng = random.Random(self.device_id * 7919 + time.monotonic_ns())  # jitter differs per device
        self.on_result = on_result
        if header_copies != "auto" and header_copies not in HEADER_COPIES:
            raise SnnError(f"--header-copies must be auto or one of {HEADER_COPIES}")
        self.header_copies = header_copies
        self.link_ber: float | None = None   # smoothed from the BER the edge reports in replies
        self.records: deque[InferenceRecord] = deque(maxlen=max(1, int(keep_records)))
        self.totals = {"count": 0, "sent": 0, "answered": 0, "lost": 0, "errors": 0, "scored": 0, "correct": 0,
                       "bytes_sent": 0, "transmissions": 0, "airtime_ms": 0.0, "airtime_n": 0, "edge_ber": 0.0}
        self.first_record: InferenceRecord | None = None
        self.source_error: SnnError | None = None   # a live source that failed mid-run (the run ends cleanly)
        self._done: list[InferenceRecord] = []
        self.stats = {"resends": 0, "duplicates": 0, "bad_frames": 0, "foreign_frames": 0, "busy": 0,
                      "bad_frame_errors": 0, "degraded": 0, "resyncs": 0, "resync_frames": 0,
                      "resync_rejected": 0}
        self.notes: list[str] = []          # what the device changed to keep going (said once each)
        self._pending_counters: dict[int, int] = {}   # low 16 bits -> full counter of a transmission
        self.fatal: str | None = None
        self.unreachable = False
        self._resync_due = False      # an ERROR RESYNC arrived: resynchronise before the next transmission
        self._resync_tried = False    # the once-per-run resync of a device that gets no answers
        self._live = False            # the run reads live input (it never gives up on the edge)
        self._pending: dict | None = None   # the run's pending inferences (replies during a resync)
        self._answered = 0
        self._cobs = None
        if getattr(transport, "stream", False):
            from codec.wire.cobs import cobs_frame
            self._cobs = cobs_frame

    # --- one inference ------------------------------------------------------------------

    def _on_air(self, frame: bytes) -> int:
        return len(self._cobs(frame)) if self._cobs else len(frame)

    def _airtime_ms(self, sizes: list[int]) -> float | None:
        if self.link is None:
            return None
        try:
            return round(sum(self.link.time_on_air_s(n) for n in sizes) * 1e3, 4)
        except ValueError:
            return None

    def prepare(self, index: int, image: np.ndarray, truth: int | None, name: str | None = None) -> InferenceRecord:
        """Encode and pack one image (framed when sent: each transmission has its own counter)."""
        payload, seconds = self.encoder.encode_one(image)
        rec = InferenceRecord(index=index, counter=-1, truth=truth, encode_ms=round(seconds * 1e3, 4),
                              frames=0, bytes_on_air=0, airtime_ms=None, name=name, _payload=payload)
        rec.header_copies = self._copies_now()
        return rec

    def _copies_now(self) -> int:
        """Header copies for a first transmission: fixed, or from the BER the edge reported."""
        if self.header_copies != "auto":
            return int(self.header_copies)
        return 1 if self.link_ber is None else header_copies_for(self.link_ber)

    def _frame(self, rec: InferenceRecord, copies: int, long_counter: bool) -> None:
        """Frame `rec` under a fresh counter with the most copies (<= `copies`) the MTU fits."""
        info = self.encoder.info
        truth = rec.truth if self.send_truth and rec.truth is not None and 0 <= rec.truth < 255 else None
        try:
            fit, _ = fitting_copies(info.payload_bytes, self.mtu, copies, truth is not None, long_counter)
        except ValueError as exc:
            raise SnnError(f"cannot frame {info.payload_bytes} payload bytes: {exc}") from None
        if fit < copies:
            self.stats["degraded"] += 1
            note = (f"MTU {self.mtu} fits at most {fit} header cop{'y' if fit == 1 else 'ies'} for "
                    f"{info.payload_bytes} B: sending {fit} instead of {copies}")
            if note not in self.notes:
                self.notes.append(note)
        counter = self._take_counter()
        frames = encode_inference(rec._payload, key=self.key.key, device_id=self.device_id,
                                  fingerprint=info.fingerprint, counter=counter, mtu=self.mtu, copies=fit,
                                  truth=truth, long_counter=long_counter, integrity=self.key.integrity)
        sizes = [self._on_air(f) for f in frames]
        rec._frames, rec.frames, rec.header_copies, rec.counter = frames, len(frames), fit, counter
        rec._counters.append(counter)
        # one pending transmission per low-16-bit value (§7): an older one with these low bits can
        # no longer be matched (a reply names only the low bits), so it stops being waited for
        self._pending_counters[counter & 0xFFFF] = counter
        rec.bytes_on_air, rec.airtime_ms = sum(sizes), self._airtime_ms(sizes)

    def _take_counter(self) -> int:
        """A fresh counter, after a resynchronisation when the device has none it may use."""
        if self._resync_due or self.counters.needs_resync:
            self._resync_or_stop()
        try:
            return self.counters.take()
        except ResyncNeeded:
            self._resync_or_stop()
            return self.counters.take()

    def _resync_or_stop(self) -> None:
        self._resync_due = False
        if not self.resync():
            if self._live:      # live input goes on: the next inference tries again (the edge may come back)
                self._resync_due = True
                raise _Stopped("the edge did not answer the resynchronisation (RESYNC, docs/PROTOCOL.md "
                               "§4.7): no counter to send this inference under")
            self.unreachable = True
            raise _Stopped("the edge did not answer the resynchronisation (RESYNC, docs/PROTOCOL.md §4.7): "
                           "is it running, reachable, and v2.1?")

    def _transmit(self, rec: InferenceRecord) -> bool:
        """Send `rec` under a fresh counter; False when the run must stop (no counter to be had)."""
        try:
            self._send(rec)
        except _Stopped as exc:
            rec.error = rec.error or str(exc)
            if self._live and not (self.fatal or self.unreachable):
                rec.attempts, rec._due = self.retries + 1, time.monotonic()   # this one is lost; the run goes on
            return False
        return True

    def _send(self, rec: InferenceRecord) -> None:
        now = time.monotonic()
        copies = rec.header_copies
        if rec.attempts == 0:
            rec._first_sent = now
        else:
            self.stats["resends"] += 1
            if self.header_copies == "auto" and copies < HEADER_COPIES[-1]:
                # no answer: the header may not have survived; resend it more robustly
                copies = HEADER_COPIES[HEADER_COPIES.index(copies) + 1]
        self._frame(rec, copies, long_counter=self._long_next or rec.attempts > 0)
        self._long_next = False
        rec.attempts += 1
        rec.bytes_sent += rec.bytes_on_air
        for frame in rec._frames:
            self.transport.send(frame)
        rec._due = time.monotonic() + self.timeout

    # --- resynchronisation (docs/PROTOCOL.md §4.7) ----------------------------------------

    def _control_copies(self) -> int:
        copies = self._copies_now()
        while copies > 1 and copies * CONTROL_BLOCK_BYTES > self.mtu:
            copies = HEADER_COPIES[HEADER_COPIES.index(copies) - 1]
        if CONTROL_BLOCK_BYTES > self.mtu:
            raise SnnError(f"an MTU of {self.mtu} bytes cannot carry a {CONTROL_BLOCK_BYTES}-byte control frame")
        return copies

    def _await_control(self, nonce: bytes, kind: ControlKind, deadline: float, start: int | None = None):
        """The first authenticated control frame of `kind` for this exchange before `deadline`, or
        None (timeout, or too many forged ones: the attempt is dropped). REPLY/ERROR frames that
        arrive meanwhile are handled as usual."""
        bad = 0
        info = self.encoder.info
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.transport.recv(timeout=left)
            if got is None:
                continue
            data = got[0]
            if not is_control_length(len(data)):
                if self._pending is not None:
                    self._answered += self._handle(data, self._pending)
                continue
            try:
                frame = parse_control_down(data, key=self.key.key, device_id=self.device_id,
                                           fingerprint=info.fingerprint, nonce=nonce)
            except FrameError as exc:
                self.stats["resync_rejected"] += 1
                if exc.reason == "auth":
                    bad += 1
                    if bad >= MAX_BAD_CONTROL:   # someone is guessing MICs: a fresh nonce, later
                        return None
                continue
            if frame.kind != kind or (start is not None and frame.start != start):
                self.stats["resync_rejected"] += 1
                continue
            return frame

    def resync(self) -> bool:
        """Run the resynchronisation exchange until the edge commits a start counter (then the
        counter store holds it, durably). False when the edge never answered; SnnError when it
        answered that this key cannot go on (its counters are exhausted, or nobody knows them)."""
        info = self.encoder.info
        copies = self._control_copies()
        self.stats["resyncs"] += 1
        for attempt in range(max(3, self.retries + 1)):
            if attempt:
                time.sleep(self.busy_backoff(attempt - 1, 0.1))
            nonce = new_nonce()   # fresh for every attempt: a reply to an earlier one is never taken
            self.transport.send(encode_resync(key=self.key.key, device_id=self.device_id,
                                              fingerprint=info.fingerprint, nonce=nonce, copies=copies))
            self.stats["resync_frames"] += 1
            offer = self._await_control(nonce, ControlKind.OFFER, time.monotonic() + self.timeout)
            if offer is None:
                continue
            if offer.status == ResyncStatus.NO_STATE and self.counters.has_state:
                start = self.counters.next          # the edge lost its history; this device did not
            elif offer.status != ResyncStatus.OK:
                text = STATUS_TEXT.get(offer.status, f"resync status {offer.status}")
                self.fatal = f"resynchronisation refused: {text}"
                raise _Stopped(self.fatal)
            else:
                start = self.counters.confirm_start(offer.start)
            for _ in range(max(3, self.retries + 1)):   # CONFIRM is idempotent: resent as is
                self.transport.send(encode_confirm(key=self.key.key, device_id=self.device_id,
                                                   fingerprint=info.fingerprint, nonce=nonce, start=start,
                                                   copies=copies))
                self.stats["resync_frames"] += 1
                ack = self._await_control(nonce, ControlKind.ACK, time.monotonic() + self.timeout, start)
                if ack is not None and ack.status == ResyncStatus.OK:
                    self.counters.resynced(start)
                    self._long_next = True       # the first DATA after it carries the whole counter
                    return True
        return False

    def _finish(self, rec: InferenceRecord, status: str, pending: dict) -> None:
        rec.status = status
        rec.done_at = round(time.time(), 3)
        pending.pop(rec.index, None)
        for counter in rec._counters:
            if self._pending_counters.get(counter & 0xFFFF) == counter:
                del self._pending_counters[counter & 0xFFFF]
        if status == "ok" and rec.truth is not None:
            rec.correct = rec.label == rec.truth
        t = self.totals
        t["answered" if status == "ok" else "lost" if status == "lost" else "errors"] += 1
        t["transmissions"] += rec.attempts
        t["bytes_sent"] += rec.bytes_sent
        if rec.airtime_ms is not None and rec.attempts:
            t["airtime_ms"] += rec.airtime_ms
            t["airtime_n"] += 1
        if status == "ok":
            t["edge_ber"] += rec.edge_ber or 0.0
        if rec.correct is not None:
            t["scored"] += 1
            t["correct"] += int(rec.correct)
        rec._payload = b""                 # keep memory flat on long runs (the first record keeps its frames)
        if rec is not self.first_record:
            rec._frames = []
        self._done.append(rec)
        if self.on_result:
            self.on_result(rec, self)

    # --- the loop -----------------------------------------------------------------------

    def run(self, samples: Iterable[Sample] | Source, stop=None) -> deque[InferenceRecord]:
        """Run one inference per sample until the samples end, `stop` (a threading.Event) is set, the
        edge refuses the codec or never answers; returns the kept records (`self.records`)."""
        for _ in self.stream(samples, stop=stop):
            pass
        return self.records

    def stream(self, samples: Iterable[Sample] | Source, stop=None, first_index: int = 0) -> Iterator[InferenceRecord]:
        """`run`, yielding each record as its inference finishes (completion order). A live
        `Source` is read through a `Feeder`; a `SnnError` it raises ends the run after the
        inferences in flight finish, and is kept in `source_error`."""
        live = bool(getattr(samples, "live", False))
        feeder = Feeder(samples, depth=self.window) if live else None
        items = None if live else iter(samples)
        pending: "OrderedDict[int, InferenceRecord]" = OrderedDict()   # by inference index
        self._pending, self._answered, self._live = pending, 0, live
        next_index, lost = first_index, 0
        exhausted = False
        self.unreachable = False
        self.source_error = None
        self.t_start = getattr(self, "t_start", None) or time.monotonic()

        def next_sample(wait: float):
            nonlocal exhausted
            try:
                if feeder is None:
                    return next(items)
                got = feeder.get(wait)
                if got is Feeder.END:
                    exhausted = True
                    return None
                return got
            except StopIteration:
                exhausted = True
            except SnnError as exc:
                self.source_error, exhausted = exc, True
            return None

        try:
            while True:
                stopping = self.fatal is not None or self.unreachable or (stop is not None and stop.is_set())
                while not stopping and not exhausted and len(pending) < self.window:
                    sample = next_sample(0.0 if pending else 0.1)
                    if sample is None:
                        break
                    self._submit(next_index, sample, pending)
                    next_index += 1
                yield from self._drain_done()
                if not pending:
                    if exhausted or stopping:
                        break
                    continue       # a live source with nothing yet: next_sample waited 0.1 s
                wait = max(0.0, min(r._due for r in pending.values()) - time.monotonic())
                if live and not exhausted and len(pending) < self.window:
                    wait = min(wait, 0.02)   # look for the next image soon: it may already be waiting
                got = self.transport.recv(timeout=wait)
                if got is not None:
                    self._answered += self._handle(got[0], pending)
                now = time.monotonic()
                for rec in [r for r in pending.values() if r._due <= now]:
                    if rec.attempts <= self.retries and not (self.fatal or self.unreachable):
                        if not self._transmit(rec):
                            break
                    else:
                        rec.error = rec.error or f"no reply after {rec.attempts} transmission(s)"
                        self._finish(rec, "lost", pending)
                        lost += 1
                if self._answered == 0 and lost >= self.give_up_after and not self.unreachable:
                    if not self._resync_tried and self.counters.path is not None:
                        # nothing answered at all: the edge may have lost or rolled back its state, or
                        # a forged frame moved this device's window; resynchronise once before giving up
                        self._resync_tried, self._resync_due, lost = True, True, 0
                    elif not live:
                        self.unreachable = True     # (live input keeps going: the edge may come back)
                if self.fatal or self.unreachable:
                    for rec in list(pending.values()):
                        rec.error = rec.error or ("run stopped: " + (self.fatal or "edge unreachable"))
                        self._finish(rec, "lost", pending)
                    yield from self._drain_done()
                    break
                yield from self._drain_done()
        finally:
            if feeder is not None:
                feeder.close()
            self._pending = None
            self.t_end = time.monotonic()

    def keep_last(self, n: int) -> None:
        """Keep the last `n` records (summary percentiles and --json inferences)."""
        self.records = deque(self.records, maxlen=max(1, int(n)))

    def _drain_done(self) -> Iterator[InferenceRecord]:
        done, self._done = self._done, []
        yield from done

    def _submit(self, index: int, sample: Sample, pending: dict) -> None:
        """Encode and send one sample (or record why it could not be read)."""
        self.totals["count"] += 1
        self.count = self.totals["count"]
        if sample.image is None:
            rec = InferenceRecord(index=index, counter=-1, truth=sample.truth, encode_ms=0.0, frames=0,
                                  bytes_on_air=0, airtime_ms=None, name=sample.name, error=sample.error)
            self.records.append(rec)
            self._finish(rec, "error", pending)
            return
        rec = self.prepare(index, sample.image, sample.truth, sample.name)
        self.records.append(rec)
        pending[rec.index] = rec
        self._transmit(rec)      # False: the run stops (no counter could be had); the loop sees why
        self.totals["sent"] += 1
        if self.first_record is None:
            self.first_record = rec

    def _handle(self, data: bytes, pending: dict) -> int:
        """One datagram from the edge: an authenticated REPLY/ERROR for a pending transmission, or
        nothing (counted)."""
        try:
            got = parse_reply(data, key=self.key.key, device_id=self.device_id,
                              fingerprint=self.encoder.info.fingerprint,
                              full_counter=self._pending_counters.get)
        except FrameError as exc:
            self.stats["duplicates" if exc.reason == "unmatched" else
                       "foreign_frames" if exc.reason == "auth" else "bad_frames"] += 1
            return 0
        rec = next((r for r in pending.values() if got.counter in r._counters), None)
        if rec is None:
            self.stats["duplicates"] += 1
            return 0
        rec.rtt_ms = round((time.monotonic() - rec._first_sent) * 1e3, 4)
        if not isinstance(got, ErrorReply):
            self.counters.vouched(got.counter)   # the edge committed it before answering (§4.3)
            rec.label, rec.confidence, rec.edge_ber = got.label, round(got.confidence, 4), got.ber
            self.link_ber = got.ber if self.link_ber is None else 0.8 * self.link_ber + 0.2 * got.ber
            self._finish(rec, "ok", pending)
            return 1
        code = got.code
        if code == ErrorCode.RESYNC and rec.attempts <= self.retries:
            # the counter was beyond the edge's gap: resynchronise, then resend under a new counter
            self._resync_due = True
            rec.rtt_ms = None
            rec._due = time.monotonic()
            return 0
        if code == ErrorCode.BAD_FRAME and rec.attempts <= self.retries:
            self.stats["bad_frame_errors"] += 1
            rec.rtt_ms = None
            rec._due = time.monotonic()
            return 0
        if code == ErrorCode.BUSY and rec.attempts <= self.retries:
            self.stats["busy"] += 1
            rec.rtt_ms = None
            rec._due = time.monotonic() + self.busy_backoff(rec._busy, got.arg * 0.01)  # new counter
            rec._busy += 1
            return 0
        name = code.name if isinstance(code, ErrorCode) else str(code)
        rec.error = f"edge error {name}: {got.text}"
        if code in FATAL_ERRORS:
            self.fatal = rec.error
        self._finish(rec, "error", pending)
        return 0

    def busy_backoff(self, k: int, named_s: float = 0.05) -> float:
        """Seconds to wait after the k-th (0-based) BUSY of one inference, whose ERROR named
        `named_s` (at least 10 ms)."""
        return min(self.timeout, max(0.01, named_s) * (2 ** min(k, 16)) * self._rng.uniform(0.5, 1.5))

    # --- figures ------------------------------------------------------------------------

    def summary(self) -> dict:
        """The run's figures: counts and means over every inference, percentiles over the kept
        records (the last `keep_records`)."""
        t = self.totals
        kept = [r for r in self.records if r.status != "pending"]
        ok = [r for r in kept if r.status == "ok"]
        rtt = [r.rtt_ms for r in ok]
        enc = [r.encode_ms for r in kept if r.attempts]
        wall = max(1e-9, (getattr(self, "t_end", None) or time.monotonic())
                   - (getattr(self, "t_start", None) or time.monotonic()))
        info = self.encoder.info
        first = self.first_record
        count = int(getattr(self, "count", t["count"]))
        return {
            "count": count,
            "sent": t["sent"],
            "answered": t["answered"],
            "lost": t["lost"],
            "errors": t["errors"],
            "accuracy": round(t["correct"] / t["scored"], 6) if t["scored"] else None,
            "correct": t["correct"],
            "accuracy_of_count": round(t["correct"] / count, 6) if t["scored"] and count else None,
            "rtt_p50_ms": _pct(rtt, 50), "rtt_p90_ms": _pct(rtt, 90), "rtt_p99_ms": _pct(rtt, 99),
            "rtt_mean_ms": round(float(np.mean(rtt)), 4) if rtt else None,
            "encode_p50_ms": _pct(enc, 50), "encode_p99_ms": _pct(enc, 99),
            "encode_mean_ms": round(float(np.mean(enc)), 4) if enc else None,
            "payload_bytes": info.payload_bytes,
            "bytes_on_air_per_inference": int(first.bytes_on_air) if first else None,
            "bytes_sent_mean": round(t["bytes_sent"] / t["sent"], 2) if t["sent"] else None,
            "header_copies": self.header_copies,
            "frames_per_inference": int(first.frames) if first else None,
            "airtime_ms_per_inference": round(t["airtime_ms"] / t["airtime_n"], 4) if t["airtime_n"] else None,
            "link": getattr(self.link, "name", None),
            "mtu": self.mtu,
            "edge_ber_mean": round(t["edge_ber"] / t["answered"], 6) if t["answered"] else None,
            "transmissions": t["transmissions"],
            **self.stats,
            "unreachable": self.unreachable,
            "fatal_error": self.fatal,
            "wall_s": round(wall, 3),
            "inferences_per_s": round(t["answered"] / wall, 2),
            "peak_rss_bytes": peak_rss_bytes(),
            "fingerprint": info.fingerprint.hex(),
            "bundle": info.bundle,
            "quantization": info.quantization,
            "device_id": self.device_id,
            "notes": self.notes,
            "window": self.window, "timeout_s": self.timeout, "retries": self.retries,
            "records_kept": len(self.records),
        }

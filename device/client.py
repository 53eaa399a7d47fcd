"""The device client: encode, pack, encrypt, frame, send, and wait for the edge's label.

Policy (docs/PROTOCOL.md §5, §6.3):

- up to `window` inferences are in flight at once, each under its own 32-bit frame counter,
  taken from a `CounterStore` that persists it ahead (a restarted device never reuses one);
- an inference that gets no REPLY/ERROR within `timeout` seconds of its last transmission is
  resent whole under a **new** counter (a new keystream; the edge keeps no reply cache and
  treats it as a new request), at most `retries` times, then counted lost; an answer to any of
  its counters ends it. Nothing is ever resent because of bit errors;
- a BUSY error is retried after the delay it suggests (or `busy_delay`), with a new counter
  and the same bound; UNKNOWN_CODEC, UNSUPPORTED and BAD_FRAME (length: the wrong codec) end
  the run, since every later inference would be refused too;
- only answers that authenticate (our device id, a counter in flight, the MIC under our key)
  are read; anything else is counted and ignored, so no one can feed the device a label;
- when the MTU cannot hold the wanted header copies, fewer copies and more fragments are used
  (`plan_frames`) and the device says so once: it never stops on a legal link;
- when the edge never answers at all, the run stops after `give_up_after` inferences were lost
  (by default one window's worth), so an unreachable edge costs (1 + retries) x timeout, not
  count x that.

Per inference we record the encode time (ONNX + packing), bytes and frames on the air (COBS and
its delimiter included on stream links), time on air on a chosen link model, round-trip time
(first transmission to reply, so retries show up in it), the edge's answer and, when the truth is
known, whether it was right.
"""
from __future__ import annotations

import resource
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import numpy as np

from codec.wire.crypto import DeviceKeys
from codec.wire.frame import (
    COPIES,
    BadDetail,
    ErrorCode,
    Kind,
    encode_inference,
    header_copies_for,
    plan_frames,
    read_answer,
)
from codec.wire.keys import CounterStore
from snn.errors import FrameError, SnnError

FATAL_ERRORS = {ErrorCode.UNKNOWN_CODEC, ErrorCode.UNSUPPORTED}


@dataclass
class InferenceRecord:
    """One inference, as printed and saved."""

    index: int
    counter: int                 # the counter of the last transmission
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
    _payload: bytes = field(default=b"", repr=False)
    _counters: list = field(default_factory=list, repr=False)
    _frames: list = field(default_factory=list, repr=False)
    _first_sent: float = 0.0
    _due: float = 0.0

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


class DeviceClient:
    """Runs inferences of an `OnnxEncoder` against an edge over a `channel.transports` Transport,
    under the device's keys (`DeviceKeys`) and persisted counter (`CounterStore`)."""

    def __init__(self, encoder, transport, *, keys: DeviceKeys, counters: CounterStore,
                 mtu: int = 1400, link=None, timeout: float = 1.0, retries: int = 2,
                 window: int = 4, send_truth: bool = False, busy_delay: float = 0.05,
                 give_up_after: int | None = None, on_result=None, header_copies: int | str = 1,
                 log=None):
        if timeout <= 0:
            raise SnnError("--timeout must be > 0 seconds")
        if retries < 0 or window < 1:
            raise SnnError("--retries must be >= 0 and --window >= 1")
        if window > 1 << 10:
            raise SnnError("--window must stay at or below 1024 (counters in flight must differ in their "
                           "12 bits on air, resends included)")
        self.encoder = encoder
        self.transport = transport
        self.keys = keys
        self.device_id = keys.device_id
        self.counters = counters
        self.mtu = int(mtu)
        self.link = link
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.window = int(window)
        self.send_truth = send_truth
        self.busy_delay = float(busy_delay)
        self.give_up_after = give_up_after if give_up_after is not None else self.window
        self.on_result = on_result
        self.log = log or (lambda text: print(f"snn device: {text}", file=sys.stderr, flush=True))
        if header_copies != "auto" and header_copies not in COPIES:
            raise SnnError(f"--header-copies must be auto or one of {COPIES}")
        self.header_copies = header_copies
        self.link_ber: float | None = None   # smoothed from the BER the edge reports in replies
        self.records: list[InferenceRecord] = []
        self.stats = {"resends": 0, "duplicates": 0, "refused_frames": 0, "busy": 0, "degraded": 0}
        self.fatal: str | None = None
        self.unreachable = False
        self._awaiting: dict[int, int] = {}          # counter low 12 bits -> full counter in flight
        self._by_counter: dict[int, InferenceRecord] = {}
        self._degraded_said: set = set()
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

    def prepare(self, index: int, image: np.ndarray, truth: int | None) -> InferenceRecord:
        """Encode and pack one image (framed when sent: each transmission has its own counter)."""
        payload, seconds = self.encoder.encode_one(image)
        return InferenceRecord(index=index, counter=-1, truth=truth, encode_ms=round(seconds * 1e3, 4),
                               frames=0, bytes_on_air=0, airtime_ms=None, _payload=payload)

    def _copies_now(self, rec: InferenceRecord) -> int:
        """Header copies: fixed, or from the BER the edge reported, one step more on a resend."""
        if self.header_copies != "auto":
            return int(self.header_copies)
        copies = 1 if self.link_ber is None else header_copies_for(self.link_ber)
        if rec.attempts:
            copies = COPIES[min(len(COPIES) - 1, max(COPIES.index(copies), COPIES.index(rec.header_copies) + 1))]
        return copies

    def _frame(self, rec: InferenceRecord, copies: int, counter: int) -> None:
        truth = rec.truth if self.send_truth else None
        try:
            used, _ = plan_frames(len(rec._payload), self.mtu, copies, truth is not None)
            frames = encode_inference(self.keys, counter, rec._payload, mtu=self.mtu, copies=used,
                                      truth=truth)
        except ValueError as exc:
            raise SnnError(f"cannot frame {len(rec._payload)} payload bytes: {exc}") from None
        if used != copies:
            self.stats["degraded"] += 1
            if (copies, used) not in self._degraded_said:
                self._degraded_said.add((copies, used))
                self.log(f"MTU {self.mtu} cannot carry {copies} header copies: sending {used} "
                         f"in {len(frames)} fragment(s) instead")
        sizes = [self._on_air(f) for f in frames]
        rec._frames, rec.frames, rec.header_copies = frames, len(frames), used
        rec.bytes_on_air, rec.airtime_ms = sum(sizes), self._airtime_ms(sizes)

    def _transmit(self, rec: InferenceRecord) -> None:
        now = time.monotonic()
        if rec.attempts == 0:
            rec._first_sent = now
        else:
            self.stats["resends"] += 1
        counter = self.counters.take()
        self._frame(rec, self._copies_now(rec), counter)
        rec.counter = counter
        rec._counters.append(counter)
        self._awaiting[counter & 0xFFF] = counter
        self._by_counter[counter] = rec
        rec.attempts += 1
        rec.bytes_sent += rec.bytes_on_air
        for frame in rec._frames:
            self.transport.send(frame)
        rec._due = time.monotonic() + self.timeout

    def _finish(self, rec: InferenceRecord, status: str, pending: dict) -> None:
        rec.status = status
        pending.pop(rec.index, None)
        for counter in rec._counters:
            self._awaiting.pop(counter & 0xFFF, None)
            self._by_counter.pop(counter, None)
        if status == "ok" and rec.truth is not None:
            rec.correct = rec.label == rec.truth
        if self.on_result:
            self.on_result(rec, self)

    # --- the loop -----------------------------------------------------------------------

    def run(self, images: np.ndarray, labels: np.ndarray | None = None) -> list[InferenceRecord]:
        """Run one inference per image; returns the records (also in `self.records`)."""
        n = len(images)
        pending: "OrderedDict[int, InferenceRecord]" = OrderedDict()
        next_index, answered, lost = 0, 0, 0
        self.t_start = time.monotonic()
        while next_index < n or pending:
            stop = self.fatal is not None or self.unreachable
            while not stop and next_index < n and len(pending) < self.window:
                truth = None if labels is None else int(labels[next_index])
                rec = self.prepare(next_index, images[next_index], truth)
                self.records.append(rec)
                pending[rec.index] = rec
                self._transmit(rec)
                next_index += 1
            if not pending:
                break
            wait = max(0.0, min(r._due for r in pending.values()) - time.monotonic())
            got = self.transport.recv(timeout=wait)
            if got is not None:
                answered += self._handle(got[0], pending)
            now = time.monotonic()
            for rec in [r for r in pending.values() if r._due <= now]:
                if rec.attempts <= self.retries and not (self.fatal or self.unreachable):
                    self._transmit(rec)
                else:
                    rec.error = rec.error or f"no reply after {rec.attempts} transmission(s)"
                    self._finish(rec, "lost", pending)
                    lost += 1
            if answered == 0 and lost >= self.give_up_after and not self.unreachable:
                self.unreachable = True
            if self.fatal or self.unreachable:
                for rec in list(pending.values()):
                    rec.error = rec.error or ("run stopped: " + (self.fatal or "edge unreachable"))
                    self._finish(rec, "lost", pending)
                break
        self.t_end = time.monotonic()
        self.count = n
        return self.records

    def _handle(self, data: bytes, pending: dict) -> int:
        try:
            answer = read_answer(data, self.keys, self._awaiting)
        except FrameError as exc:
            # damaged on the link, not for us, not authentic, or for a finished inference
            self.stats["duplicates" if exc.reason == "counter" else "refused_frames"] += 1
            return 0
        rec = self._by_counter.get(answer.counter)
        if rec is None or rec.status != "pending":
            self.stats["duplicates"] += 1
            return 0
        rec.rtt_ms = round((time.monotonic() - rec._first_sent) * 1e3, 4)
        if answer.kind == Kind.REPLY:
            rec.label, rec.confidence, rec.edge_ber = answer.label, round(answer.confidence, 4), answer.ber
            self.link_ber = answer.ber if self.link_ber is None else 0.8 * self.link_ber + 0.2 * answer.ber
            self._finish(rec, "ok", pending)
            return 1
        code = ErrorCode(answer.code) if answer.code in ErrorCode._value2member_map_ else answer.code
        if code in (ErrorCode.BUSY, ErrorCode.INTERNAL) and rec.attempts <= self.retries:
            self.stats["busy"] += code == ErrorCode.BUSY
            delay = answer.detail * 0.01 if code == ErrorCode.BUSY and answer.detail else self.busy_delay
            rec._due = time.monotonic() + delay  # resent when due, under a new counter
            return 0
        rec.error = f"edge error {_describe(code, answer.detail)}"
        if code in FATAL_ERRORS or (code == ErrorCode.BAD_FRAME and answer.detail == BadDetail.LENGTH):
            self.fatal = rec.error
        self._finish(rec, "error", pending)
        return 0

    # --- figures ------------------------------------------------------------------------

    def summary(self) -> dict:
        recs = self.records
        ok = [r for r in recs if r.status == "ok"]
        scored = [r for r in ok if r.correct is not None]
        correct = sum(1 for r in scored if r.correct)
        rtt = [r.rtt_ms for r in ok]
        enc = [r.encode_ms for r in recs]
        air = [r.airtime_ms for r in recs if r.airtime_ms is not None]
        wall = max(1e-9, getattr(self, "t_end", time.monotonic()) - getattr(self, "t_start", time.monotonic()))
        info = self.encoder.info
        return {
            "count": int(getattr(self, "count", len(recs))),
            "sent": len(recs),
            "answered": len(ok),
            "lost": sum(1 for r in recs if r.status == "lost"),
            "errors": sum(1 for r in recs if r.status == "error"),
            "accuracy": round(correct / len(scored), 6) if scored else None,
            "correct": correct,
            "accuracy_of_count": round(correct / self.count, 6) if scored and getattr(self, "count", 0) else None,
            "rtt_p50_ms": _pct(rtt, 50), "rtt_p90_ms": _pct(rtt, 90), "rtt_p99_ms": _pct(rtt, 99),
            "rtt_mean_ms": round(float(np.mean(rtt)), 4) if rtt else None,
            "encode_p50_ms": _pct(enc, 50), "encode_p99_ms": _pct(enc, 99),
            "encode_mean_ms": round(float(np.mean(enc)), 4) if enc else None,
            "payload_bytes": info.payload_bytes,
            "bytes_on_air_per_inference": int(recs[0].bytes_on_air) if recs else None,
            "bytes_sent_mean": round(float(np.mean([r.bytes_sent for r in recs])), 2) if recs else None,
            "header_copies": self.header_copies,
            "header_copies_used": sorted({r.header_copies for r in recs}),
            "frames_per_inference": int(recs[0].frames) if recs else None,
            "airtime_ms_per_inference": round(float(np.mean(air)), 4) if air else None,
            "link": getattr(self.link, "name", None),
            "mtu": self.mtu,
            "edge_ber_mean": round(float(np.mean([r.edge_ber for r in ok])), 6) if ok else None,
            "transmissions": sum(r.attempts for r in recs),
            **self.stats,
            "unreachable": self.unreachable,
            "fatal_error": self.fatal,
            "wall_s": round(wall, 3),
            "inferences_per_s": round(len(ok) / wall, 2),
            "peak_rss_bytes": peak_rss_bytes(),
            "fingerprint": info.fingerprint.hex(),
            "counter_next": self.counters.next,
            "bundle": info.bundle,
            "quantization": info.quantization,
            "device_id": self.device_id,
            "window": self.window, "timeout_s": self.timeout, "retries": self.retries,
        }


def _describe(code, detail: int) -> str:
    """An ERROR code and detail byte in words (docs/PROTOCOL.md §5)."""
    if code == ErrorCode.BAD_FRAME:
        what = {BadDetail.LENGTH: "the frame's length does not fit the codec bound to this device "
                                  "(wrong encoder for this key?)",
                BadDetail.FRAGMENT: "inconsistent fragments",
                BadDetail.TRUTH: "the truth label is not a class of the codec"}.get(detail, f"detail {detail}")
        return f"BAD_FRAME: {what}"
    if code == ErrorCode.UNKNOWN_CODEC:
        return "UNKNOWN_CODEC: the codec bound to this device is not served by the edge"
    if code == ErrorCode.UNSUPPORTED:
        return f"UNSUPPORTED: the edge speaks protocol v{detail}"
    if code == ErrorCode.BUSY:
        return "BUSY: the edge shed load (retries exhausted)"
    name = code.name if isinstance(code, ErrorCode) else str(code)
    return f"{name} (detail {detail})"

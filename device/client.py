"""The device client: encode, pack, frame, send, and wait for the edge's label.

Policy (docs/PROTOCOL.md §4):

- up to `window` inferences are in flight at once, each under its own sequence number;
- an inference that gets no REPLY/ERROR within `timeout` seconds of its last transmission is
  resent whole, under the *same* sequence number, at most `retries` times, then counted lost.
  Nothing is ever resent because of bit errors: the device cannot see them and does not need to;
- a BAD_FRAME error (a frame whose header the link destroyed, i.e. a lost frame) does not end
  the inference: with several fragments the edge decodes those that arrived, the missing bytes
  as erasures, and replies; a single-fragment inference is resent at once (it is lost, and
  waiting out the timeout would only add latency);
- a BUSY error is retried after a jittered, doubling back-off (`busy_backoff`: `busy_delay` x 2^k
  for the k-th BUSY of that inference, times a random 0.5-1.5, at most `timeout`; same bound on
  transmissions), so a fleet refused together does not come back together; any other ERROR ends that inference,
  and UNKNOWN_CODEC / UNSUPPORTED end the run (every later inference would be refused too);
- when the edge never answers at all, the run stops after `give_up_after` inferences were lost
  (by default one window's worth), so an unreachable edge costs (1 + retries) x timeout, not
  count x that.

Per inference we record the encode time (ONNX + packing), bytes and frames on the air (COBS and
its delimiter included on stream links), time on air on a chosen link model, round-trip time
(first transmission to reply, so retries show up in it), the edge's answer and, when the truth is
known, whether it was right.
"""
from __future__ import annotations

import random
import resource
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import numpy as np

from codec.wire.frame import (
    HEADER_COPIES,
    ErrorCode,
    Kind,
    encode_inference,
    header_copies_for,
    parse_frame,
)
from snn.errors import FrameError, SnnError

FATAL_ERRORS = {ErrorCode.UNKNOWN_CODEC, ErrorCode.UNSUPPORTED}
BAD_FRAME_MATCH_BITS = 6  # bit flips tolerated when matching a damaged header's echoed ids


@dataclass
class InferenceRecord:
    """One inference, as printed and saved."""

    index: int
    seq: int
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


class DeviceClient:
    """Runs inferences of an `OnnxEncoder` against an edge over a `channel.transports` Transport."""

    def __init__(self, encoder, transport, *, device_id: int = 1, mtu: int = 1400, link=None,
                 timeout: float = 1.0, retries: int = 2, window: int = 4, pilot_len: int = 4,
                 snr_hint: int | None = None, send_truth: bool = False, seq_start: int = 0,
                 busy_delay: float = 0.05, give_up_after: int | None = None, on_result=None,
                 header_copies: int | str = 1):
        if timeout <= 0:
            raise SnnError("--timeout must be > 0 seconds")
        if retries < 0 or window < 1:
            raise SnnError("--retries must be >= 0 and --window >= 1")
        self.encoder = encoder
        self.transport = transport
        self.device_id = int(device_id) & 0xFFFF
        self.mtu = int(mtu)
        self.link = link
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.window = int(window)
        self.pilot_len = int(pilot_len)
        self.snr_hint = snr_hint
        self.send_truth = send_truth
        self.seq_start = int(seq_start) & 0xFFFF
        self.busy_delay = float(busy_delay)
        self._rng = random.Random(self.device_id * 7919 + self.seq_start)  # jitter differs per device
        self.give_up_after = give_up_after if give_up_after is not None else self.window
        self.on_result = on_result
        if header_copies != "auto" and header_copies not in HEADER_COPIES:
            raise SnnError(f"--header-copies must be auto or one of {HEADER_COPIES}")
        self.header_copies = header_copies
        self.link_ber: float | None = None   # smoothed from the BER the edge reports in replies
        self.records: list[InferenceRecord] = []
        self.stats = {"resends": 0, "duplicates": 0, "bad_frames": 0, "foreign_frames": 0, "busy": 0,
                      "bad_frame_errors": 0}
        self.fatal: str | None = None
        self.unreachable = False
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
        """Encode, pack and frame one image (not yet sent)."""
        payload, seconds = self.encoder.encode_one(image)
        seq = (self.seq_start + index) & 0xFFFF
        rec = InferenceRecord(index=index, seq=seq, truth=truth, encode_ms=round(seconds * 1e3, 4),
                              frames=0, bytes_on_air=0, airtime_ms=None, _payload=payload)
        self._frame(rec, self._copies_now())
        return rec

    def _copies_now(self) -> int:
        """Header copies for a first transmission: fixed, or from the BER the edge reported."""
        if self.header_copies != "auto":
            return int(self.header_copies)
        return 1 if self.link_ber is None else header_copies_for(self.link_ber)

    def _frame(self, rec: InferenceRecord, copies: int) -> None:
        info = self.encoder.info
        try:
            frames = encode_inference(rec._payload, info.payload_bits, info.fingerprint, self.device_id, rec.seq,
                                      mtu=self.mtu, pilot_len=self.pilot_len, snr_hint=self.snr_hint,
                                      truth=rec.truth if self.send_truth else None, header_copies=copies)
        except ValueError as exc:
            raise SnnError(f"cannot frame {info.payload_bytes} payload bytes: {exc}") from None
        sizes = [self._on_air(f) for f in frames]
        rec._frames, rec.frames, rec.header_copies = frames, len(frames), copies
        rec.bytes_on_air, rec.airtime_ms = sum(sizes), self._airtime_ms(sizes)

    def _transmit(self, rec: InferenceRecord) -> None:
        now = time.monotonic()
        if rec.attempts == 0:
            rec._first_sent = now
        else:
            self.stats["resends"] += 1
            if self.header_copies == "auto" and rec.header_copies < HEADER_COPIES[-1]:
                # no answer: the header may not have survived; resend it more robustly
                self._frame(rec, HEADER_COPIES[HEADER_COPIES.index(rec.header_copies) + 1])
        rec.attempts += 1
        rec.bytes_sent += rec.bytes_on_air
        for frame in rec._frames:
            self.transport.send(frame)
        rec._due = time.monotonic() + self.timeout

    def _finish(self, rec: InferenceRecord, status: str, pending: dict) -> None:
        rec.status = status
        pending.pop(rec.seq, None)
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
                pending[rec.seq] = rec
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
            frame = parse_frame(data)
        except FrameError:
            self.stats["bad_frames"] += 1
            return 0
        if frame.kind == Kind.DATA:
            self.stats["foreign_frames"] += 1
            return 0
        if frame.device_id != self.device_id or frame.fingerprint != self.encoder.info.fingerprint:
            if frame.kind == Kind.ERROR:
                self._bad_frame_echo(frame, pending)
            self.stats["foreign_frames"] += 1
            return 0
        rec = pending.get(frame.seq)
        if rec is None:
            self.stats["duplicates"] += 1
            return 0
        rec.rtt_ms = round((time.monotonic() - rec._first_sent) * 1e3, 4)
        if frame.kind == Kind.REPLY:
            try:
                reply = frame.reply()
            except FrameError:
                self.stats["bad_frames"] += 1
                return 0
            rec.label, rec.confidence, rec.edge_ber = reply.label, round(reply.confidence, 4), reply.ber
            self.link_ber = reply.ber if self.link_ber is None else 0.8 * self.link_ber + 0.2 * reply.ber
            self._finish(rec, "ok", pending)
            return 1
        code, reason = frame.error()
        if code == ErrorCode.BAD_FRAME:
            # a frame's header did not survive the link: that frame is lost. With several
            # fragments the edge still decodes the others (the lost bytes become erasures) and
            # replies, so keep waiting. With one fragment nothing else will come: resend now
            # (same sequence number, same bound) instead of waiting out the timeout
            self.stats["bad_frame_errors"] += 1
            rec.rtt_ms = None
            if rec.frames == 1 and rec.attempts <= self.retries:
                rec._due = time.monotonic()
            return 0
        if code == ErrorCode.BUSY and rec.attempts <= self.retries:
            self.stats["busy"] += 1
            rec._due = time.monotonic() + self.busy_backoff(rec._busy)  # resent when due, same seq
            rec._busy += 1
            return 0
        name = code.name if isinstance(code, ErrorCode) else str(code)
        rec.error = f"edge error {name}: {reason}"
        if code in FATAL_ERRORS:
            self.fatal = rec.error
        self._finish(rec, "error", pending)
        return 0

    def busy_backoff(self, k: int) -> float:
        """Seconds to wait after the k-th (0-based) BUSY of one inference."""
        return min(self.timeout, self.busy_delay * (2 ** min(k, 16)) * self._rng.uniform(0.5, 1.5))

    def _bad_frame_echo(self, frame, pending: dict) -> None:
        """A BAD_FRAME error whose ids do not match ours exactly: the edge addressed it with the
        ids of a header the link had damaged, so they are our ids with a few bits flipped. When
        exactly one pending single-fragment inference lies within a few bits of them, its frame
        was the one lost: resend it now rather than after the timeout (a wrong guess costs one
        extra frame; the right inference still falls back on its timeout)."""
        try:
            code, _ = frame.error()
        except FrameError:
            return
        if code != ErrorCode.BAD_FRAME:
            return
        got = frame.fingerprint + frame.device_id.to_bytes(2, "big") + frame.seq.to_bytes(2, "big")
        mine = self.encoder.info.fingerprint + self.device_id.to_bytes(2, "big")
        scored = []
        for rec in pending.values():
            want = mine + rec.seq.to_bytes(2, "big")
            scored.append((sum(bin(a ^ b).count("1") for a, b in zip(got, want)), rec))
        scored.sort(key=lambda t: t[0])
        if not scored or scored[0][0] > BAD_FRAME_MATCH_BITS or \
                (len(scored) > 1 and scored[1][0] == scored[0][0]):
            return
        rec = scored[0][1]
        if rec.frames == 1 and rec.attempts <= self.retries:
            self.stats["bad_frame_errors"] += 1
            rec._due = time.monotonic()

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
            "bundle": info.bundle,
            "quantization": info.quantization,
            "device_id": self.device_id,
            "window": self.window, "timeout_s": self.timeout, "retries": self.retries,
        }

"""UDP load against an edge: a closed loop (throughput) and an open loop (latency at a rate).

Non-blocking sockets, no torch in the loop; replies are matched by `replies.ReplyMatcher`.
"""
from __future__ import annotations

import heapq
import random
import select
import socket
import time

import numpy as np

from bench.loadgen.frames import FrameMaker
from bench.loadgen.replies import ReplyMatcher, drain, error_code, waiting_replies
from bench.loadgen.stats import percentiles
from codec.wire.frame import ErrorCode, Kind


def udp_socket(target: tuple[str, int]) -> socket.socket:
    """A non-blocking UDP socket connected to `target`, with 4 MiB buffers where allowed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass
    sock.connect(target)
    sock.setblocking(False)
    return sock


def udp_closed_loop(target: tuple[str, int], maker: FrameMaker, duration: float, window: int = 256,
                    warmup: float = 1.0, grace: float = 5.0, busy_backoff: float = 0.005) -> dict:
    """`window` frames in flight; each answered frame is followed at once by a new one, a refused
    (BUSY) one after a jittered back-off that doubles with each BUSY in a row (`busy_backoff` x
    2^k, at most 64x; as a device backs off), so the window shrinks to what the edge admits and
    the loop measures what the edge answers rather than how fast it can refuse."""
    sock = udp_socket(target)
    backoff: list[tuple[float, int]] = []     # (due, slot) of refused frames waiting to go again
    busy_run = [0] * window                    # BUSY replies in a row per slot
    rnd = random.Random(0)
    first = maker.counter
    matcher = ReplyMatcher(first)
    slot_of: dict[int, int] = {}      # frame index (counter - first) -> slot
    sent_at = [0.0] * window
    in_flight = [False] * window
    sent = answered = rejected = 0
    lat: list[float] = []
    free = list(range(window))
    t0 = time.perf_counter()
    t_measure, t_end = t0 + warmup, t0 + warmup + duration
    measured_answers = 0
    while True:
        now = time.perf_counter()
        while backoff and backoff[0][0] <= now:
            free.append(heapq.heappop(backoff)[1])
        if now < t_end:
            while free:
                slot = free.pop()
                index = maker.counter - first
                frame = maker.frame()
                try:
                    sock.send(frame)
                except BlockingIOError:
                    free.append(slot)
                    break
                slot_of[index] = slot
                sent_at[slot] = time.perf_counter()
                in_flight[slot] = True
                sent += 1
        elif not any(in_flight) or now > t_end + grace:
            break
        timeout = 0.05 if not backoff else max(0.0, min(0.05, backoff[0][0] - now))
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        for kind, low, _ in waiting_replies(sock):
            slot = slot_of.pop(matcher.frame_of(low, maker.counter - first), -1)
            if slot < 0 or not in_flight[slot]:
                continue
            in_flight[slot] = False
            t = time.perf_counter()
            if kind == Kind.REPLY:
                answered += 1
                if t_measure <= t <= t_end:
                    measured_answers += 1
                    lat.append((t - sent_at[slot]) * 1e3)
                busy_run[slot] = 0
                free.append(slot)
            else:
                rejected += 1
                delay = busy_backoff * (1 << min(busy_run[slot], 6)) * rnd.uniform(0.5, 1.5)
                busy_run[slot] += 1
                heapq.heappush(backoff, (t + delay, slot))
    sock.close()
    lost = sent - answered - rejected
    return {"sent": sent, "answered": answered, "rejected": rejected, "lost": lost,
            "window": window, "duration_s": duration,
            "throughput_fps": round(measured_answers / duration, 1), **percentiles(lat)}


def udp_open_loop(target: tuple[str, int], maker: FrameMaker, rate: float, duration: float,
                  garbage: float = 0.0, grace: float = 5.0, seed: int = 0,
                  on_tick=None, silent_rejects=None, sock: socket.socket | None = None) -> dict:
    """Send `rate` frames/s for `duration` s (a `garbage` fraction of them bad, from a second
    socket), collect replies. `silent_rejects()` reads the server's count of frames it refused
    without a reply; without it garbage cannot be accounted. `sock`: the device's socket
    (`udp_socket(target)`), when the caller needs its address."""
    n = int(rate * duration)
    rnd = random.Random(seed)
    is_garbage = [rnd.random() < garbage for _ in range(n)]
    frames: list[bytes] = []
    first = maker.counter
    matcher = ReplyMatcher(first)
    for g in is_garbage:
        frames.append(maker.garbage(rnd) if g else maker.frame())
    n_valid = maker.counter - first
    sent_at = np.zeros(max(1, n_valid), dtype=np.float64)
    done = np.zeros(max(1, n_valid), dtype=bool)
    lat: list[float] = []
    silent0 = silent_rejects() if silent_rejects else 0.0
    sock = sock or udp_socket(target)
    bad_sock = udp_socket(target)
    sent = sent_valid = sent_garbage = answered = rejected = busy = garbage_answered = 0
    t0 = time.perf_counter()
    i = valid_i = 0
    last_tick = t0
    t_last = None
    t_sent = t0
    while True:
        now = time.perf_counter()
        if i < n:
            # at most 64 sends between two looks at the replies (a load generator that falls
            # behind must not let replies wait in its own socket)
            due = min(n, int((now - t0) * rate) + 1, i + 64)
            while i < due:
                try:
                    (bad_sock if is_garbage[i] else sock).send(frames[i])
                except BlockingIOError:
                    break
                if is_garbage[i]:
                    sent_garbage += 1
                else:
                    sent_at[valid_i] = time.perf_counter()
                    valid_i += 1
                    sent_valid += 1
                i += 1
                sent += 1
            t_sent = time.perf_counter()
            next_due = t0 + (i / rate) if i < n else now + 0.01
            timeout = max(0.0, min(0.01, next_due - time.perf_counter()))
        else:
            if t_last is None:
                t_last = now
            if answered + rejected >= sent_valid or now > t_last + grace:
                break
            timeout = 0.02
        if on_tick is not None and now - last_tick >= 1.0:
            on_tick(now - t0)
            last_tick = now
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        garbage_answered += drain(bad_sock)   # must stay 0: garbage gets no reply
        for kind, low, data in waiting_replies(sock):
            j = matcher.frame_of(low, valid_i)
            if j < 0 or done[j]:
                continue
            done[j] = True
            if kind == Kind.REPLY:
                answered += 1
                lat.append((time.perf_counter() - sent_at[j]) * 1e3)
            else:
                rejected += 1
                device = maker.device_of(first + j)
                busy += error_code(data, maker.keys[device], device, first + j) == ErrorCode.BUSY
    if silent_rejects is not None:   # the server's silent refusals settle within a moment
        deadline = time.perf_counter() + 2.0
        while True:
            silent = int(silent_rejects() - silent0)
            if answered + rejected + silent >= sent or time.perf_counter() > deadline:
                break
            time.sleep(0.05)
    else:
        silent = 0
    elapsed = time.perf_counter() - t0
    sock.close()
    bad_sock.close()
    return {"offered_fps": rate, "duration_s": duration, "sent": sent, "sent_valid": sent_valid,
            "sent_garbage": sent_garbage, "answered": answered, "rejected": rejected + silent, "busy": busy,
            "refused_silently": silent, "valid_unanswered": sent_valid - answered - rejected,
            "garbage_answered": garbage_answered, "lost": sent - answered - rejected - silent,
            "sent_fps": round(sent / max(t_sent - t0, 1e-9), 1),
            "throughput_fps": round(answered / max(duration, 1e-9), 1),
            "elapsed_s": round(elapsed, 2), **percentiles(lat)}

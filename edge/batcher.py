"""Micro-batching: one bounded queue, one model worker thread that cuts its own batches.

Jobs from every listener (UDP, serial, HTTP) enter one queue of at most ``max_queue`` inferences;
`submit` refuses a job beyond that (the caller answers "busy" and counts it — nothing is dropped
silently). The model thread takes its batches from that queue itself: as soon as ``max_batch``
jobs wait, or the oldest has waited ``max_wait_s``, it takes up to ``max_batch`` of them, runs
the model and hands the results back to the loop (``call_soon_threadsafe``), which sends the
replies while the model thread already takes the next batch. The loop never waits for the model
and the model never waits for the loop: under load batches grow by themselves (what arrived
while the model ran is the next batch), at low load a frame waits at most ``max_wait_s``.

Admission by deadline (overload sheds instead of queueing): every frame has ``deadline_s`` from
its arrival to its answer. `admit` (on the loop, a few arithmetic operations) estimates when a
new frame would be answered from the queue ahead of it and the measured cost of a batch
(``batch_fixed_s + per_frame_s x frames``, learnt from the batches the model ran) and refuses
it when that is past its deadline; the caller answers BUSY at once, before the frame costs a
BER estimate, a queue slot or model time. A job that waited in the queue past the point where it
can still be answered in time (a burst, a slow batch) is taken out by the model thread unrun
and answered BUSY too (`Expired`). So under overload the queue holds at most about a deadline's
worth of work, answered frames keep their latency, and the model only ever runs frames that
will be answered in time.

With ``workers`` > 1 (a remote model half: Ray Serve replicas) that many model threads take
batches from the one queue, so as many batches are in flight as there are replicas to run them;
a batch is still one call. One worker (in-process model) keeps the model on one thread.

Why the thread and not a coroutine cuts batches: a coroutine-cut batch needs a turn of the
event loop before the model can start it, and the loop may be busy sending the previous batch's
replies; with the model thread pulling, the only hand-over per batch is the results (one wake-up
of the loop), and the queue itself is the pipeline.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

log = logging.getLogger("snn.edge")


@dataclass(slots=True, eq=False)
class Job:
    """One inference waiting for the model. `done(job, label, confidence, error)` runs on the loop.

    The batcher reads only these fields; a caller that needs more per job (where its answer goes,
    whose statistics it counts) subclasses it (edge.core.Pending) rather than hanging an untyped
    value on it."""

    codec: object
    payload: bytes                  # bytes-like, codec.payload_bytes long
    erased: object                  # bool per payload byte (numpy), or None when complete
    ber: float
    done: Callable
    t_recv: float                   # perf_counter when the (last) frame arrived
    t_start: float = field(default=0.0, init=False)   # batch start
    t_model: float = field(default=0.0, init=False)   # seconds the batch took in the model


class Expired(Exception):
    """A job that could no longer be answered within its deadline: refused BUSY, never run."""


class MicroBatcher:
    """Bounded queue + model worker thread(s) (one unless `workers`) that cut batches at size or
    age, with admission by deadline (`admit`)."""

    def __init__(self, max_batch: int = 64, max_wait_s: float = 0.002, max_queue: int = 2048,
                 metrics=None, on_batch: Callable | None = None, workers: int = 1,
                 deadline_s: float = 0.05) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or deadline_s <= 0:
            raise ValueError("max_batch, max_queue and workers must be at least 1, deadline_s > 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.deadline_s = deadline_s
        # the cost model of one batch of n frames: batch_fixed_s + per_frame_s * n, learnt from the
        # warm-up (`calibrate`) and then from every batch run (exponentially weighted); read on
        # the loop, written by the model thread (floats: a stale read is harmless)
        self.batch_fixed_s = 0.0
        self.per_frame_s = 0.0
        self.expired = 0            # jobs taken out unrun (written by the model thread)
        self.metrics = metrics
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._sleeping = 0          # model threads waiting on _cond (changed under its lock)
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[Future] = []
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snn-model")
        self.batches = 0            # batches answered (written on the loop only)
        self._taken = 0             # batches the model threads took (written under _cond's lock)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Batches taken by the model thread and not yet answered (two counters, each written
        by one thread, so no update is lost between them)."""
        return self._taken - self.batches

    @property
    def accepting(self) -> bool:
        return not self._closing

    def run_in_model_thread(self, fn: Callable, *args):
        """Run fn(*args) in the model thread and wait for it (start-up work such as warm-up;
        before `start`, which gives the thread to the batch loop for good)."""
        if self._workers:
            raise RuntimeError("the model thread is serving batches")
        return self._pool.submit(fn, *args).result()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._workers = [self._pool.submit(self._model_loop) for _ in range(self.workers)]

    def calibrate(self, small_s: float, full_s: float) -> None:
        """Seed the cost model from a batch of 1 (`small_s`) and one of max_batch (`full_s`)."""
        per = max(0.0, (full_s - small_s) / max(1, self.max_batch - 1))
        self.per_frame_s = per
        self.batch_fixed_s = max(0.0, small_s - per)

    def expected_s(self, n: int) -> float:
        """Seconds a batch of n frames is expected to take."""
        return self.batch_fixed_s + self.per_frame_s * n

    def capacity_fps(self) -> float:
        """Frames/s the model serves in full batches, by the cost model."""
        return self.max_batch / max(self.expected_s(self.max_batch), 1e-6)

    def admit(self, t_recv: float, now: float) -> bool:
        """Can a frame received at `t_recv` still be answered within the deadline if queued now?
        (The queue ahead of it in full batches, its own batch, and a batch in the model.) One
        already past its deadline never is, even by an idle edge: a reader that paused for the
        model would otherwise feed it one stale frame per batch, answered late."""
        if now - t_recv > self.deadline_s:
            return False
        ahead = len(self._queue)
        running = self._taken != self.batches
        if not ahead and not running:
            return True     # an idle edge answers, however slow its model
        wait = ((ahead // self.max_batch + 1 + running) * self.batch_fixed_s
                + (ahead + 1 + running * self.max_batch) * self.per_frame_s)
        return now - t_recv + wait <= self.deadline_s

    def submit(self, job: Job) -> bool:
        """Queue a job; False when the queue is full or the server is shutting down (busy)."""
        queue = self._queue
        if self._closing or len(queue) >= self.max_queue:
            return False
        queue.append(job)
        if self._sleeping:
            n = len(queue)
            if n == 1 or n >= self.max_batch:
                self._wake()
        return True

    def _wake(self, all_threads: bool = False) -> None:
        with self._cond:
            if all_threads:
                self._cond.notify_all()
            else:
                self._cond.notify()

    async def drain(self, timeout_s: float) -> list[Job]:
        """Stop accepting, finish what is queued within `timeout_s`; return the jobs left over."""
        self._closing = True
        self._wake(all_threads=True)
        deadline = time.monotonic() + timeout_s
        while (self._queue or self.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        left = list(self._queue)
        self._queue.clear()
        self._wake(all_threads=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return left

    # --- the model thread ------------------------------------------------------------------

    def _model_loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:  # another model thread took what was due
                continue
            batch, late = self._split_expired(batch)
            if late:
                self.expired += len(late)
                try:  # a batch that expired whole is answered (counted) here, else below
                    self._loop.call_soon_threadsafe(self._deliver, late, Expired("deadline"), not batch)
                except RuntimeError:
                    return
                if not batch:
                    continue
            try:
                result = _run_batch(batch)
                self._learn(len(batch), result[3])
            except BaseException as exc:  # noqa: BLE001 - a model failure answers the batch
                result = exc
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch, result)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                return

    def _take(self) -> list[Job] | None:
        """Block until a batch is due (full, or its oldest job is max_wait_s old); None at the
        end of a drain."""
        queue, cond = self._queue, self._cond
        while True:
            n = len(queue)
            if n >= self.max_batch or (n and self._closing):
                break
            if n:
                delay = queue[0].t_recv + self.max_wait_s - time.perf_counter()
                if delay <= 0:
                    break
            elif self._closing:
                return None
            else:
                delay = None
            with cond:
                self._sleeping += 1
                # re-check under the lock: a submit that saw no sleeper did not notify
                if len(queue) == n and not self._closing:
                    cond.wait(delay)
                self._sleeping -= 1
        with cond:  # several model threads may take at once
            take = min(self.max_batch, len(queue))
            if not take:
                return [] if not self._closing else None
            batch = [queue.popleft() for _ in range(take)]
            self._taken += 1
        return batch

    def _split_expired(self, batch: list[Job]) -> tuple[list[Job], list[Job]]:
        """(jobs that can still be answered in time, jobs that cannot): run only the first.
        Only while work waits behind this batch: refusing a late job is worth it when the
        model time goes to others; with nothing queued it is answered late rather than not."""
        if not self._queue:
            return batch, []
        now = time.perf_counter()
        limit = now + self.expected_s(len(batch)) - self.deadline_s   # received before: too late
        if batch[0].t_recv > limit:     # the oldest is in time, so are all (FIFO)
            return batch, []
        keep = [j for j in batch if j.t_recv > limit]
        return keep, [j for j in batch if j.t_recv <= limit]

    def _learn(self, n: int, seconds: float) -> None:
        """Update the cost model with a batch of n frames that took `seconds`."""
        if not self.per_frame_s and not self.batch_fixed_s:
            self.per_frame_s = seconds / n
            return
        predicted = self.expected_s(n)
        # scale both terms by the observed/predicted ratio (a slower or faster machine, or CPU
        # contention, moves both alike), smoothed over ~20 batches
        ratio = min(4.0, max(0.25, seconds / predicted)) if predicted > 0 else 1.0
        k = 1.0 + 0.05 * (ratio - 1.0)
        self.batch_fixed_s *= k
        self.per_frame_s *= k

    # --- back on the loop --------------------------------------------------------------------

    def _deliver(self, batch: list[Job], result, counted: bool = True) -> None:
        """On the loop, when the model thread finished a batch (or refused its expired jobs,
        `counted` False when the rest of that batch is answered separately): answer every job."""
        if isinstance(result, Expired):
            labels = confs = None
            t_start, t_model, error = time.perf_counter(), 0.0, result
        elif isinstance(result, BaseException):
            log.error("model batch of %d failed: %r", len(batch), result)
            labels = confs = None
            t_start, t_model, error = time.perf_counter(), 0.0, result
        else:
            labels, confs, t_start, t_model = result
            labels, confs = labels.tolist(), confs.tolist()
            error = None
        if counted:
            self.batches += 1
        if self.on_batch is not None and not isinstance(result, Expired):
            self.on_batch(len(batch), t_model)
        for i, job in enumerate(batch):
            job.t_start, job.t_model = t_start, t_model
            try:
                if error is None:
                    job.done(job, labels[i], confs[i], None)
                else:
                    job.done(job, -1, 0.0, error)
            except Exception:  # noqa: BLE001 - one bad reply path must not stop the others
                log.exception("delivering a reply failed")


def _run_batch(batch: list[Job]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """In the model thread: group the batch by codec, one forward pass per codec.
    Returns (labels, confidences, start time, seconds in the model)."""
    t_start = time.perf_counter()
    n = len(batch)
    groups: dict[int, tuple[object, list[int]]] = {}  # codec id -> (codec, positions in the batch)
    for i, job in enumerate(batch):
        groups.setdefault(id(job.codec), (job.codec, []))[1].append(i)
    labels = np.zeros(n, dtype=np.int64)
    confs = np.zeros(n, dtype=np.float32)
    for codec, idx in groups.values():
        jobs = [batch[i] for i in idx]
        erased = None
        if any(j.erased is not None for j in jobs):
            erased = [j.erased if j.erased is not None else np.zeros(len(j.payload), dtype=bool)
                      for j in jobs]
        bers = np.fromiter((j.ber for j in jobs), dtype=np.float32, count=len(jobs))
        result = codec.infer([j.payload for j in jobs], erased, bers)
        labels[idx] = result.labels
        confs[idx] = result.confidences
    return labels, confs, t_start, time.perf_counter() - t_start

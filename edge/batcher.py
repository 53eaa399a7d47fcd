"""Micro-batching: one bounded queue, one model worker thread, batches cut at size or age.

Jobs from every listener (UDP, serial, HTTP) enter one queue of at most ``max_queue`` inferences;
`submit` refuses a job beyond that (the caller answers "busy" and counts it — nothing is dropped
silently). One coroutine cuts batches: as soon as ``max_batch`` jobs wait, or the oldest has
waited ``max_wait_s``, it hands up to ``max_batch`` jobs to the single model thread and awaits
the result there (``run_in_executor``), so the event loop keeps receiving frames and serving HTTP
while the model runs. While the model is busy, new jobs pile up and form the next batch: under
load batches grow by themselves, at low load a frame waits at most ``max_wait_s``. Two batches
may be in the model thread's hands at once (``pipeline``): the next one waits there while the
loop answers the previous one, so the model never idles between batches.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

log = logging.getLogger("snn.edge")


class Job:
    """One inference waiting for the model. `done(job, label, confidence, error)` runs on the loop."""

    __slots__ = ("codec", "payload", "erased", "ber", "done", "t_recv", "t_start", "t_model",
                 "meta")

    def __init__(self, codec, payload, erased, ber: float, done: Callable, t_recv: float,
                 meta=None) -> None:
        self.codec = codec
        self.payload = payload          # bytes-like, codec.payload_bytes long
        self.erased = erased            # bool per payload byte, or None when complete
        self.ber = ber
        self.done = done
        self.t_recv = t_recv            # perf_counter when the (last) frame arrived
        self.t_start = 0.0              # batch start
        self.t_model = 0.0              # seconds the batch took in the model
        self.meta = meta


class MicroBatcher:
    """Bounded queue + batch cutter + one model worker thread."""

    def __init__(self, max_batch: int = 64, max_wait_s: float = 0.002, max_queue: int = 2048,
                 metrics=None, on_batch: Callable | None = None, pipeline: int = 2) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self.pipeline = pipeline
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snn-model")
        self._closing = False
        self.batches = 0
        self.in_flight = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def accepting(self) -> bool:
        return not self._closing

    def run_in_model_thread(self, fn: Callable, *args):
        """Run fn(*args) in the model thread and wait for it (start-up work such as warm-up)."""
        return self._pool.submit(fn, *args).result()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.pipeline)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="snn-batcher")

    def submit(self, job: Job) -> bool:
        """Queue a job; False when the queue is full or the server is shutting down (busy)."""
        if self._closing or len(self._queue) >= self.max_queue:
            return False
        self._queue.append(job)
        n = len(self._queue)
        if n == 1 or n >= self.max_batch:
            self._wake.set()
        return True

    async def drain(self, timeout_s: float) -> list[Job]:
        """Stop accepting, finish what is queued within `timeout_s`; return the jobs left over."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        left = list(self._queue)
        self._queue.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return left

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue, wake = self._queue, self._wake
        while True:
            # at most `pipeline` batches in the model thread's hands: while one runs, the next
            # is already queued there, so the model never idles while the loop sends replies
            await self._slots.acquire()
            while True:
                if not queue:
                    if self._closing:
                        self._slots.release()
                        while self.in_flight:
                            await asyncio.sleep(0.005)
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                if len(queue) < self.max_batch and not self._closing:
                    delay = queue[0].t_recv + self.max_wait_s - time.perf_counter()
                    if delay > 0:
                        wake.clear()
                        try:
                            await asyncio.wait_for(wake.wait(), delay)
                        except asyncio.TimeoutError:
                            pass
                        continue
                break
            n = min(self.max_batch, len(queue))
            batch = [queue.popleft() for _ in range(n)]
            self.in_flight += 1
            future = loop.run_in_executor(self._pool, _run_batch, batch)
            future.add_done_callback(lambda f, batch=batch: self._deliver(f, batch))

    def _deliver(self, future, batch: list[Job]) -> None:
        """On the loop, when the model thread finished a batch: answer every job in it."""
        self.in_flight -= 1
        self._slots.release()
        self.batches += 1
        try:
            labels, confs, t_start, t_model = future.result()
            error = None
        except BaseException as exc:  # noqa: BLE001 - a model failure answers the batch, never kills the loop
            if not isinstance(exc, asyncio.CancelledError):
                log.error("model batch of %d failed: %r", len(batch), exc)
            labels = confs = None
            t_start, t_model, error = time.perf_counter(), 0.0, exc
        if self.on_batch is not None:
            self.on_batch(len(batch), t_model)
        for i, job in enumerate(batch):
            job.t_start, job.t_model = t_start, t_model
            try:
                if error is None:
                    job.done(job, int(labels[i]), float(confs[i]), None)
                else:
                    job.done(job, -1, 0.0, error)
            except Exception:  # noqa: BLE001 - one bad reply path must not stop the others
                log.exception("delivering a reply failed")


def _run_batch(batch: list[Job]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """In the model thread: group the batch by codec, one forward pass per codec.
    Returns (labels, confidences, start time, seconds in the model)."""
    t_start = time.perf_counter()
    n = len(batch)
    labels = np.zeros(n, dtype=np.int64)
    confs = np.zeros(n, dtype=np.float32)
    groups: dict[int, list[int]] = {}
    codecs = {}
    for i, job in enumerate(batch):
        key = id(job.codec)
        groups.setdefault(key, []).append(i)
        codecs[key] = job.codec
    for key, idx in groups.items():
        jobs = [batch[i] for i in idx]
        erased = None
        if any(j.erased is not None for j in jobs):
            erased = [j.erased if j.erased is not None else np.zeros(len(j.payload), dtype=bool)
                      for j in jobs]
        bers = np.fromiter((j.ber for j in jobs), dtype=np.float32, count=len(jobs))
        result = codecs[key].infer([j.payload for j in jobs], erased, bers)
        labels[idx] = result.labels
        confs[idx] = result.confidences
    return labels, confs, t_start, time.perf_counter() - t_start

"""edge/batcher.py: batches cut at size or age, model off the loop, bounded queue, drain."""
import asyncio
import threading
import time

import numpy as np

from edge.batcher import Job, MicroBatcher
from edge.codecs import BatchResult


class FakeCodec:
    def __init__(self, delay=0.0):
        self.delay = delay
        self.batches = []
        self.threads = set()

    def infer(self, payloads, erased, bers):
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(payloads))
        if self.delay:
            time.sleep(self.delay)
        labels = np.array([p[0] for p in payloads])
        return BatchResult(labels, np.full(len(payloads), 0.5))


def _job(codec, value, results):
    return Job(codec, bytes([value]), None, 1e-3,
               lambda job, label, conf, err: results.append((value, label, err)), time.perf_counter())


def test_batch_cut_at_max_size_and_model_off_loop():
    async def main():
        codec = FakeCodec()
        b = MicroBatcher(max_batch=8, max_wait_s=10.0, max_queue=100)
        b.start()
        results = []
        for v in range(16):
            assert b.submit(_job(codec, v, results))
        t0 = time.perf_counter()
        while len(results) < 16:
            await asyncio.sleep(0.005)
        assert time.perf_counter() - t0 < 2.0  # did not wait max_wait_s: batches were full
        await b.drain(1.0)
        return codec, results

    codec, results = asyncio.run(main())
    assert codec.batches == [8, 8]
    assert sorted(results) == [(v, v, None) for v in range(16)]
    assert codec.threads and all(name.startswith("snn-model") for name in codec.threads)


def test_batch_cut_at_max_wait():
    async def main():
        codec = FakeCodec()
        b = MicroBatcher(max_batch=64, max_wait_s=0.02, max_queue=100)
        b.start()
        results = []
        t0 = time.perf_counter()
        for v in range(3):
            b.submit(_job(codec, v, results))
        while len(results) < 3:
            await asyncio.sleep(0.001)
        waited = time.perf_counter() - t0
        await b.drain(1.0)
        return codec, waited

    codec, waited = asyncio.run(main())
    assert codec.batches == [3] and 0.015 <= waited < 1.0


def test_full_queue_refuses_and_loop_stays_free():
    async def main():
        codec = FakeCodec(delay=0.2)
        b = MicroBatcher(max_batch=2, max_wait_s=0.0, max_queue=4)
        b.start()
        results = []
        accepted = [b.submit(_job(codec, v, results)) for v in range(4)]
        await asyncio.sleep(0.01)  # one batch of 2 is in the model thread's hands, 2 jobs queued
        more = [b.submit(_job(codec, v, results)) for v in range(4, 10)]
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)  # the loop is not blocked by the 0.2 s model call
        ticked = time.perf_counter() - t0
        left = await b.drain(2.0)
        return accepted, more, ticked, results, left

    accepted, more, ticked, results, left = asyncio.run(main())
    assert all(accepted) and more == [True, True, False, False, False, False]
    assert ticked < 0.1
    assert len(results) == 6 and not left


def test_model_error_answers_every_job():
    class Broken(FakeCodec):
        def infer(self, payloads, erased, bers):
            raise RuntimeError("boom")

    async def main():
        b = MicroBatcher(max_batch=4, max_wait_s=0.0, max_queue=10)
        b.start()
        results = []
        for v in range(3):
            b.submit(_job(Broken(), v, results))
        while len(results) < 3:
            await asyncio.sleep(0.005)
        ok = b.submit(_job(FakeCodec(), 7, results))
        while len(results) < 4:
            await asyncio.sleep(0.005)
        await b.drain(1.0)
        return results, ok

    results, ok = asyncio.run(main())
    assert all(isinstance(err, RuntimeError) for _, _, err in results[:3])
    assert ok and results[3] == (7, 7, None)


def test_model_thread_takes_the_next_batch_without_the_loop():
    """While the loop is busy (not yielding), the model thread still cuts and runs batches."""
    async def main():
        codec = FakeCodec()
        b = MicroBatcher(max_batch=4, max_wait_s=10.0, max_queue=100)
        b.start()
        results = []
        for v in range(12):
            b.submit(_job(codec, v, results))
        t0 = time.perf_counter()
        while len(codec.batches) < 3 and time.perf_counter() - t0 < 2.0:
            time.sleep(0.001)  # blocks the loop: no coroutine can cut a batch now
        ran_while_blocked = list(codec.batches)
        while len(results) < 12:
            await asyncio.sleep(0.005)
        await b.drain(1.0)
        return ran_while_blocked, results

    ran, results = asyncio.run(main())
    assert ran == [4, 4, 4]
    assert sorted(results) == [(v, v, None) for v in range(12)]


def test_drain_answers_queued_jobs_and_refuses_new_ones():
    async def main():
        codec = FakeCodec(delay=0.01)
        b = MicroBatcher(max_batch=4, max_wait_s=10.0, max_queue=100)
        b.start()
        results = []
        for v in range(10):  # 2 full batches and 2 jobs that only a drain flushes
            b.submit(_job(codec, v, results))
        left = await b.drain(2.0)
        return b.submit(_job(codec, 99, results)), left, results

    accepted, left, results = asyncio.run(main())
    assert not accepted and not left
    assert sorted(results) == [(v, v, None) for v in range(10)]


# --- admission by deadline ------------------------------------------------------------------------

def test_admit_refuses_what_cannot_be_answered_in_time():
    b = MicroBatcher(max_batch=4, max_wait_s=10.0, max_queue=100, deadline_s=0.05)
    b.calibrate(small_s=0.010, full_s=0.022)   # fixed 6 ms + 4 ms per frame
    now = time.perf_counter()
    codec, results = FakeCodec(), []
    assert b.admit(now, now)                   # idle: always
    assert b.submit(_job(codec, 1, results))
    assert b.admit(now, now)                   # 1 ahead: ~1 batch of 2 frames
    assert not b.admit(now - 0.045, now)       # but not for a frame already 45 ms old
    for v in range(11):
        b.submit(_job(codec, v, results))
    assert not b.admit(now, now)               # 12 ahead: 4 batches, ~76 ms
    assert b.expected_s(4) == 0.022 or abs(b.expected_s(4) - 0.022) < 1e-9


def test_late_jobs_are_refused_without_model_time():
    async def main():
        codec = FakeCodec(delay=0.1)
        b = MicroBatcher(max_batch=2, max_wait_s=0.0, max_queue=100, deadline_s=0.15)
        b.calibrate(0.1, 0.1)
        b.start()
        results = []
        for v in range(6):
            assert b.submit(_job(codec, v, results))
        t0 = time.perf_counter()
        while len(results) < 6 and time.perf_counter() - t0 < 5:
            await asyncio.sleep(0.01)
        assert not await b.drain(1.0)
        return codec, results, b

    codec, results, b = asyncio.run(main())
    answered = [v for v, label, err in results if err is None]
    refused = [err for v, label, err in results if err is not None]
    # jobs 2 and 3 are late with work behind them: refused unrun; 4 and 5 are as late but nothing
    # waits behind them, so they are answered late rather than not at all
    assert answered == [0, 1, 4, 5] and len(refused) == 2 and b.expired == 2
    assert all(type(e).__name__ == "Expired" for e in refused)
    assert codec.batches == [2, 2]              # the refused ones never reached the model
    assert b.in_flight == 0


def test_cost_model_learns_a_slower_model():
    b = MicroBatcher(max_batch=8, deadline_s=0.05)
    b.calibrate(0.001, 0.008)
    before = b.expected_s(8)
    for _ in range(60):
        b._learn(8, 3 * before)
    assert 2.5 * before < b.expected_s(8) < 3.5 * before


def test_auto_udp_queue_holds_half_a_deadline_of_work():
    """The kernel queue a UDP front gets by default: the frames the model serves in half a
    deadline at its calibrated batch cost, bounded to 64..4096."""
    from edge.listeners import auto_udp_queue

    b = MicroBatcher(max_batch=64, deadline_s=0.05)
    b.calibrate(small_s=0.0005, full_s=0.0032)          # 64 frames in 3.2 ms: 20,000 frames/s
    assert auto_udp_queue(b.capacity_fps(), b.deadline_s) == 500                      # 20,000/s x 25 ms
    b.calibrate(small_s=0.02, full_s=0.08)               # a slow model: 800 frames/s -> 20, floored
    assert auto_udp_queue(b.capacity_fps(), b.deadline_s) == 64
    b.calibrate(small_s=1e-6, full_s=2e-6)               # absurdly fast: capped
    assert auto_udp_queue(b.capacity_fps(), b.deadline_s) == 4096


def test_admission_refuses_a_frame_already_past_its_deadline_even_when_idle():
    """An idle edge admits any fresh frame, however slow its model, but never one that already
    waited past its deadline (a paused reader would feed it one stale frame per batch)."""
    b = MicroBatcher(max_batch=4, deadline_s=0.05)
    b.calibrate(small_s=0.5, full_s=0.5)                 # a model far slower than the deadline
    now = 100.0
    assert b.admit(now - 0.01, now)                      # idle: answered, late or not
    assert not b.admit(now - 0.06, now)                  # waited 60 ms of its 50 already

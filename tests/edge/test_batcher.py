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
        await asyncio.sleep(0.01)  # two batches of 2 are now in the model thread's hands (pipeline)
        more = [b.submit(_job(codec, v, results)) for v in range(4, 10)]
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)  # the loop is not blocked by the 0.2 s model call
        ticked = time.perf_counter() - t0
        left = await b.drain(2.0)
        return accepted, more, ticked, results, left

    accepted, more, ticked, results, left = asyncio.run(main())
    assert all(accepted) and more.count(True) == 4 and more.count(False) == 2
    assert ticked < 0.1
    assert len(results) == 8 and not left


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

"""The edge server: listeners, micro-batching, the BER-aware decoder and the task head.

``snn edge serve [--bundle B ...] [--http HOST:PORT] [--udp HOST:PORT] [--serial URL]`` runs one
asyncio process — uvicorn serving the FastAPI app, the UDP and serial listeners on the same
loop — that feeds one bounded inference queue; one model thread runs the batches.

Modules:

- ``cli``: the ``snn edge`` subcommand (thin).
- ``server``: binds the ports (a port in use is one clear line, exit 2), loads the bundles, runs
  uvicorn with graceful SIGTERM (drain, exit 0 within 5 s).
- ``http_guard``: bounds HTTP: a connection cap (the longest-idle closed for a newcomer), idle
  and whole-request deadlines, in uvicorn's h11 protocol; accept errors counted.
- ``lograte``: one log line per kind of failure per interval, then a count (no flood of lines).
- ``app``: HTTP API (``POST /v1/infer``, ``GET /v1/codecs``, ``/v1/stats``, ``/healthz``,
  ``/metrics``, ``/`` dashboard; OpenAPI at ``/docs``).
- ``listeners``: UDP (datagram per frame) and serial (COBS stream, reader/writer threads).
- ``core``: the per-frame pipeline: header check, codec by fingerprint, reassembly with
  erasures, BER estimate, queue, reply; every refusal counted by reason.
- ``batcher``: bounded queue, batches cut at size or age by the model thread itself (no loop
  round trip between batches), model off the loop.
- ``codecs``: served codecs (eager edge half; TorchScript opt-in) and the batched unpack +
  decode + task head.
- ``ber``: per frame, the bits the header's decoding corrected out of those received, pooled
  per device with an SNR-hint prior.
- ``auth``: provisioned keys, replay windows and rate limits: who may talk to this edge.
- ``engines``: what runs the edge half on a batch (onnxruntime by default, torch opt-in).
- ``ray_serve``: the model half on Ray Serve replicas (``--ray``); the fronts stay here.
- ``balancer``: ``snn edge balance``, a UDP balancer that keeps each device on one front.
- ``stats``: Prometheus metrics, bounded per-device table, latency ring, rate meter.

The load generator that measures it (``snn bench edge``) is in ``bench/``: nothing here imports it.
"""

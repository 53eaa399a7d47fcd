"""The load-generation library every edge benchmark is built from (`snn bench edge`, `fleet`,
`flood`, `http-abuse`, `python -m bench.ray_edge`): each benchmark is a few phases over these.

- ``frames``: valid keyed DATA frames with fresh counters, garbage, keys for the server.
- ``replies``: reading replies off a socket and the one reply matcher (a reply echoes its
  frame's low 16 counter bits); the ERROR code of a reply.
- ``udp``: UDP load, closed loop (throughput) and open loop (latency at a rate, soak).
- ``http``: keep-alive HTTP clients posting frames to ``/v1/infer``.
- ``server``: the server under test, a real keyed ``snn edge serve`` on ephemeral loopback
  ports, and the one way to read its HTTP API (``EdgeServer.get``).
- ``metrics``: the server's ``/metrics`` read with prometheus_client's parser: its own
  accounting (answered, refused, kernel drops), silent refusals, stalls, batch sizes.
- ``usage``: CPU seconds, RSS and open files of a process, CPU per answered frame.
- ``phases``: a measured phase (CPU, server accounting, mean batch around any load), the
  overload phase, the decoder + task head alone.
- ``stats``: latency percentiles.

No torch here except in ``phases.measure_model_fps`` (the server's engine, loaded in-process).
"""

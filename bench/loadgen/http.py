"""HTTP load: keep-alive clients posting frames to the edge's ``/v1/infer`` as fast as answered."""
from __future__ import annotations

import asyncio
import time

from bench.loadgen.frames import FrameMaker
from bench.loadgen.stats import percentiles


async def _http_client(host: str, port: int, maker: FrameMaker, t_end: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < t_end:
            body = maker.frame()   # a fresh counter per request: a repeated frame is a replay (409)
            t = time.perf_counter()
            writer.write((f"POST /v1/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
                          ).encode() + body)
            out["sent"] += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if status == 200:
                out["answered"] += 1
                out["lat"].append((time.perf_counter() - t) * 1e3)
            else:
                out["rejected"] += 1
                out["status"][status] = out["status"].get(status, 0) + 1
    finally:
        writer.close()


def http_load(url: str, maker: FrameMaker, clients: int, duration: float, warmup: float = 1.0) -> dict:
    """`clients` keep-alive connections posting frames to /v1/infer as fast as answered."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    port = int(port)

    async def main(seconds: float, out: dict):
        t_end = time.perf_counter() + seconds
        await asyncio.gather(*(_http_client(host, port, maker, t_end, out) for c in range(clients)))

    if warmup:
        asyncio.run(main(warmup, {"sent": 0, "answered": 0, "rejected": 0, "lat": [], "status": {}}))
    out = {"sent": 0, "answered": 0, "rejected": 0, "lat": [], "status": {}}
    t0 = time.perf_counter()
    asyncio.run(main(duration, out))
    elapsed = time.perf_counter() - t0
    lat = out.pop("lat")
    return {"clients": clients, "duration_s": duration, **out,
            "lost": out["sent"] - out["answered"] - out["rejected"],
            "throughput_rps": round(out["answered"] / elapsed, 1), **percentiles(lat)}

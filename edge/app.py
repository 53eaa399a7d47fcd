"""The HTTP face of the edge: a FastAPI app (OpenAPI at /docs) over the shared `EdgeCore`.

    POST /v1/infer   raw frame bytes (application/octet-stream) -> label, class, confidence, BER, timings
    GET  /v1/codecs  the codecs served (fingerprint, levels, symbols, classes)
    GET  /v1/stats   live figures for the dashboard (bounded size)
    GET  /healthz    liveness, answered on the loop even when the model queue is full
    GET  /metrics    Prometheus text
    GET  /           the live dashboard page (refreshes itself from /v1/stats)

Errors are JSON problems ``{"detail", "reason", "code"}`` with a 4xx/5xx status — never a
traceback. The app's lifespan starts the core (batcher, reassembly timer) and the UDP and serial
listeners on uvicorn's own loop, and on shutdown stops the listeners and drains the queue.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from codec.wire.frame import ErrorCode
from edge.core import Answer, EdgeCore, Front, Rejected

log = logging.getLogger("snn.edge")

OCTET = "application/octet-stream"


class Timings(BaseModel):
    queue_ms: float = Field(description="waiting for a model batch")
    model_ms: float = Field(description="the batch's decoder + task head time")
    total_ms: float = Field(description="request body received to answer ready")


class InferResponse(BaseModel):
    label: int = Field(description="class index")
    class_name: str
    confidence: float = Field(ge=0, le=1, description="softmax probability of the label")
    ber: float = Field(description="the edge's BER estimate that conditioned the decoder")
    codec: str = Field(description="codec fingerprint, hex")
    device_id: int
    counter: int = Field(description="the request's 32-bit frame counter (docs/PROTOCOL.md §4.3)")
    truth: int | None = Field(None, description="ground-truth label, when the device sent one")
    timings: Timings


class Problem(BaseModel):
    detail: str
    reason: str = Field(description="metrics label of the refusal (length, damaged, auth, replay, "
                                    "unknown_codec, busy, too_large, content_type, ...)")
    code: int | None = Field(None, description="the ERROR frame code a datagram link would get")


class CodecInfo(BaseModel):
    fingerprint: str
    name: str
    levels: int
    bits_per_symbol: int
    n_symbols: int
    payload_bits: int
    payload_bytes: int
    gray: bool
    classes: list[str]
    source: str


class Health(BaseModel):
    status: str
    codecs: int
    queue_depth: int
    max_queue: int
    uptime_s: float


# the HTTP status of each refusal reason (the core's typed refusals, docs/PROTOCOL.md §7)
HTTP_STATUS = {"length": 400, "damaged": 400, "version": 400, "kind": 400, "fragment": 400, "auth": 401,
               "bad_length": 400, "replay": 409, "late": 409, "rate_limited": 429, "unknown_codec": 404,
               "bad_frame": 422, "busy": 503, "shutdown": 503, "internal": 500}


def _problem(status: int, reason: str, detail: str, code: int | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "reason": reason, "code": code}, status_code=status)


async def handle_infer(front: Front, max_body: int, content_type: str | None, content_length: str | None,
                       chunks) -> tuple[int, bytes]:
    """POST /v1/infer: (status, JSON bytes), reading the body in chunks so an oversized one is cut
    off at max_body without being held whole; the frame goes to the core's one entry with a
    future for its answer."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != OCTET:
        front.refused("content_type")
        return 415, _problem_bytes("content_type", f"send the raw frame as {OCTET}, not "
                                                    f"{ctype or 'no content type'}")
    if content_length is not None and (not content_length.isdigit() or int(content_length) > max_body):
        front.refused("too_large")
        return 413, _problem_bytes("too_large", f"body of {content_length} bytes; a frame is at "
                                                f"most {max_body} bytes")
    parts, size = [], 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_body:
                front.refused("too_large")
                return 413, _problem_bytes("too_large", f"body over {max_body} bytes; a frame is at "
                                                        f"most {max_body} bytes")
            parts.append(chunk)
    except ClientDisconnect:
        # the client left (or the request deadline cut it) mid-body: nobody to answer, and not
        # an internal error (a traceback per connection is what a flood of these would write)
        return 400, _problem_bytes("bad_frame", "the client disconnected before the whole body arrived")
    answer: asyncio.Future = asyncio.get_running_loop().create_future()
    front.offer(b"".join(parts), time.perf_counter(), answer)
    try:
        result: Answer = await answer
    except Rejected as rej:
        code = rej.code if rej.code is not None else ErrorCode.BAD_FRAME
        return HTTP_STATUS.get(rej.reason, 400), _problem_bytes(rej.reason, rej.message, int(code))
    return 200, json.dumps(_answer_json(result)).encode()


def _answer_json(a: Answer) -> dict:
    t_end = time.perf_counter()
    return {"label": a.label, "class_name": a.class_name, "confidence": a.confidence, "ber": a.ber,
            "codec": a.codec.fingerprint_hex, "device_id": a.device_id, "counter": a.counter, "truth": a.truth,
            "timings": {"queue_ms": (a.t_start - a.t_recv) * 1e3, "model_ms": a.t_model * 1e3,
                        "total_ms": (t_end - a.t_recv) * 1e3}}


def _problem_bytes(reason: str, detail: str, code: int | None = None) -> bytes:
    return json.dumps({"detail": detail, "reason": reason, "code": code}).encode()


def _dashboard_html() -> str:
    return resources.files("edge").joinpath("static/dashboard.html").read_text(encoding="utf-8")


def create_app(core: EdgeCore, on_startup: Callable | None = None,
               on_shutdown: Callable | None = None) -> FastAPI:
    """The FastAPI app around `core`; `on_startup(core)`/`on_shutdown(core)` (async) start and
    stop the frame listeners on the same loop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        core.start()
        if on_startup is not None:
            await on_startup(core)
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown(core)
            await core.stop()

    app = FastAPI(title="SemanticNN edge", version="1",
                  description="Split-inference edge server: BER-aware decoding of SemanticNN frames "
                              "(wire format: docs/PROTOCOL.md).", lifespan=lifespan)
    dashboard = _dashboard_html()
    front = core.front("http")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        front.refused("bad_frame")
        return _problem(422, "bad_frame", f"invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _problem(exc.status_code, "http", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("internal error on %s %s: %r", request.method, request.url.path, exc)
        front.refused("internal")
        return _problem(500, "internal", "internal error (see the server log)")

    @app.post("/v1/infer", response_model=InferResponse, summary="Decode one frame",
              responses={400: {"model": Problem}, 404: {"model": Problem},
                         413: {"model": Problem}, 415: {"model": Problem},
                         422: {"model": Problem}, 503: {"model": Problem}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  OCTET: {"schema": {"type": "string", "format": "binary"}}},
                  "description": "one DATA frame (docs/PROTOCOL.md), a whole inference"}})
    async def infer(request: Request):
        """Decode one DATA frame: label, class name, confidence, estimated BER and timings."""
        status, payload = await handle_infer(front, core.config.max_body, request.headers.get("content-type"),
                                             request.headers.get("content-length"), request.stream())
        return Response(payload, status_code=status, media_type="application/json")

    @app.get("/v1/codecs", response_model=list[CodecInfo], summary="Codecs served")
    async def codecs():
        return [c.describe() for c in core.codecs]

    @app.get("/v1/stats", summary="Live figures for the dashboard")
    async def stats():
        return core.snapshot()

    @app.get("/healthz", response_model=Health, summary="Liveness")
    async def healthz():
        return core.health()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics():
        return Response(core.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(dashboard)

    return app

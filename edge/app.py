"""The HTTP face of the edge: a FastAPI app (OpenAPI at /docs) over the shared `EdgeCore`.

    POST /v1/infer   one DATA frame (application/octet-stream) -> the authenticated, encrypted
                     REPLY frame a UDP device gets (application/octet-stream); JSON (label,
                     class, confidence, BER, timings) only for the operator (Accept:
                     application/json and the operator credential)
    GET  /v1/codecs  the codecs served (fingerprint, levels, symbols, classes)      operator
    GET  /v1/stats   live figures for the dashboard (bounded size)                  operator
    GET  /metrics    Prometheus text                                                operator
    GET  /           the live dashboard page (refreshes itself from /v1/stats)      operator
    GET  /healthz    liveness (names no device), answered on the loop even when the model queue is full

The operator credential (edge/operator_auth.py): ``Authorization: Bearer TOKEN``, or the HttpOnly,
SameSite=Strict cookie that ``/?token=TOKEN`` sets for the dashboard. A frame's refusal is the
authenticated ERROR frame when the frame authenticated, else a JSON problem ``{"detail",
"reason", "code": null}`` — nothing is said on behalf of a device for what did not
authenticate. Never a traceback. The app's lifespan starts the core (batcher, reassembly timer)
and the UDP and serial listeners on uvicorn's own loop, and on shutdown stops the listeners and
drains the queue.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from edge.core import Answer, EdgeCore, Front, Rejected
from edge.operator_auth import COOKIE, OperatorAuth, open_access

log = logging.getLogger("snn.edge")

OCTET = "application/octet-stream"
JSON = "application/json"


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
                                    "rate_limited, unknown_codec, busy, too_large, content_type, operator, ...)")
    code: int | None = Field(None, description="the ERROR code (docs/PROTOCOL.md §5.2) of the authenticated "
                                               "ERROR frame this refusal is: set only when the frame "
                                               "authenticated (a device then gets that ERROR frame as the "
                                               "body, application/octet-stream; this JSON form is the "
                                               "operator's); null when it did not, for nothing is said on "
                                               "a device's behalf to what did not authenticate")


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
               "bad_length": 400, "replay": 409, "late": 409, "gap": 409, "rate_limited": 429, "unverified": 429,
               "unknown_codec": 404,
               "bad_frame": 422, "busy": 503, "shutdown": 503, "internal": 500}


def _problem(status: int, reason: str, detail: str, code: int | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "reason": reason, "code": code}, status_code=status)


async def handle_infer(front: Front, max_body: int, content_type: str | None, content_length: str | None,
                       chunks, as_json: bool = False, client: str | None = None) -> tuple[int, bytes, str]:
    """POST /v1/infer: (status, body, media type), reading the body in chunks so an oversized one
    is cut off at max_body without being held whole; the frame goes to the core's one entry with
    a future for its answer. The answer is the REPLY frame (an authenticated refusal: the ERROR
    frame), or with `as_json` (the operator) its plaintext as JSON."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != OCTET:
        front.refused("content_type")
        return 415, _problem_bytes("content_type", f"send the raw frame as {OCTET}, not "
                                                    f"{ctype or 'no content type'}"), JSON
    if content_length is not None and (not content_length.isdigit() or int(content_length) > max_body):
        front.refused("too_large")
        return 413, _problem_bytes("too_large", f"body of {content_length} bytes; a frame is at "
                                                f"most {max_body} bytes"), JSON
    parts, size = [], 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_body:
                front.refused("too_large")
                return 413, _problem_bytes("too_large", f"body over {max_body} bytes; a frame is at "
                                                        f"most {max_body} bytes"), JSON
            parts.append(chunk)
    except ClientDisconnect:
        # the client left (or the request deadline cut it) mid-body: nobody to answer, and not
        # an internal error (a traceback per connection is what a flood of these would write)
        return 400, _problem_bytes("bad_frame", "the client disconnected before the whole body arrived"), JSON
    answer: asyncio.Future = asyncio.get_running_loop().create_future()
    front.offer(b"".join(parts), time.perf_counter(), answer, client)
    try:
        result: Answer = await answer
    except Rejected as rej:
        status = HTTP_STATUS.get(rej.reason, 400)
        if rej.frame is not None and not as_json:
            return status, rej.frame, OCTET
        return status, _problem_bytes(rej.reason, rej.message,
                                      int(rej.code) if rej.frame is not None else None), JSON
    if as_json:
        return 200, json.dumps(_answer_json(result)).encode(), JSON
    return 200, result.frame, OCTET


def _answer_json(a: Answer) -> dict:
    t_end = time.perf_counter()
    return {"label": a.label, "class_name": a.class_name, "confidence": a.confidence, "ber": a.ber,
            "codec": a.codec.fingerprint_hex, "device_id": a.device_id, "counter": a.counter, "truth": a.truth,
            "timings": {"queue_ms": (a.t_start - a.t_recv) * 1e3, "model_ms": a.t_model * 1e3,
                        "total_ms": (t_end - a.t_recv) * 1e3}}


def _wants_json(accept: str | None) -> bool:
    """Whether the request asks for JSON (and not for the frame) in its Accept header."""
    kinds = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return JSON in kinds and OCTET not in kinds


# the operator credential as OpenAPI sees it (the check itself is OperatorAuth.allows: header or cookie)
BEARER = HTTPBearer(auto_error=False, description="the operator token (operator_token_file)")


class OperatorRequired(Exception):
    """The request needs the operator credential and did not carry it (401)."""


_LOGIN_PAGE = ("<!doctype html><title>SemanticNN edge</title><h1>SemanticNN edge</h1><p>The dashboard "
               "needs the operator token: open <code>/?token=TOKEN</code> once (TOKEN is in the edge's "
               "operator token file, <code>operator_token_file</code> of <code>--ready-json</code>).</p>")


def _problem_bytes(reason: str, detail: str, code: int | None = None) -> bytes:
    return json.dumps({"detail": detail, "reason": reason, "code": code}).encode()


def _dashboard_html() -> str:
    return resources.files("edge").joinpath("static/dashboard.html").read_text(encoding="utf-8")


_FRAME_BODY = {OCTET: {"schema": {"type": "string", "format": "binary"}}}
_ERROR_FRAME = {"model": Problem, "content": _FRAME_BODY,
                "description": "the frame authenticated and is refused: the authenticated ERROR frame "
                               "(octet-stream; JSON for the operator)"}
_NO_FRAME = {"model": Problem, "description": "the frame did not authenticate or is not answered: a "
                                              "problem with code null"}
_INFER_RESPONSES = {
    200: {"content": {**_FRAME_BODY, JSON: {"schema": InferResponse.model_json_schema()}},
          "description": "the authenticated, encrypted REPLY frame (docs/PROTOCOL.md §5.1); JSON "
                         "InferResponse for the operator with Accept: application/json"},
    400: _NO_FRAME,
    401: {"model": Problem, "description": "the frame failed authentication (reason auth), or JSON was "
                                           "asked without the operator credential"},
    404: _ERROR_FRAME,
    409: {"model": Problem, "description": "a replay (reason replay; code null), or a counter beyond the "
                                           "gap (reason gap: the ERROR RESYNC frame)"},
    413: _NO_FRAME, 415: _NO_FRAME, 422: _ERROR_FRAME,
    429: {"model": Problem, "description": "over a budget of frames that fail authentication (reason "
                                           "rate_limited or unverified): dropped unverified"},
    500: _ERROR_FRAME, 503: _ERROR_FRAME,
}


def _add_problem_handlers(app: FastAPI, front: Front) -> None:
    """Every refusal the HTTP layer makes is a JSON problem, never a traceback."""

    @app.exception_handler(OperatorRequired)
    async def _operator(request: Request, exc: OperatorRequired):
        front.refused("operator")
        return JSONResponse({"detail": "this endpoint needs the operator token: Authorization: Bearer "
                                       "TOKEN (the edge's operator_token_file)", "reason": "operator",
                             "code": None}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

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


def create_app(core: EdgeCore, on_startup: Callable | None = None, on_shutdown: Callable | None = None,
               operator: OperatorAuth | None = None) -> FastAPI:
    """The FastAPI app around `core`; `on_startup(core)`/`on_shutdown(core)` (async) start and
    stop the frame listeners on the same loop; `operator`: the credential the operator endpoints
    need (None: open, as `--no-operator-token`)."""
    operator = operator or open_access()

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

    app = FastAPI(title="SemanticNN edge", version="2.1",
                  description="Split-inference edge server: BER-aware decoding of SemanticNN frames "
                              "(wire format: docs/PROTOCOL.md). Every endpoint but /healthz and a "
                              "device's POST /v1/infer needs the operator token (Bearer).", lifespan=lifespan)
    dashboard = _dashboard_html()
    front = core.front("http")

    def is_operator(request: Request) -> bool:
        return operator.allows(request.headers.get("authorization"), request.cookies.get(COOKIE))

    async def require_operator(request: Request, _scheme: Annotated[object, Depends(BEARER)]) -> None:
        if not is_operator(request):
            raise OperatorRequired()

    need_operator = [Depends(require_operator)]
    unauthorized = {401: {"model": Problem, "description": "no or wrong operator credential"}}

    _add_problem_handlers(app, front)
    app.state.need_operator = need_operator     # for routes other modules add (SSE, history)

    @app.post("/v1/infer", summary="Decode one frame", responses=_INFER_RESPONSES,
              openapi_extra={"requestBody": {"required": True, "content": _FRAME_BODY,
                                             "description": "one DATA frame (docs/PROTOCOL.md), a whole inference"}})
    async def infer(request: Request):
        """Decode one DATA frame; the answer is the REPLY frame the device decrypts."""
        as_json = _wants_json(request.headers.get("accept"))
        if as_json and not is_operator(request):
            raise OperatorRequired()
        status, payload, media = await handle_infer(front, core.config.max_body, request.headers.get("content-type"),
                                                    request.headers.get("content-length"), request.stream(),
                                                    as_json, request.client.host if request.client else None)
        return Response(payload, status_code=status, media_type=media)

    @app.get("/v1/codecs", response_model=list[CodecInfo], summary="Codecs served", dependencies=need_operator,
             responses=unauthorized)
    async def codecs():
        return [c.describe() for c in core.codecs]

    @app.get("/v1/stats", summary="Live figures for the dashboard", dependencies=need_operator,
             responses=unauthorized)
    async def stats():
        return core.snapshot()

    @app.get("/healthz", response_model=Health, summary="Liveness (open; names no device)")
    async def healthz():
        return core.health()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=need_operator,
             responses=unauthorized)
    async def metrics():
        return Response(core.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request, token: str | None = None):
        if token is not None:     # once: the token becomes a cookie and leaves the address bar
            if operator.required and not operator.matches(token):
                front.refused("operator")
                return HTMLResponse(_LOGIN_PAGE, status_code=401)
            page = RedirectResponse("/", status_code=303)
            page.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return page
        if not is_operator(request):
            front.refused("operator")
            return HTMLResponse(_LOGIN_PAGE, status_code=401)
        return HTMLResponse(dashboard)

    return app

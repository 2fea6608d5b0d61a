"""The HTTP endpoint on localhost: POST /recommend, GET /healthz, GET /metrics (Starlette).

Every 200 from /recommend is appended to a JSON Lines request log (the online scores, for
calibration and drift reports later) before the client gets it; /metrics is in the
Prometheus text format:

    recjax_http_requests_total{endpoint, status}       responses (unknown paths: "other")
    recjax_http_request_duration_seconds{endpoint}     latency histogram, LATENCY_BUCKETS_S
    recjax_recommendations_total{path}                  200s from /recommend by serving path

Concurrency: the event loop only parses and validates; the model call runs in Starlette's
thread pool behind one lock (so a service need not be thread-safe and /healthz, /metrics
answer while it computes), and the response is serialised and logged in the same thread.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recjax.serving.requests import RecommendRequest, RecommendService, RequestError, parse_request

_LOG = logging.getLogger(__name__)

# Upper bounds (seconds) of the latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where and how the HTTP endpoint listens and logs."""

    host: str = "127.0.0.1"  # Interface to bind; localhost only unless asked otherwise.
    port: int = 8000  # TCP port.
    max_body_bytes: int = 64 * 1024  # Larger /recommend bodies get 413 (read no further).
    request_log: str | None = None  # JSON Lines file of every 200 response; None = no log.
    log_max_bytes: int = 64 * 1024 * 1024  # Rotate the log before it passes this; 0 = never.
    log_backups: int = 5  # Rotated files kept (requests.jsonl.1 is the newest).

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, found {self.port}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, found {self.max_body_bytes}")
        if self.log_max_bytes < 0 or self.log_backups < 1:
            raise ValueError(
                f"need log_max_bytes >= 0 and log_backups >= 1, "
                f"found {self.log_max_bytes} and {self.log_backups}"
            )


def build_app(service: RecommendService, config: ServerConfig) -> Starlette:
    """The ASGI app serving `service`; see the module docstring for endpoints and metrics."""
    metrics = _Metrics()
    request_log = (
        _RequestLog(Path(config.request_log), config.log_max_bytes, config.log_backups)
        if config.request_log
        else None
    )
    service_lock = threading.Lock()

    def recommend_and_log(request: RecommendRequest) -> bytes:
        """Runs in a worker thread: the model call (one at a time), the log line, the body."""
        with service_lock:
            response = service.recommend(request)
        content = _dumps(response)
        if request_log is not None:
            request_log.write(_log_record(response))
        metrics.paths.labels(path=response["path"]).inc()
        return content

    async def recommend(request: Request) -> Response:
        try:
            parsed = parse_request(await _read_json(request, config.max_body_bytes))
            content = await run_in_threadpool(recommend_and_log, parsed)
        except _ClientError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except RequestError as error:
            return JSONResponse({"error": str(error), "field": error.field}, status_code=422)
        except ClientDisconnect:
            return JSONResponse({"error": "client disconnected mid-body"}, status_code=400)
        except Exception:
            _LOG.exception("POST /recommend failed")
            return JSONResponse({"error": "internal error (logged by the server)"}, status_code=500)
        return Response(content, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model_version": service.model_version})

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if request_log is not None:
            request_log.open()  # Fail at startup, not on the first request.
        try:
            yield
        finally:
            if request_log is not None:
                request_log.close()

    routes = [
        Route("/recommend", recommend, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
    endpoints = frozenset(route.path for route in routes)
    middleware = [Middleware(_MetricsMiddleware, metrics=metrics, endpoints=endpoints)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def serve(service: RecommendService, config: ServerConfig) -> None:
    """Serves `service` with uvicorn (one worker, one process) until interrupted."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["recjax"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    # No uvicorn access log: /metrics counts every response and the request log keeps the 200s.
    server_config = uvicorn.Config(
        build_app(service, config),
        host=config.host,
        port=config.port,
        log_config=log_config,
        access_log=False,
    )
    host = f"[{config.host}]" if ":" in config.host else config.host
    _LOG.info("serving %s at http://%s:%d", service.model_version, host, config.port)
    uvicorn.Server(server_config).run()


class _ClientError(Exception):
    """A request the server cannot read (400) or will not read (413)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


async def _read_json(request: Request, max_bytes: int) -> Any:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise _ClientError(400, f"expected Content-Type application/json, found {media_type!r}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _ClientError(413, f"body larger than {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as error:  # Bad JSON, bad UTF-8, absurd nesting.
        raise _ClientError(400, f"invalid JSON: {error}") from None


def _dumps(record: dict[str, Any]) -> bytes:
    """Strict JSON (NaN is an error, as in Starlette's JSONResponse), one line."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _log_record(response: dict[str, Any]) -> dict[str, Any]:
    """The request log line: the response with a timestamp and without item texts."""
    items = [
        {key: value for key, value in item.items() if key != "text"} for item in response["items"]
    ]
    return {"ts": time.time(), **response, "items": items}


class _Metrics:
    """The app's own Prometheus registry (no process-global state)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recjax_http_requests",
            "HTTP responses by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recjax_http_request_duration_seconds",
            "Time from request to the end of the response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.paths = Counter(
            "recjax_recommendations",
            "Successful /recommend responses by serving path (personalized, session, popularity).",
            ["path"],
            registry=self.registry,
        )


class _MetricsMiddleware:
    """Counts and times every HTTP response, labelled by endpoint and status."""

    def __init__(self, app: ASGIApp, metrics: _Metrics, endpoints: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # What uvicorn answers if the app fails before starting a response.

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)


class _RequestLog:
    """Appends JSON lines to a file, rotating by size; whole lines, flushed, from any thread."""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self._path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def open(self) -> None:
        with self._lock:
            self._open()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def write(self, record: dict[str, Any]) -> None:
        line = _dumps(record) + b"\n"
        with self._lock:
            if self._file is None:
                self._open()
            if self._max_bytes and self._size and self._size + len(line) > self._max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            self._size += len(line)

    def _open(self) -> None:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "ab")  # noqa: SIM115 (closed by close())
            self._size = self._file.tell()

    def _rotate(self) -> None:
        """requests.jsonl → .1 → .2 … → .{backups}; the oldest falls off the end."""
        self._file.close()
        self._file = None
        for index in range(self._backups - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                older.replace(self._backup(index + 1))
        self._path.replace(self._backup(1))
        self._open()

    def _backup(self, index: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{index}")

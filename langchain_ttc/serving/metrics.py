"""What ``ttc serve`` tells its operator: Prometheus metrics at ``/metrics`` and one JSON log line per request.

In: every HTTP request, and what its handler records on it (:class:`RequestRecord`: the strategy,
the tokens spent, the limit that refused it). Out: the metrics below (``prometheus_client``, one
registry per application) and, on the logger ``langchain_ttc.serving.requests``, one JSON line
per request: ``{"request_id", "method", "path", "model", "strategy", "status", "latency_s",
"tokens": {"policy_prompt", "policy_completion", "prm"}, "error", "limit", "stream"}``.

=======================================  ==================================================================
metric                                   what it counts
=======================================  ==================================================================
``ttc_requests_total{model,status}``     chat completions by strategy and outcome (``499``: client left)
``ttc_request_duration_seconds{model}``  their latency, arrival to last byte (histogram)
``ttc_tokens_total{model,engine,kind}``  tokens spent: ``policy`` ``prompt`` / ``completion``, ``prm`` ``read``
``ttc_runs_in_flight``                   runs holding a slot now
``ttc_runs_queued``                      runs waiting for a slot now
``ttc_refusals_total{limit}``            requests a limit refused, by the setting (``max_body_bytes``, ...)
=======================================  ==================================================================

``model`` is the strategy part of the model name (``beam_search`` for ``beam_search:16``; ``unknown``
when the request named none), so the series stay few whatever clients send.

Example:
    >>> metrics = ServeMetrics(in_flight=lambda: 2, queued=lambda: 0)
    >>> metrics.observe(RequestRecord(strategy="beam_search"), status=200, latency_s=0.5)
    >>> b'ttc_requests_total{model="beam_search",status="200"} 1.0' in metrics.render()
    True

"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langchain_ttc.core.types import Usage

request_log = logging.getLogger("langchain_ttc.serving.requests")
"""The logger of the one-line JSON record of each request (INFO; ``/health`` and ``/metrics`` at DEBUG)."""

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of ``/metrics`` (Prometheus text format)."""
RECORD_KEY = "ttc_record"
"""The key of a request's :class:`RequestRecord` in the ASGI scope's ``state``."""
COMPLETIONS_PATH = "/v1/chat/completions"
"""The path whose requests the request metrics count."""
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Histogram buckets of the request latency, in seconds (runs take from milliseconds to minutes)."""
_QUIET = ("/health", "/metrics")


@dataclass
class RequestRecord:
    """What a handler learned about its request, for the log line and the metrics.

    Attributes:
        model: The model name the request sent (cut to 256 characters).
        strategy: The strategy it names, once known to exist.
        usage: The tokens the run spent, once it finished.
        status: The outcome when it differs from the HTTP status (a stream that failed after its
            200, a client that left: ``499``).
        error: The error's code, if any.
        limit: The setting that refused the request, if one did.
        stream: Whether the answer was streamed.

    """

    model: str | None = None
    strategy: str | None = None
    usage: Usage | None = None
    status: int | None = None
    error: str | None = None
    limit: str | None = None
    stream: bool = False


def record_of(request: Request) -> RequestRecord:
    """The request's record (a detached one outside :class:`ObservabilityMiddleware`)."""
    record = request.scope.get("state", {}).get(RECORD_KEY)
    return record if isinstance(record, RequestRecord) else RequestRecord()


class ServeMetrics:
    """The server's Prometheus metrics, in a registry of their own (one per application).

    Args:
        in_flight: Reads the runs in flight (a gauge read at scrape time).
        queued: Reads the runs waiting for a slot.

    """

    def __init__(self, *, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttc_requests", "Chat completions by strategy and status.", ["model", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ttc_request_duration_seconds",
            "Chat-completion latency, arrival to last byte, by strategy.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "ttc_tokens", "Tokens spent, by strategy, engine and kind.", ["model", "engine", "kind"],
            registry=self.registry,
        )  # fmt: skip
        self.refusals = Counter(
            "ttc_refusals", "Requests refused by a limit, by its setting.", ["limit"], registry=self.registry
        )
        Gauge("ttc_runs_in_flight", "Runs holding a slot.", registry=self.registry).set_function(in_flight)
        Gauge("ttc_runs_queued", "Runs waiting for a slot.", registry=self.registry).set_function(queued)

    def observe(self, record: RequestRecord, *, status: int, latency_s: float) -> None:
        """Count one chat completion."""
        model = record.strategy or "unknown"
        self.requests.labels(model=model, status=str(status)).inc()
        self.latency.labels(model=model).observe(latency_s)
        if record.usage is not None:
            usage = record.usage
            for engine, kind, tokens in (("policy", "prompt", usage.prompt_tokens),
                                         ("policy", "completion", usage.completion_tokens),
                                         ("prm", "read", usage.prm_tokens)):  # fmt: skip
                if tokens:
                    self.tokens.labels(model=model, engine=engine, kind=kind).inc(tokens)

    def refused(self, limit: str) -> None:
        """Count one refusal by ``limit``."""
        self.refusals.labels(limit=limit).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)


class ObservabilityMiddleware:
    """Measures each request, counts it in :class:`ServeMetrics` and logs it as one JSON line.

    Sits inside the request-id middleware (the line carries the id) and outside everything that
    can refuse a request (the body limit's 413 is counted too). A fault that escapes the app is
    counted and logged as 500, then passed on to be answered.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then record it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        record = state[RECORD_KEY] = RequestRecord()
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 500 if record.status is None else record.status
            raise
        finally:
            self._record(scope, record, status, time.perf_counter() - started)

    def _record(self, scope: Scope, record: RequestRecord, status: int, latency_s: float) -> None:
        state = scope.get("state", {})
        outcome = record.status or status
        limit = record.limit
        if limit:
            self.metrics.refused(limit)
        path = str(scope.get("path", ""))
        if path == COMPLETIONS_PATH:
            self.metrics.observe(record, status=outcome, latency_s=latency_s)
        usage = record.usage
        tokens = None
        if usage is not None:
            tokens = {"policy_prompt": usage.prompt_tokens, "policy_completion": usage.completion_tokens,
                      "prm": usage.prm_tokens}  # fmt: skip
        line: dict[str, Any] = {
            "event": "request",
            "request_id": state.get("request_id"),
            "method": scope.get("method"),
            "path": path[:256],
            "model": record.model,
            "strategy": record.strategy,
            "status": outcome,
            "latency_s": round(latency_s, 6),
            "tokens": tokens,
            "error": record.error,
            "limit": limit,
            "stream": record.stream,
        }
        level = logging.DEBUG if path in _QUIET else logging.INFO
        if request_log.isEnabledFor(level):
            request_log.log(level, json.dumps(line, separators=(",", ":")))

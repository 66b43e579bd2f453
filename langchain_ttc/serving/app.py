"""``ttc serve``: an OpenAI-compatible HTTP server whose model names are test-time compute strategies.

In: ``POST /v1/chat/completions`` with ``model="<strategy>[:<n>]"`` (e.g. ``weighted_best_of_n:16``,
``beam_search:16``, ``compute_optimal:16``; a bare name runs at the default budget). Out: the
chosen solution as the assistant's message, ``usage`` with every token the strategy spent, and the
``ttc`` extension (:mod:`.protocol`). Each model name's graph is compiled once on the engines loaded
at startup and run with ``ainvoke`` / ``astream``; nothing is rebuilt per request.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{model}`` (a name
``POST`` would refuse is a 404 there too), ``GET /health`` and ``GET /metrics`` (Prometheus text
format, :mod:`.metrics`; neither needs a key). With an API key set, every ``/v1`` call needs
``Authorization: Bearer <key>`` (the ``openai`` client's ``api_key=``).

Limits (:class:`~.settings.ServeLimits`, :mod:`.limits`): a body over ``max_body_bytes`` is 413
before it is parsed; a budget over ``max_n``, a ``max_tokens`` over ``max_tokens_limit``, messages
over ``max_prompt_chars`` or over ``max_prompt_tokens`` / the policy's context window are 400,
before any engine call; beyond ``max_in_flight`` runs and ``max_queue`` waiting, 429 with
``Retry-After``; a request still running at ``request_timeout_s`` is cancelled and answered 504.
Each refusal names the limit, the value and the setting that raises it. A client that disconnects
cancels its run (streamed or not): the engine calls in flight are cancelled with it.

Streaming (``stream=true``): while the strategy runs, each progress event of the graph (its
``stream_mode="custom"`` events: ``ttc.generated``, ``ttc.scored``, ``ttc.iteration``, ``ttc.routed``,
``ttc.draft``, ``ttc.critique``, ``ttc.selected``) is sent as an SSE comment line
``: <type> <json of the other fields>`` (OpenAI clients skip comments; read them with any SSE
reader). Then the answer comes as ``chat.completion.chunk`` events (the role, then one chunk per
step of the chosen solution, then one with ``finish_reason`` and ``ttc``), a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``.

Errors, in OpenAI's format ``{"error": {"message", "type", "param", "code"}}``: what the request got
wrong is found before the strategy runs (the body, the model name and its budget, the messages, a
sampling option the strategy refuses, a limit) and answered 4xx with the fix. A model server that fails
during the run is 502. Anything else that fails during the run is a fault of the server, not of the
request: 500 with the message ``"internal error"`` and the request's id in ``error.request_id``; the
traceback goes to the server's log (logger ``langchain_ttc.serving.app``) under that id, never to
the client. A stream that fails after it started sends the same error as its last event, then
``[DONE]``. Every response carries ``X-Request-ID``: the client's own, if it sent a well-formed one
(up to 128 letters, digits and ``._:/+=@-``), else a fresh uuid4.

Example:
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")  # doctest: +SKIP
    >>> client.chat.completions.create(  # doctest: +SKIP
    ...     model="weighted_best_of_n:8", messages=[{"role": "user", "content": "What is 3+4*3?"}]
    ... ).choices[0].message.content

"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import reprlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langchain_ttc.core.types import TTCResult
from langchain_ttc.engines.openai_policy import ServerError
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.limits import (
    BodyLimitMiddleware,
    ClientGone,
    RunLimiter,
    check_max_tokens,
    check_prompt,
    check_prompt_tokens,
    deadline_error,
    deadline_of,
    run_until,
)
from langchain_ttc.serving.metrics import (
    COMPLETIONS_PATH,
    METRICS_CONTENT_TYPE,
    ObservabilityMiddleware,
    RequestRecord,
    ServeMetrics,
    record_of,
)
from langchain_ttc.serving.protocol import (
    APIError,
    ChatCompletionRequest,
    api_error,
    chunk_body,
    completion_body,
    finish_reason,
    new_id,
    split_text,
    ttc_body,
    usage_body,
)
from langchain_ttc.serving.settings import ServeLimits
from langchain_ttc.strategies.config import answer_key_named, validated
from langchain_ttc.strategies.context import TTCContext
from langchain_ttc.strategies.graphs import StrategyGraph
from langchain_ttc.wiring import applicable, strategy_spec

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
"""The header that carries a request's id, both ways (the ``openai`` client reads it as ``error.request_id``)."""
INTERNAL_ERROR = "internal error"
"""The whole message a client gets for a fault of the server (the details are in the server's log)."""
CLIENT_CLOSED = 499
"""The status recorded (never seen by anyone) for a request whose client left before its answer."""
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_TYPE_TAG = re.compile(r".*[\[(].*|str|int|float|bool|none")
"""Parts of a pydantic error location that name a union's member, not a field (``list[TextPart]``, ``str``)."""
_SHOWN = reprlib.Repr()
"""How an error quotes what a client sent: short, and never deep (hostile inputs are huge or nested)."""
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxlong = 2, 80, 80, 4, 4, 40


def create_app(
    catalog: StrategyCatalog,
    *,
    api_key: str | None = None,
    info: dict[str, Any] | None = None,
    limits: ServeLimits | None = None,
) -> FastAPI:
    """The FastAPI application of ``ttc serve`` (run it with uvicorn).

    Args:
        catalog: The strategies and the engines they run on (graphs are built once per model name).
        api_key: The bearer token clients must send; ``None`` leaves the server open.
        info: What ``GET /health`` reports besides ``status`` (e.g. the policy and PRM settings, no keys).
        limits: The bounds every request is held to (default: :class:`~.settings.ServeLimits`'s defaults;
            ``ttc serve`` passes its :class:`~.settings.ServeSettings`).

    Example:
        >>> app = create_app(StrategyCatalog(policy, prm), api_key="secret")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP

    """
    if api_key is not None and not api_key.strip():
        raise ValueError("api_key='' is empty; pass a non-empty key, or None to serve without one.")
    bounds = limits if limits is not None else ServeLimits()
    limiter = RunLimiter(bounds.max_in_flight, bounds.max_queue)
    metrics = ServeMetrics(in_flight=lambda: limiter.in_flight, queued=lambda: limiter.queued)
    app = FastAPI(title="ttc serve", description="Test-time compute strategies behind the OpenAI API.")
    app.state.catalog, app.state.limits, app.state.limiter, app.state.metrics = catalog, bounds, limiter, metrics
    # The last added runs first: the request id, then the measurements, then the body limit.
    app.add_middleware(BodyLimitMiddleware, limits=bounds)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.add_middleware(RequestIDMiddleware)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise api_error(
                401,
                "no API key was sent; send 'Authorization: Bearer <key>' (the openai client's api_key=).",
                code="missing_api_key",
            )
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise api_error(
                401, "the API key is not correct; send the key ttc serve was started with.", code="invalid_api_key"
            )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        record = record_of(request)
        record.error, record.limit = error.code, record.limit or error.limit
        return JSONResponse(_error_body(error, request_id_of(request)), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_problem(error, request.headers.get("content-type"))
        record_of(request).error = "invalid_request"
        return JSONResponse(api_error(400, message, param=param).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 400 and error.__cause__ is not None:  # FastAPI could not parse the body
            message = _parse_problem(error.__cause__)
        record_of(request).error = "invalid_request" if error.status_code == 400 else None
        return JSONResponse(
            api_error(error.status_code, message).body(), status_code=error.status_code, headers=error.headers
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **(info or {})}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [catalog.describe(name) for name in catalog.names()]}

    @app.get("/v1/models/{model}", dependencies=[Depends(authorize)])
    async def model(model: str) -> dict[str, Any]:
        # The same checks as a completion's: a name POST refuses (a bad budget too) is no model here.
        try:
            _, name, _ = catalog.graph(model)
        except APIError as error:
            if error.status != 400:
                raise
            raise api_error(404, error.message, param="model", code="model_not_found") from None
        return {**catalog.describe(name), "id": model}

    @app.post(COMPLETIONS_PATH, dependencies=[Depends(authorize)], response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> dict[str, Any] | Response:
        record = record_of(request)
        record.model, record.strategy, record.stream = body.model, catalog.strategy_of(body.model), body.stream
        if limiter.full():  # shed load before any other work: under overload, refusals must stay cheap
            raise limiter.busy()
        # Everything the request can get wrong is checked here, before the run: a client error is 4xx.
        if body.tools:
            raise api_error(400, "tools are not supported: ttc serve answers with text; send no tools.", param="tools")
        max_tokens = body.max_completion_tokens or body.max_tokens
        check_max_tokens(max_tokens, "max_completion_tokens" if body.max_completion_tokens else "max_tokens", bounds)
        graph, strategy, n = catalog.graph(body.model)
        conversation = body.conversation()
        check_prompt(conversation, bounds)
        context = TTCContext(
            temperature=body.temperature, top_p=body.top_p, max_tokens=max_tokens, seed=body.seed,
            answers=body.ttc_answers,
        )  # fmt: skip
        _check_options(catalog, strategy, n, body)
        await check_prompt_tokens(catalog.policy, conversation, bounds)
        inputs = {"messages": conversation}
        request_id = request_id_of(request)
        deadline = deadline_of(request.scope, bounds)
        phase = ["waiting for a slot"]

        def late() -> APIError:
            return deadline_error(bounds, body.model, where=phase[0])

        try:
            if body.stream:
                await run_until(limiter.acquire(), deadline=deadline, receive=request.receive, on_deadline=late)
                phase[0] = "while the strategy ran"
                try:
                    events = _stream(graph, inputs, context, body, n, request_id, deadline, late, record)
                    grace = bounds.shutdown_timeout_s
                    return _HeldStream(events, release=limiter.release, sep="\n", ping=15, shutdown_grace_period=grace)
                except BaseException:
                    limiter.release()
                    raise

            async def run() -> dict[str, Any]:
                async with limiter.slot():
                    phase[0] = "while the strategy ran"
                    return await graph.ainvoke(inputs, context=context)

            # From here on a failure is the server's (or its model server's), whatever its exception type.
            output = await run_until(run(), deadline=deadline, receive=request.receive, on_deadline=late)
            result = TTCResult.model_validate(output["result"])
        except ClientGone:
            record.status = CLIENT_CLOSED
            raise api_error(CLIENT_CLOSED, "the client closed the request; its run was cancelled.",
                            code="client_closed") from None  # fmt: skip
        except Exception as error:
            raise _run_error(error, request_id, body.model) from error
        record.usage = result.usage
        return completion_body(result, model=body.model, n=n, include_result=body.ttc_include_result)

    return app


class _HeldStream(EventSourceResponse):
    """An SSE response that holds a run slot until it ends, however it ends (see :class:`RunLimiter`)."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release: Callable[[], None] | None = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then give the slot back."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class RequestIDMiddleware:
    """Gives every HTTP request an id, sends it back in ``X-Request-ID``, and answers a fault 500.

    The id is the client's ``X-Request-ID`` when it is well formed, else a fresh uuid4; handlers read
    it with :func:`request_id_of`. An exception no handler turned into a response is logged with the
    id and its traceback, and answered ``500 {"error": {"message": "internal error", ...,
    "request_id": ...}}``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request under its id (other ASGI scopes pass through untouched)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s: %s %s failed", request_id, scope.get("method"), scope.get("path"))
            if started:  # too late for an error response: the server closes the connection
                raise
            response = JSONResponse(_error_body(_internal_error(), request_id), status_code=500)
            await response(scope, receive, send_with_id)


def request_id_of(request: Request) -> str:
    """The id :class:`RequestIDMiddleware` gave ``request`` (a fresh one outside the middleware)."""
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else _request_id(None)


def _request_id(sent: str | None) -> str:
    """The client's request id if it is well formed (no header or log injection), else a fresh uuid4."""
    return sent if sent is not None and _CLIENT_REQUEST_ID.fullmatch(sent) else str(uuid.uuid4())


def _internal_error() -> APIError:
    return api_error(500, INTERNAL_ERROR, code="internal_error")


def _error_body(error: APIError, request_id: str) -> dict[str, Any]:
    """The error's JSON body; a server-side error (5xx) also names the request id to quote in a report."""
    body = error.body()
    if error.status >= 500:
        body["error"]["request_id"] = request_id
    return body


def _validation_problem(error: RequestValidationError, content_type: str | None) -> tuple[str, str | None]:
    """The message and ``param`` of a body FastAPI could not validate: the first problem, named plainly."""
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        reason = str(first.get("ctx", {}).get("error", "not JSON"))
        position = first["loc"][-1] if isinstance(first["loc"][-1], int) else None
        return _json_problem(reason, error.body, position), None
    param = ".".join(str(p) for p in first["loc"] if p != "body" and not _TYPE_TAG.fullmatch(str(p))) or None
    if param is None and isinstance(first.get("input"), bytes | bytearray):  # a body FastAPI did not read as JSON
        return (
            f"the body was not read as JSON (Content-Type: {_SHOWN.repr(content_type)}); send a JSON object with "
            "'Content-Type: application/json'; see the OpenAI chat-completions format.",
            None,
        )
    message = f"{param or 'the body'}: {first['msg'].removeprefix('Value error, ')}"
    if param is not None and "input" in first and first["type"] != "missing":
        message += f" (got {_SHOWN.repr(first['input'])})"
    return message + "; see the OpenAI chat-completions format.", param


def _json_problem(reason: str, document: Any, position: int | None) -> str:
    """Where a body stops being JSON: ``"the body is not valid JSON: <reason> at line L column C"``."""
    if isinstance(document, str) and position is not None:
        decoded = json.JSONDecodeError(reason, document, position)
        return f"the body is not valid JSON: {reason} at line {decoded.lineno} column {decoded.colno}."
    return f"the body is not valid JSON: {reason}."


def _parse_problem(cause: BaseException) -> str:
    """Why a body could not be parsed at all (FastAPI only says "There was an error parsing the body")."""
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply to parse (about 1000 levels of arrays or objects); send a flatter one."
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 ({cause.reason} at byte {cause.start}); send JSON encoded as UTF-8."
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "the body holds a number with more than 4300 digits, which is not parsed; send a smaller number."
    return f"the body could not be parsed as JSON ({type(cause).__name__}); send a JSON object."


def _check_options(catalog: StrategyCatalog, strategy: str, n: int, body: ChatCompletionRequest) -> None:
    """Refuse, before the run, a sampling option the strategy's config refuses (400, naming the field).

    Raises:
        APIError: 400 ``invalid_value`` with ``param`` the request field at fault.

    """
    if body.ttc_answers is not None:  # a name of a shipped key: no key object travels over HTTP
        try:
            answer_key_named(body.ttc_answers, parameter="ttc_answers", objects=False)
        except ValueError as error:
            raise api_error(400, str(error), param="ttc_answers", code="invalid_value") from None
    fields = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "answers": "ttc_answers",
              "max_tokens": "max_completion_tokens" if body.max_completion_tokens else "max_tokens"}  # fmt: skip
    options = {name: getattr(body, field) for name, field in fields.items() if getattr(body, field) is not None}
    settings = {**applicable(strategy, catalog.options), "n": n, **applicable(strategy, options)}
    try:
        validated(strategy_spec(strategy).config, **settings)
    except ValueError as error:
        param = next((fields[name] for name in options if str(error).startswith(f"{name}=")), None)
        raise api_error(400, f"model={body.model!r}: {error}", param=param, code="invalid_value") from None


def _run_error(error: Exception, request_id: str, model: str) -> APIError:
    """The API error for an exception raised while a strategy ran (after the request was checked).

    A model server's failure is 502 with its message; an ``APIError`` (a deadline, say) stays as it
    is; anything else is a fault of the server: logged with its traceback under ``request_id``,
    answered with the generic :data:`INTERNAL_ERROR` only (its message may hold internals).
    """
    if isinstance(error, APIError):
        return error
    if isinstance(error, ServerError):
        logger.warning("request %s: a model server failed during the run of model=%r: %s", request_id, model, error)
        return api_error(502, f"a model server failed: {error}", code="upstream_error")
    logger.error("request %s: the run of model=%r failed", request_id, model, exc_info=error)
    return _internal_error()


async def _stream(
    graph: StrategyGraph,
    inputs: dict[str, Any],
    context: TTCContext,
    body: ChatCompletionRequest,
    n: int,
    request_id: str,
    deadline: float,
    late: Callable[[], APIError],
    record: RequestRecord,
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of a streamed completion: progress comments, then the answer's chunks, then ``[DONE]``.

    A failure after the response started ends the stream with the error's event (see :func:`_run_error`);
    so does the deadline (the run is cancelled). A client that leaves cancels the run.
    """
    try:
        async for event in _until_deadline(_events(graph, inputs, context, body, n, record), deadline, late):
            yield event
    except asyncio.CancelledError:
        record.status = CLIENT_CLOSED
        raise
    except Exception as error:
        api = _run_error(error, request_id, body.model)
        record.status, record.error, record.limit = api.status, api.code, api.limit
        yield ServerSentEvent(data=json.dumps(_error_body(api, request_id)))
    yield ServerSentEvent(data="[DONE]")


_END = object()


async def _until_deadline(
    events: AsyncIterator[ServerSentEvent], deadline: float, late: Callable[[], APIError]
) -> AsyncIterator[ServerSentEvent]:
    """``events``, produced by a task of their own, until they end or the deadline passes (``late()`` raised).

    The run stays in one task (its context variables with it) and is cancelled when the deadline
    passes or the consumer stops (a client that left).
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as error:
            await queue.put(error)
        else:
            await queue.put(_END)

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise late() from None
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5.0)


async def _events(
    graph: StrategyGraph,
    inputs: dict[str, Any],
    context: TTCContext,
    body: ChatCompletionRequest,
    n: int,
    record: RequestRecord,
) -> AsyncIterator[ServerSentEvent]:
    """The events of a streamed completion before ``[DONE]`` (raising whatever the run raises)."""
    output: dict[str, Any] = {}
    async for mode, part in graph.astream(inputs, context=context, stream_mode=["custom", "values"]):
        if mode == "custom" and isinstance(part, dict):
            fields = {k: v for k, v in part.items() if k != "type"}
            yield ServerSentEvent(comment=f"{part.get('type', 'ttc.event')} {json.dumps(fields, default=str)}")
        elif mode == "values" and isinstance(part, dict):
            output = part
    result = TTCResult.model_validate(output["result"])
    record.usage = result.usage
    completion_id, created = new_id(), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ServerSentEvent:
        return ServerSentEvent(
            data=json.dumps({**chunk_body(completion_id, body.model, created, delta, finish), **extra})
        )

    yield chunk({"role": "assistant", "content": ""})
    for piece in split_text(result.solution or ""):
        yield chunk({"content": piece})
    yield chunk({}, finish_reason(result), ttc=ttc_body(result, n=n, include_result=body.ttc_include_result))
    if body.stream_options is not None and body.stream_options.include_usage:
        usage = {**chunk_body(completion_id, body.model, created, {}), "choices": [], "usage": usage_body(result.usage)}
        yield ServerSentEvent(data=json.dumps(usage))

"""``ttc serve``: an OpenAI-compatible HTTP server whose model names are test-time compute strategies.

In: ``POST /v1/chat/completions`` with ``model="<strategy>[:<n>]"`` (e.g. ``weighted_best_of_n:16``,
``beam_search:16``, ``compute_optimal:16``; a bare name runs at the default budget). Out: the
chosen solution as the assistant's message, ``usage`` with every token the strategy spent, and the
``ttc`` extension (:mod:`.protocol`). Each model name's graph is compiled once on the engines loaded
at startup and run with ``ainvoke`` / ``astream``; nothing is rebuilt per request.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{model}``, ``GET
/health`` (no key needed). With an API key set, every ``/v1`` call needs ``Authorization: Bearer
<key>`` (the ``openai`` client's ``api_key=``).

Streaming (``stream=true``): while the strategy runs, each progress event of the graph (its
``stream_mode="custom"`` events: ``ttc.generated``, ``ttc.scored``, ``ttc.iteration``, ``ttc.routed``,
``ttc.draft``, ``ttc.critique``, ``ttc.selected``) is sent as an SSE comment line
``: <type> <json of the other fields>`` (OpenAI clients skip comments; read them with any SSE
reader). Then the answer comes as ``chat.completion.chunk`` events (the role, then one chunk per
step of the chosen solution, then one with ``finish_reason`` and ``ttc``), a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``.

Example:
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")  # doctest: +SKIP
    >>> client.chat.completions.create(  # doctest: +SKIP
    ...     model="weighted_best_of_n:8", messages=[{"role": "user", "content": "What is 3+4*3?"}]
    ... ).choices[0].message.content

"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from langchain_ttc.core.types import TTCResult
from langchain_ttc.engines.openai_policy import ServerError
from langchain_ttc.serving.catalog import StrategyCatalog
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
from langchain_ttc.strategies.common import StrategyGraph
from langchain_ttc.strategies.context import TTCContext


def create_app(catalog: StrategyCatalog, *, api_key: str | None = None, info: dict[str, Any] | None = None) -> FastAPI:
    """The FastAPI application of ``ttc serve`` (run it with uvicorn).

    Args:
        catalog: The strategies and the engines they run on (graphs are built once per model name).
        api_key: The bearer token clients must send; ``None`` leaves the server open.
        info: What ``GET /health`` reports besides ``status`` (e.g. the policy and PRM settings, no keys).

    Example:
        >>> app = create_app(StrategyCatalog(policy, prm), api_key="secret")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP

    """
    if api_key is not None and not api_key.strip():
        raise ValueError("api_key='' is empty; pass a non-empty key, or None to serve without one.")
    app = FastAPI(title="ttc serve", description="Test-time compute strategies behind the OpenAI API.")
    app.state.catalog = catalog

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
    async def _api_error(_: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        message = f"{param or 'the body'}: {first['msg']}"
        if param is not None and "input" in first and first["type"] != "missing":
            message += f" (got {first['input']!r})"
        return JSONResponse(api_error(400, message + "; see the OpenAI chat-completions format.", param=param).body(),
                            status_code=400)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(api_error(error.status_code, str(error.detail)).body(), status_code=error.status_code)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **(info or {})}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [catalog.describe(name) for name in catalog.names()]}

    @app.get("/v1/models/{model}", dependencies=[Depends(authorize)])
    async def model(model: str) -> dict[str, Any]:
        name, _ = catalog.parse(model)
        return {**catalog.describe(name), "id": model}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)], response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any] | EventSourceResponse:
        if body.tools:
            raise api_error(400, "tools are not supported: ttc serve answers with text; send no tools.", param="tools")
        graph, _, n = catalog.graph(body.model)
        inputs = {"messages": body.conversation()}
        context = TTCContext(
            temperature=body.temperature,
            top_p=body.top_p,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            seed=body.seed,
        )
        if body.stream:
            return EventSourceResponse(_stream(graph, inputs, context, body, n), sep="\n", ping=15)
        try:
            output = await graph.ainvoke(inputs, context=context)
        except Exception as error:
            raise _run_error(error) from error
        result = TTCResult.model_validate(output["result"])
        return completion_body(result, model=body.model, n=n, include_result=body.ttc_include_result)

    return app


def _run_error(error: Exception) -> APIError:
    """The API error for an exception raised while a strategy ran."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, ServerError):
        return api_error(502, f"a model server failed: {error}", code="upstream_error")
    if isinstance(error, (ValueError, TypeError)):
        return api_error(400, str(error))
    return api_error(500, f"the strategy failed: {type(error).__name__}: {error}")


async def _stream(
    graph: StrategyGraph, inputs: dict[str, Any], context: TTCContext, body: ChatCompletionRequest, n: int
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of a streamed completion: progress comments, then the answer's chunks, then ``[DONE]``."""
    output: dict[str, Any] = {}
    try:
        async for mode, part in graph.astream(inputs, context=context, stream_mode=["custom", "values"]):
            if mode == "custom" and isinstance(part, dict):
                fields = {k: v for k, v in part.items() if k != "type"}
                yield ServerSentEvent(comment=f"{part.get('type', 'ttc.event')} {json.dumps(fields, default=str)}")
            elif mode == "values" and isinstance(part, dict):
                output = part
    except Exception as error:
        yield ServerSentEvent(data=json.dumps(_run_error(error).body()))
        yield ServerSentEvent(data="[DONE]")
        return
    result = TTCResult.model_validate(output["result"])
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
    yield ServerSentEvent(data="[DONE]")

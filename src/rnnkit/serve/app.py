"""The HTTP server: one bundle's Predictor behind a FastAPI app.

    GET    /                         a page to try the model in a browser (label a text with its
                                     attention shaded, plot a forecast, watch generated text arrive)
    GET    /healthz                  {"status": "ok"}
    GET    /v1/model                 the bundle: task, verbs, data and model config, metrics, files
    POST   /v1/predict               {"inputs": [text or numbers, ...], "options": {...}}
    POST   /v1/explain               {"text": "..."}: a classifier's label, tokens and attention weights
    POST   /v1/forecast              {"data": [{column: value, ...}, ...], "horizon": 7, "level": 0.8}
    POST   /v1/generate              {"prompt": "...", "max_tokens": 50, ...}; "stream": true sends
                                     each piece as a server-sent event as it is drawn
    POST   /v1/sessions              a stream of text read piece by piece, the state kept by the server
    POST   /v1/sessions/{id}/steps   {"text": "..."} or {"inputs": [[...], ...]}: a language model's
                                     likeliest next tokens, a classifier's label of what it read so far
    DELETE /v1/sessions/{id}
    GET    /openapi.json, /docs      the schema FastAPI writes from the request models

Every request body is checked before the model sees it: unknown fields, wrong types, NaN or
infinity, too many inputs, too long an input, too many tokens and too large a body each get a
4xx answer whose ``detail`` says what is wrong and the limit (:class:`Limits`); an rnnkit error
raised by the predictor (a wrong shape, a bad option) is a 4xx with its message too. Model calls
run one at a time in worker threads (the model is shared), each within ``Limits.timeout_s`` (503
past it). Sessions idle for ``session_ttl_s`` expire (404 afterwards, as an unknown id); at most
``max_sessions`` live at once (429 beyond).
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rnnkit.errors import ConfigError, RnnkitError


class Limits(BaseModel):
    """What one request may ask for (``rnnkit serve --max-batch 16 ...``)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1_000_000, gt=0, description="request body size")
    max_batch: int = Field(64, gt=0, description="inputs in one /v1/predict request")
    max_length: int = Field(
        10_000, gt=0, description="characters of a text, steps of a sequence, rows of data"
    )
    max_tokens: int = Field(512, gt=0, description="tokens one /v1/generate request may ask for")
    timeout_s: float = Field(30.0, gt=0, description="seconds a model call may take")
    batching: bool = Field(True, description="micro-batch concurrent /v1/predict requests")
    batch_wait_s: float = Field(
        0.002, ge=0, description="how long a /v1/predict request waits for others to share its model call"
    )
    max_sessions: int = Field(100, gt=0, description="streaming sessions alive at once")
    session_ttl_s: float = Field(600.0, gt=0, description="seconds an idle session lives")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Request):
    inputs: list[Any] = Field(description="texts, or sequences of numbers (lists of rows)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the predictor's options, e.g. beam_width"
    )


class ExplainRequest(_Request):
    text: str


class ForecastRequest(_Request):
    data: list[dict[str, Any]] = Field(description="rows in the training data's columns")
    horizon: int | None = Field(None, gt=0)
    level: float = Field(0.8, gt=0, lt=1)
    missing: str | None = None


class GenerateRequest(_Request):
    prompt: str
    max_tokens: int | None = Field(None, gt=0, description="default: 50, or the server's limit if lower")
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    greedy: bool = False
    seed: int | None = None
    beam_width: int | None = Field(None, gt=0)
    stream: bool = False


class SessionRequest(_Request):
    condition: Any = None


class StepRequest(_Request):
    text: str | None = Field(None, description="the text (or items) to read next")
    inputs: list[list[float]] | None = Field(None, description="or the steps (rows of numbers) to read next")
    top: int = Field(5, gt=0, le=100, description="how many of the likeliest next tokens to return")


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message for ``detail``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(bundle: str | Path, limits: Limits | None = None):
    """The FastAPI app serving the bundle at ``bundle`` within ``limits``."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    except ImportError:
        raise RnnkitError("rnnkit serve needs FastAPI and uvicorn: pip install 'rnnkit[serve]'") from None
    import rnnkit

    limits = limits or Limits()
    predictor = rnnkit.load(bundle)
    runner = _Runner(limits.timeout_s)
    batcher = _Batcher(
        runner, predictor.predict, limits.max_batch if limits.batching else 0, limits.batch_wait_s
    )
    sessions = _Sessions(limits)
    app = FastAPI(
        title=f"rnnkit: {predictor.task.name} model",
        description=f"The bundle {bundle} ({predictor.task.name}); verbs: {', '.join(predictor.verbs)}",
        version=rnnkit.__version__,
    )
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestError)
    async def _refused(request: Request, error: RequestError):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(RnnkitError)
    async def _rnnkit_error(request: Request, error: RnnkitError):
        return JSONResponse(
            {"detail": str(error)}, status_code=400 if isinstance(error, ConfigError) else 422
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        return JSONResponse({"detail": _validation_message(error)}, status_code=422)

    page = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model() -> dict:
        described = {**predictor.describe(), "data": predictor.data_config.model_dump()}
        return json.loads(json.dumps(described, default=str))

    def offers(verb: str) -> None:
        if verb not in predictor.verbs:
            offered = ", ".join(v for v in predictor.verbs if v not in ("describe", "evaluate"))
            raise RequestError(
                404, f"a {predictor.task.name} model does not {verb}; this one offers: {offered}"
            )

    @app.post("/v1/predict")
    async def predict(body: PredictRequest) -> dict:
        offers("predict")
        inputs = [_input(x, i, limits) for i, x in enumerate(_batch(body.inputs, limits))]
        return {"outputs": _jsonable(await batcher.submit(inputs, body.options))}

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest) -> dict:
        offers("explain")
        return _jsonable(await runner.run(lambda: predictor.explain(_text(body.text, "text", limits))))

    @app.post("/v1/forecast")
    async def forecast(body: ForecastRequest) -> dict:
        offers("forecast")
        import pandas as pd

        if not body.data or len(body.data) > limits.max_length:
            raise RequestError(
                422, f"data must hold 1 to {limits.max_length} rows (max_length), got {len(body.data)}"
            )
        frame = pd.DataFrame.from_records([_finite_row(row, i) for i, row in enumerate(body.data)])
        table = await runner.run(lambda: predictor.forecast(frame, body.horizon, body.level, body.missing))
        return {"forecast": _jsonable(table)}

    @app.post("/v1/generate")
    async def generate(body: GenerateRequest):
        offers("generate")
        if body.max_tokens is None:
            body.max_tokens = min(50, limits.max_tokens)
        if body.max_tokens > limits.max_tokens:
            raise RequestError(
                422, f"max_tokens {body.max_tokens} is above this server's limit {limits.max_tokens}"
            )
        _text(body.prompt, "prompt", limits)
        options = body.model_dump(exclude={"prompt", "max_tokens", "stream"}, exclude_none=True)
        if not body.stream:
            text = await runner.run(lambda: predictor.generate(body.prompt, body.max_tokens, **options))
            return {"text": text}
        if "stream" not in predictor.verbs or "beam_width" in options:
            raise RequestError(
                400, "streaming sends sampled tokens as they are drawn: drop beam_width, or stream"
            )
        pieces = await runner.run(lambda: predictor.stream(body.prompt, body.max_tokens, **options))
        first = await runner.run(lambda: next(pieces, None))  # errors in the options surface here, as 4xx
        return StreamingResponse(_events(first, pieces, runner), media_type="text/event-stream")

    @app.post("/v1/sessions", status_code=201)
    async def open_session(body: SessionRequest | None = None) -> dict:
        offers("session")
        condition = None if body is None else body.condition
        session = await runner.run(lambda: predictor.session(condition=condition))
        return {"id": sessions.add(session), "expires_after_idle_s": limits.session_ttl_s}

    @app.post("/v1/sessions/{session_id}/steps")
    async def step(session_id: str, body: StepRequest) -> dict:
        session = sessions.get(session_id)
        if (body.text is None) == (body.inputs is None):
            raise RequestError(422, "give text (texts, items) or inputs (rows of numbers), one of them")
        value = _text(body.text, "text", limits) if body.inputs is None else _input(body.inputs, 0, limits)
        return await runner.run(lambda: session.feed(value, top=body.top))

    @app.delete("/v1/sessions/{session_id}", status_code=204)
    def close_session(session_id: str):
        sessions.remove(session_id)
        return Response(status_code=204)

    app.state.predictor, app.state.sessions, app.state.limits = predictor, sessions, limits
    return app


def serve(
    bundle: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    threads: int = 1,
) -> None:
    """Serve the bundle with uvicorn until interrupted, torch's intra-op work on ``threads`` threads.

    One thread by default: a request's tensors are small, and two OpenMP threads whose barriers
    spin while the clients (or anything else) hold the other core made each call 5-15x slower on
    2 cores (a classifier's call on 4 texts: 2.4 ms on one thread, 9-37 ms on two under load).
    """
    try:
        import uvicorn
    except ImportError:
        raise RnnkitError("rnnkit serve needs FastAPI and uvicorn: pip install 'rnnkit[serve]'") from None
    import torch

    torch.set_num_threads(threads)
    uvicorn.run(create_app(bundle, limits), host=host, port=port, log_level="info")


class _Batcher:
    """Micro-batching: /v1/predict requests that wait while the model is busy (or arrive within
    ``wait`` seconds of an idle model) share its next call, up to ``max_batch`` inputs, grouped by
    their options; each gets its own outputs back. A shared call that fails is retried request by
    request, so a bad input answers only its own request with its error; a predictor whose outputs
    do not line up with its inputs is called for each request alone."""

    def __init__(self, runner: _Runner, predict: Callable, max_batch: int, wait: float) -> None:
        self.runner, self.predict, self.max_batch, self.wait = runner, predict, max_batch, wait
        self.pending: list[tuple[list, dict, Any]] = []
        self.worker: Any = None

    async def submit(self, inputs: list, options: dict) -> Any:
        import asyncio

        future = asyncio.get_running_loop().create_future()
        if not self.max_batch:  # batching off: each request its own call
            await self._run([(inputs, options, future)])
            return await future
        self.pending.append((inputs, options, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        """Take waiting requests, up to max_batch inputs, call the model once per options, repeat."""
        import asyncio

        await asyncio.sleep(self.wait)  # a burst arriving together goes in one call
        while self.pending:
            taken, size = [], 0
            while self.pending and (not taken or size + len(self.pending[0][0]) <= self.max_batch):
                taken.append(self.pending.pop(0))
                size += len(taken[-1][0])
            groups: dict[str, list] = {}
            for item in taken:
                groups.setdefault(json.dumps(item[1], sort_keys=True, default=str), []).append(item)
            for group in groups.values():
                await self._run(group)

    async def _run(self, group: list[tuple[list, dict, Any]]) -> None:
        options = group[0][1]
        if len(group) > 1:
            joined = [x for inputs, _, _ in group for x in inputs]
            try:
                outputs = await self.runner.run(lambda: self.predict(joined, **options))
            except Exception:  # one request's bad input: each request alone, with its own answer
                outputs = None
            if isinstance(outputs, list) and len(outputs) == len(joined):
                start = 0
                for inputs, _, future in group:
                    if not future.done():
                        future.set_result(outputs[start : start + len(inputs)])
                    start += len(inputs)
                return
        for inputs, _, future in group:
            try:
                result = await self.runner.run(lambda inputs=inputs: self.predict(inputs, **options))
            except Exception as error:
                if not future.done():
                    future.set_exception(error)
            else:
                if not future.done():
                    future.set_result(result)


class _Runner:
    """Model calls one at a time in a worker thread, each within ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout, self.lock = timeout, threading.Lock()

    async def run(self, call: Callable[[], Any]) -> Any:
        import anyio

        def locked() -> Any:
            with self.lock:
                return call()

        try:
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(locked, abandon_on_cancel=True)
        except TimeoutError:
            raise RequestError(
                503, f"the model took longer than this server's limit ({self.timeout:g} s)"
            ) from None


async def _events(first: str | None, pieces: Iterator[str], runner: _Runner):
    """Server-sent events: each piece as ``data: {"text": ...}``, then ``event: end``."""
    piece = first
    while piece is not None:
        yield f"data: {json.dumps({'text': piece})}\n\n"
        piece = await runner.run(lambda: next(pieces, None))
    yield "event: end\ndata: {}\n\n"


class _Sessions:
    """Live streaming sessions by id; idle ones expire."""

    def __init__(self, limits: Limits) -> None:
        self.limits, self.lock = limits, threading.Lock()
        self.live: dict[str, tuple[Any, float]] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, seen) in self.live.items() if now - seen > self.limits.session_ttl_s]:
            del self.live[key]

    def add(self, session: Any) -> str:
        with self.lock:
            self._expire()
            if len(self.live) >= self.limits.max_sessions:
                raise RequestError(
                    429,
                    f"{len(self.live)} sessions are open, this server's limit (max_sessions): close one "
                    "(DELETE /v1/sessions/ID) or wait for idle ones to expire",
                )
            key = secrets.token_urlsafe(12)
            self.live[key] = (session, time.monotonic())
            return key

    def get(self, key: str) -> Any:
        with self.lock:
            self._expire()
            if key not in self.live:
                raise RequestError(
                    404, f"no session {key!r}: it was closed, expired after idling, or never opened"
                )
            session, _ = self.live[key]
            self.live[key] = (session, time.monotonic())
            return session

    def remove(self, key: str) -> None:
        with self.lock:
            self._expire()
            if self.live.pop(key, None) is None:
                raise RequestError(
                    404, f"no session {key!r}: it was closed, expired after idling, or never opened"
                )


def _batch(inputs: list[Any], limits: Limits) -> list[Any]:
    if not inputs:
        raise RequestError(422, "inputs is empty: give at least one input")
    if len(inputs) > limits.max_batch:
        raise RequestError(
            422, f"{len(inputs)} inputs are above this server's limit (max_batch {limits.max_batch})"
        )
    return inputs


def _input(value: Any, index: int, limits: Limits) -> Any:
    """A text as it is; numbers as a float32 array, finite and within max_length steps."""
    if isinstance(value, str):
        return _text(value, f"inputs[{index}]", limits)
    if isinstance(value, list):
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise RequestError(
                422, f"inputs[{index}] must be a text or a rectangular list of numbers (rows of features)"
            ) from None
        if array.ndim == 0 or len(array) > limits.max_length:
            raise RequestError(
                422, f"inputs[{index}] has {array.shape} values; at most {limits.max_length} steps"
            )
        if not np.isfinite(array).all():
            raise RequestError(422, f"inputs[{index}] holds NaN or infinity: fill or drop those values")
        return array
    raise RequestError(
        422, f"inputs[{index}] must be a text or a list of numbers, got {type(value).__name__}"
    )


def _text(text: str, name: str, limits: Limits) -> str:
    if len(text) > limits.max_length:
        raise RequestError(
            422, f"{name} has {len(text)} characters, above this server's limit ({limits.max_length})"
        )
    return text


def _finite_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(
                422,
                f"data[{index}].{key} is {value}: give numbers (or null for a missing value the model fills)",
            )
    return row


def _jsonable(value: Any) -> Any:
    """Predictor results as JSON data: tables as records, arrays as lists, tuples as lists."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso"))
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _validation_message(error) -> str:
    """FastAPI's validation errors as one line: where, and what is wrong."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        message = item.get("msg", "invalid")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        elif item.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


class _BodyLimit:
    """ASGI middleware: a body above ``max_bytes`` gets 413 before the app reads it (by its declared
    length, or as it arrives when none is declared)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        chunks, size = [], 0  # no declared length: read it here, up to the limit, and hand it on
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks)}], receive), send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"the body is larger than this server's limit ({self.max_bytes} bytes)"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


def _replay(messages: list[dict], receive=None):
    """An ASGI ``receive`` that gives ``messages`` first, then whatever ``receive`` gives."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive() if receive is not None else {"type": "http.disconnect"}

    return replayed

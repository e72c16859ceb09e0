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
    POST   /v1/sessions/{id}/steps   {"text": "..."}, {"inputs": [[...], ...]} or {"rows": [{column:
                                     value, ...}, ...]}: a language model's likeliest next tokens, a
                                     classifier's label of what it read so far, a forecaster's
                                     {"forecast": [...]} after the rows so far (null until a lookback)
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
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.errors import ConfigError, RnnkitError
from rnnkit.serve.requests import (
    BodyLimit,
    ExplainRequest,
    ForecastRequest,
    GenerateRequest,
    Limits,
    PredictRequest,
    RequestError,
    SessionRequest,
    StepRequest,
    check_batch,
    check_input,
    check_rows,
    check_text,
    validation_message,
)
from rnnkit.serve.workers import Batcher, Runner, Sessions, stream_events


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
    runner = Runner(limits.timeout_s)
    batcher = Batcher(
        runner, predictor.predict, limits.max_batch if limits.batching else 0, limits.batch_wait_s
    )
    sessions = Sessions(limits)
    app = FastAPI(
        title=f"rnnkit: {predictor.task.name} model",
        description=f"The bundle {bundle} ({predictor.task.name}); verbs: {', '.join(predictor.verbs)}",
        version=rnnkit.__version__,
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

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
        return JSONResponse({"detail": validation_message(error)}, status_code=422)

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
        inputs = [check_input(x, i, limits) for i, x in enumerate(check_batch(body.inputs, limits))]
        return {"outputs": _jsonable(await batcher.submit(inputs, body.options))}

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest) -> dict:
        offers("explain")
        return _jsonable(await runner.run(lambda: predictor.explain(check_text(body.text, "text", limits))))

    @app.post("/v1/forecast")
    async def forecast(body: ForecastRequest) -> dict:
        offers("forecast")
        import pandas as pd

        frame = pd.DataFrame.from_records(check_rows(body.data, "data", limits))
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
        check_text(body.prompt, "prompt", limits)
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
        return StreamingResponse(stream_events(first, pieces, runner), media_type="text/event-stream")

    @app.post("/v1/sessions", status_code=201)
    async def open_session(body: SessionRequest | None = None) -> dict:
        offers("session")
        condition = None if body is None else body.condition
        session = await runner.run(lambda: predictor.session(condition=condition))
        return {"id": sessions.add(session), "expires_after_idle_s": limits.session_ttl_s}

    @app.post("/v1/sessions/{session_id}/steps")
    async def step(session_id: str, body: StepRequest) -> dict:
        session = sessions.get(session_id)
        if sum(x is not None for x in (body.text, body.inputs, body.rows)) != 1:
            raise RequestError(
                422, "give text (texts, items), inputs (rows of numbers) or rows (column: value), one of them"
            )
        if body.rows is not None:
            value = check_rows(body.rows, "rows", limits)
        elif body.inputs is not None:
            value = check_input(body.inputs, 0, limits)
        else:
            value = check_text(body.text, "text", limits)
        result = await runner.run(lambda: session.feed(value, top=body.top))
        return result if isinstance(result, dict) else {"forecast": _jsonable(result)}

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

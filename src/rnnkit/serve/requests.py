"""What a request to ``rnnkit serve`` may hold, and how it is checked before the model sees it: the
limits (:class:`Limits`), the request bodies, the checks of inputs, and the body-size guard."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


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
    rows: list[dict[str, Any]] | None = Field(
        None, description="or a forecaster's next rows, in the training data's columns"
    )
    top: int = Field(5, gt=0, le=100, description="how many of the likeliest next tokens to return")


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message for ``detail``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_batch(inputs: list[Any], limits: Limits) -> list[Any]:
    if not inputs:
        raise RequestError(422, "inputs is empty: give at least one input")
    if len(inputs) > limits.max_batch:
        raise RequestError(
            422, f"{len(inputs)} inputs are above this server's limit (max_batch {limits.max_batch})"
        )
    return inputs


def check_input(value: Any, index: int, limits: Limits) -> Any:
    """A text as it is; numbers as a float32 array, finite and within max_length steps."""
    if isinstance(value, str):
        return check_text(value, f"inputs[{index}]", limits)
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


def check_text(text: str, name: str, limits: Limits) -> str:
    if len(text) > limits.max_length:
        raise RequestError(
            422, f"{name} has {len(text)} characters, above this server's limit ({limits.max_length})"
        )
    return text


def check_rows(rows: list[dict[str, Any]], field: str, limits: Limits) -> list[dict[str, Any]]:
    """Table rows (column -> value): 1 to max_length of them, no NaN or infinity (null is missing)."""
    if not rows or len(rows) > limits.max_length:
        raise RequestError(
            422, f"{field} must hold 1 to {limits.max_length} rows (max_length), got {len(rows)}"
        )
    for index, row in enumerate(rows):
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise RequestError(
                    422,
                    f"{field}[{index}].{key} is {value}: give numbers (or null for a missing value the "
                    "model fills)",
                )
    return rows


def validation_message(error) -> str:
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


class BodyLimit:
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
                return await self.app(scope, replay([message]), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay([{"type": "http.request", "body": b"".join(chunks)}], receive), send)

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


def replay(messages: list[dict], receive=None):
    """An ASGI ``receive`` that gives ``messages`` first, then whatever ``receive`` gives."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive() if receive is not None else {"type": "http.disconnect"}

    return replayed

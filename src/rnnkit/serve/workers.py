"""How ``rnnkit serve`` calls the model: one call at a time in a worker thread within the time
limit (:class:`Runner`), concurrent /v1/predict requests micro-batched (:class:`Batcher`), the live
streaming sessions (:class:`Sessions`) and server-sent events."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rnnkit.serve.requests import Limits, RequestError


class Batcher:
    """Micro-batching: /v1/predict requests that wait while the model is busy (or arrive within
    ``wait`` seconds of an idle model) share its next call, up to ``max_batch`` inputs, grouped by
    their options; each gets its own outputs back. A shared call that fails is retried request by
    request, so a bad input answers only its own request with its error; a predictor whose outputs
    do not line up with its inputs is called for each request alone."""

    def __init__(self, runner: Runner, predict: Callable, max_batch: int, wait: float) -> None:
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


class Runner:
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


async def stream_events(first: str | None, pieces: Iterator[str], runner: Runner):
    """Server-sent events: each piece as ``data: {"text": ...}``, then ``event: end``."""
    piece = first
    while piece is not None:
        yield f"data: {json.dumps({'text': piece})}\n\n"
        piece = await runner.run(lambda: next(pieces, None))
    yield "event: end\ndata: {}\n\n"


class Sessions:
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

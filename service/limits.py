"""Request limits for the node's and the catalogue's servers (pure ASGI middleware).

``BodyGuard``: a route group's authorisation is checked BEFORE anything of the request body
is read, and every body is capped (a ``Content-Length`` above the cap is refused at once; a
chunked body is read up to the cap and no further) with a 413 problem+json. FastAPI reads
and parses a body before it resolves a route's dependencies, so a token check written as a
dependency alone would come after a 15 MB upload has been parsed.

``ConcurrencyLimit``: at most ``slots`` requests at a time on the expensive routes (proofs,
log pages); the others wait up to ``wait`` seconds for a slot, then get 503 with
``Retry-After``. Cheap routes (search) never wait for them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem

__all__ = ["BodyGuard", "ConcurrencyLimit", "Guard"]


@dataclass(frozen=True)
class Guard:
    """Requests whose path starts with ``prefix``: ``authorise(request)`` (raises a
    starlette ``HTTPException`` to refuse; it sees the headers, never the body) and a body
    cap of ``max_body`` bytes."""

    prefix: str
    max_body: int
    authorise: Callable[[Request], None] | None = None
    setting: str = ""  # the setting that raises the cap, named in the 413


class BodyGuard:
    """Authorise first, then cap the body (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, max_body: int, setting: str, guards: Sequence[Guard] = ()
    ) -> None:
        self.app = app
        self.default = Guard("", max_body, None, setting)
        self.guards = list(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        guard = next(
            (g for g in self.guards if path == g.prefix or path.startswith(g.prefix + "/")),
            self.default,
        )
        if guard.authorise is not None:
            try:
                guard.authorise(Request(scope))
            except HTTPException as exc:
                await _problem(
                    scope, receive, send, exc.status_code, str(exc.detail), dict(exc.headers or {})
                )
                return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = (
            f"the request body is larger than {guard.max_body} bytes, the most this route "
            f"accepts" + (f" ({guard.setting})" if guard.setting else "")
        )
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _problem(scope, receive, send, 400, "Content-Length is not a number")
                return
            if declared > guard.max_body:
                await _problem(scope, receive, send, 413, too_big, {"Connection": "close"})
                return
        elif b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        # read the body up to the cap (a chunked body, or one that outruns its length)
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > guard.max_body:
                await _problem(scope, receive, send, 413, too_big, {"Connection": "close"})
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _problem(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    response = problem(status, detail, instance=scope.get("path"), headers=headers)
    await response(scope, receive, send)


class ConcurrencyLimit:
    """At most ``slots`` concurrent requests whose path matches one of ``patterns``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        patterns: Sequence[str],
        slots: int,
        wait: float = 10.0,
        setting: str = "",
        what: str = "proof or log-page requests",
    ) -> None:
        self.app = app
        self.what = what
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
        self.slots = max(1, slots)
        self.wait = wait
        self.setting = setting
        self._semaphore: asyncio.Semaphore | None = None  # made in the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.pattern.fullmatch(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        try:
            await asyncio.wait_for(semaphore.acquire(), self.wait)
        except TimeoutError:
            detail = f"more than {self.slots} {self.what} at once; try again" + (
                f" ({self.setting})" if self.setting else ""
            )
            await _problem(scope, receive, send, 503, detail, {"Retry-After": "1"})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            semaphore.release()

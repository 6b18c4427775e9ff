"""A lying catalogue: an ASGI middleware that rewrites chosen responses of a real catalogue app.

Each lie is (path regex, rewrite(query, body) -> body); everything else passes through, so a
lie stays minimal and realistic (one dropped leaf, one altered content, an old checkpoint).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

Rewrite = Callable[[dict[str, str], bytes], bytes]
ASGIApp = Callable[..., Any]


class Liar:
    """Wraps an ASGI app; `lies` can be changed between requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lies: list[tuple[re.Pattern[str], Rewrite]] = []

    def lie(self, path: str, rewrite: Rewrite) -> None:
        self.lies.append((re.compile(path), rewrite))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rewrites = [fn for rx, fn in self.lies if rx.fullmatch(path)]
        if not rewrites:
            await self.app(scope, receive, send)
            return
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    for fn in rewrites:
                        body = fn(query, body)
                    headers = [
                        (k, v)
                        for k, v in start.get("headers", [])
                        if k.lower() != b"content-length"
                    ]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def mirror_path(origin: str, what: str) -> str:
    return rf"/v1/nodes/{re.escape(origin)}/log/{what}"


def edit_page(fn: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]]) -> Rewrite:
    """Rewrite an entries page: fn(start, entries) -> entries."""

    def rewrite(query: dict[str, str], body: bytes) -> bytes:
        page = json.loads(body)
        page["entries"] = fn(int(query.get("start", 0)), page["entries"])
        return json.dumps(page).encode()

    return rewrite


def leaf_of(item: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(item["leaf"])))


def constant(text: str) -> Rewrite:
    return lambda _query, _body: text.encode()

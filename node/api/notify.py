"""``POST /v1/notify/targets``: a catalogue asks, at enrolment, to be told of new checkpoints.

Registration gives the node nothing to trust: it only adds a URL that the node will POST
its public, signed checkpoints to. The node first confirms that the URL is a catalogue
accepting notifications (its ``/.well-known/biobank-catalogue`` names the notify path), so
the node cannot be made to post to arbitrary addresses, and keeps at most
``node.notify.MAX_REGISTERED`` registered catalogues. ``NODE_ACCEPT_REGISTRATIONS=false``
turns registration off (the operator's ``biobank-node notify add`` always works).

The confirmation fetch must not make the node a network probe for its callers: every
refusal after a fetch has one reason and is answered only when the whole confirmation time
(``NODE_REGISTRATION_WAIT``, 5 s) has passed, whatever the fetch met (a closed port, an
HTTP server that is no catalogue, a filtered address, a slow trickle), so neither the words
nor the timing tell them apart. At most :data:`CONFIRM_SLOTS` confirmations run at once
(others: 429 with ``Retry-After``, decided before any fetch), and at most
:data:`MAX_DESCRIPTOR` bytes of the answer are read. See docs/freshness.md.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from node import notify, store
from node.api.deps import HomeDep
from protocol.errors import ConfigError
from service.problems import invalid

__all__ = ["CONFIRM_SLOTS", "MAX_DESCRIPTOR", "router"]

router = APIRouter(prefix="/v1/notify", tags=["notify"])
CONFIRM_SLOTS = 2  # registrations confirmed at once; more: 429 (no fetch)
MAX_DESCRIPTOR = 64 * 1024  # bytes of a catalogue descriptor read, at most


class Registration(BaseModel):
    url: str  # the catalogue's base URL; notifications go to URL/v1/notify


@router.post(
    "/targets",
    status_code=201,
    summary="A catalogue registers to be notified of new checkpoints (hint only)",
    responses={
        403: {"description": "this node does not accept registrations"},
        409: {"description": "as many catalogues registered as the node keeps"},
        429: {"description": "other registrations are being confirmed (Retry-After)"},
    },
)
async def register(body: Registration, home: HomeDep, request: Request) -> dict[str, Any]:
    state = request.app.state
    if not state.accept_registrations:
        raise HTTPException(403, "this node does not accept registrations; ask its operator")
    try:
        url = notify.check_url(body.url)
    except ConfigError as exc:
        raise invalid("url", exc.message) from exc
    wait: float = state.registration_wait
    slots: asyncio.Semaphore | None = getattr(state, "registration_slots", None)
    if slots is None:  # made in the server's event loop
        slots = state.registration_slots = asyncio.Semaphore(CONFIRM_SLOTS)
    if slots.locked():
        raise HTTPException(
            429,
            f"{CONFIRM_SLOTS} registrations are being confirmed; try again",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    async with slots:
        started = time.monotonic()
        if not await _confirmed(url, state.tls, wait):
            # one answer, at one time, whatever the fetch met: no port or host probe
            await asyncio.sleep(max(0.0, started + wait - time.monotonic()))
            raise invalid(
                "url",
                f"{url} is not a catalogue accepting notifications (its "
                f'/.well-known/biobank-catalogue must answer "notify": "{notify.PATH}")',
            )
    conn = store.connect(home.db_path)
    try:
        try:
            added = notify.add_target(conn, url, source="enrolment")
        except ConfigError as exc:
            raise HTTPException(409, exc.message) from exc
    finally:
        conn.close()
    return {"url": url, "notify": notify.notify_url(url), "added": added}


async def _confirmed(url: str, tls: Any, wait: float) -> bool:
    """Whether ``url`` serves, within ``wait`` seconds in all and :data:`MAX_DESCRIPTOR`
    bytes, a catalogue descriptor naming the notify path (no redirect followed)."""
    where = f"{url}/.well-known/biobank-catalogue"
    data = b""
    try:
        async with (
            asyncio.timeout(wait),
            httpx.AsyncClient(timeout=wait, verify=tls) as client,
            client.stream("GET", where) as resp,
        ):
            if not resp.is_success:
                return False
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MAX_DESCRIPTOR:
                    return False
        body = json.loads(data)
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and body.get("notify") == notify.PATH

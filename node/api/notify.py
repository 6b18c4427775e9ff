"""``POST /v1/notify/targets``: a catalogue asks, at enrolment, to be told of new checkpoints.

Registration gives the node nothing to trust: it only adds a URL that the node will POST
its public, signed checkpoints to. The node first confirms that the URL is a catalogue
accepting notifications (its ``/.well-known/biobank-catalogue`` names the notify path), so
the node cannot be made to post to arbitrary addresses, and keeps at most
``node.notify.MAX_REGISTERED`` registered catalogues. ``NODE_ACCEPT_REGISTRATIONS=false``
turns registration off (the operator's ``biobank-node notify add`` always works).
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from node import notify, store
from node.api.deps import HomeDep
from protocol.errors import ConfigError
from service.problems import invalid

router = APIRouter(prefix="/v1/notify", tags=["notify"])
CONFIRM_TIMEOUT = 5.0


class Registration(BaseModel):
    url: str  # the catalogue's base URL; notifications go to URL/v1/notify


@router.post(
    "/targets",
    status_code=201,
    summary="A catalogue registers to be notified of new checkpoints (hint only)",
)
async def register(body: Registration, home: HomeDep, request: Request) -> dict[str, Any]:
    if not request.app.state.accept_registrations:
        raise HTTPException(403, "this node does not accept registrations; ask its operator")
    try:
        url = notify.check_url(body.url)
    except ConfigError as exc:
        raise HTTPException(400, exc.message) from exc
    await _confirm(url, request.app.state.tls)
    conn = store.connect(home.db_path)
    try:
        try:
            added = notify.add_target(conn, url, source="enrolment")
        except ConfigError as exc:
            raise HTTPException(409, exc.message) from exc
    finally:
        conn.close()
    return {"url": url, "notify": notify.notify_url(url), "added": added}


async def _confirm(url: str, tls: Any) -> None:
    """The URL serves a catalogue descriptor that names the notify path (400 naming ``url``
    otherwise; the reason never carries what the fetch met, so the node is no network probe)."""
    where = f"{url}/.well-known/biobank-catalogue"
    try:
        async with httpx.AsyncClient(timeout=CONFIRM_TIMEOUT, verify=tls) as client:
            resp = await client.get(where)
        body = resp.json() if resp.is_success else None
    except (httpx.HTTPError, ValueError) as exc:
        raise invalid("url", f"{where}: no catalogue descriptor") from exc
    if not isinstance(body, dict) or body.get("notify") != notify.PATH:
        raise invalid(
            "url", f"{where} does not describe a catalogue accepting notifications at {notify.PATH}"
        )

"""``POST /v1/notify``: a node's new signed checkpoint, taken as a hint to harvest it now."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from catalogue.errors import Throttled
from catalogue.notify import MAX_NOTE

__all__ = ["router"]

router = APIRouter(tags=["notify"])


@router.post(
    "/v1/notify",
    status_code=202,
    summary="A node's new checkpoint (text/plain, verbatim): harvest that node now",
    responses={
        200: {"description": "already verified: nothing to do"},
        400: {"description": "not a checkpoint note (problem+json)"},
        403: {"description": "not signed by the key enrolled for its origin"},
        404: {"description": "no enrolled node with that origin"},
        409: {"description": "the node is halted"},
        413: {"description": "larger than any checkpoint note"},
        429: {"description": "too soon after the node's last notification (Retry-After)"},
    },
)
async def notify(request: Request) -> Any:
    push = request.app.state.push
    if push is None:
        raise HTTPException(404, "this catalogue does not take notifications (CATALOGUE_NOTIFY)")
    body = b""
    async for chunk in request.stream():  # never more than a note's worth in memory
        body += chunk
        if len(body) > MAX_NOTE:
            raise HTTPException(413, f"a checkpoint note is at most {MAX_NOTE} bytes")
    try:
        note = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "the body is not UTF-8 text") from exc
    try:
        hint = await push.accept(note)
    except Throttled as exc:
        raise HTTPException(
            429, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        ) from exc
    return JSONResponse(hint.to_json(), status_code=200 if hint.status == "known" else 202)

"""The researcher web page: static HTML, CSS and ES modules served by the catalogue app.

`mount_web(app)` serves the single page at `/` (and at its client-side routes
`/nodes`, `/nodes/{origin}`, `/verification`) and its assets under `/static/`.
There is no build step: the files in `static/` are what the browser runs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
INDEX = STATIC / "index.html"

# The page is small and changes with each release; revalidate rather than cache blindly.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
}


def _index() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=_HEADERS)


def mount_web(app: FastAPI) -> None:
    """Serve the researcher page and its assets on `app` (call after the API routers)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for route in ("/", "/nodes", "/nodes/{origin:path}", "/verification"):
        app.add_api_route(
            route, _index, methods=["GET"], include_in_schema=False, response_class=FileResponse
        )


mount = mount_web  # the name catalogue/app.py looks up

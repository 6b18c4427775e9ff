"""Shared FastAPI dependencies: the app's context and a read connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from catalogue.context import Context

__all__ = ["Conn", "Ctx", "get_conn", "get_context"]


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def get_conn(ctx: Annotated[Context, Depends(get_context)]) -> Iterator[Connection]:
    with ctx.engine.connect() as conn:
        yield conn


Ctx = Annotated[Context, Depends(get_context)]
Conn = Annotated[Connection, Depends(get_conn)]

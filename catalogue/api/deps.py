"""Shared FastAPI dependencies: the app's context and a read connection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from catalogue.codes import Vocabulary
from catalogue.cube import CubeCache
from catalogue.ownlog import CatalogueKey
from catalogue.settings import Settings


@dataclass
class Context:
    """What every route may need, built once by create_app."""

    settings: Settings
    engine: Engine
    key: CatalogueKey
    vocab: Vocabulary
    cube: CubeCache = field(default_factory=CubeCache)


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def get_conn(ctx: Annotated[Context, Depends(get_context)]) -> Iterator[Connection]:
    with ctx.engine.connect() as conn:
        yield conn


Ctx = Annotated[Context, Depends(get_context)]
Conn = Annotated[Connection, Depends(get_conn)]

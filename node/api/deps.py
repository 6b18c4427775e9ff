"""Dependencies shared by the routers: the opened node home and a read connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from node import store
from node.home import Home


def get_home(request: Request) -> Home:
    home: Home = request.app.state.home
    return home


def get_conn(request: Request) -> Iterator[sqlite3.Connection]:
    conn = store.connect(request.app.state.home.db_path, readonly=True)
    try:
        yield conn
    finally:
        conn.close()


HomeDep = Annotated[Home, Depends(get_home)]
ConnDep = Annotated[sqlite3.Connection, Depends(get_conn)]

"""Where the catalogue listens: the public API on host:port and, with
CATALOGUE_ADMIN_LISTEN, the admin API on a listener of its own (host:port or a unix socket),
both served by one process (docs/operations.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

__all__ = ["Listen", "admin_server", "parse_listen", "run", "serve_all"]


@dataclass(frozen=True)
class Listen:
    """A TCP ``host``/``port`` or a unix socket path ``uds``."""

    host: str | None = None
    port: int | None = None
    uds: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.uds}" if self.uds else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """``host:port``, ``[v6]:port``, or a unix socket path (``unix:/run/x.sock``, or any
    value with a ``/``); ValueError names CATALOGUE_ADMIN_LISTEN and what is wrong."""
    value = value.strip()
    if value.startswith("unix:") or "/" in value:
        path = value.removeprefix("unix:")
        if not os.path.isabs(path):
            raise ValueError(
                f"CATALOGUE_ADMIN_LISTEN={value!r}: a unix socket path must be absolute"
            )
        return Listen(uds=path)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"CATALOGUE_ADMIN_LISTEN={value!r}: give host:port (127.0.0.1:8081) or the "
            "absolute path of a unix socket (/run/biobank-catalogue/admin.sock)"
        )
    return Listen(host=host.removeprefix("[").removesuffix("]"), port=int(port))


def _unix_socket(path: str) -> socket.socket:
    """A unix socket bound at ``path``, mode 0600 before it listens (uvicorn's own would be
    0666); a stale socket file from an earlier run is replaced, any other file is not."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)  # nobody can connect before listen(), which uvicorn calls later
    return sock


def admin_server(app: FastAPI, **config: Any) -> tuple[uvicorn.Server, list[socket.socket]]:
    """The uvicorn server of ``app.state.admin_app`` on CATALOGUE_ADMIN_LISTEN."""
    where = parse_listen(app.state.ctx.settings.admin_listen)
    admin_app = app.state.admin_app
    if where.uds:
        server = uvicorn.Server(uvicorn.Config(admin_app, lifespan="off", **config))
        return server, [_unix_socket(where.uds)]
    cfg = uvicorn.Config(
        admin_app, host=where.host or "127.0.0.1", port=where.port or 0, lifespan="off", **config
    )
    return uvicorn.Server(cfg), []


async def serve_all(servers: list[tuple[uvicorn.Server, list[socket.socket]]]) -> None:
    """Serve every server in this event loop; when one stops, the others stop too."""
    tasks = [asyncio.create_task(server.serve(sockets=socks or None)) for server, socks in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, socks in servers:
            for sock in socks:
                path = sock.getsockname()
                sock.close()
                if isinstance(path, str) and path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def run(app: FastAPI, *, host: str, port: int, **config: Any) -> None:
    """Serve ``app`` on host:port and, when it has one, its admin app on its own listener."""
    public = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = [(public, [])]
    if getattr(app.state, "admin_app", None) is not None:
        servers.append(admin_server(app, **config))
    # the event loop uvicorn.run would use (uvloop when installed and asked for)
    with asyncio.Runner(loop_factory=public.config.get_loop_factory()) as runner:
        runner.run(serve_all(servers))

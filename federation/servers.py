"""Real servers on loopback ports: uvicorn in a thread of this process, or apps in a spawned one.

The demo, the tests and the benchmarks all start servers through here: ``LiveServer`` (and
its context manager ``live_server``) runs an ASGI app in a daemon thread, ``ServerProcess``
serves node or catalogue apps in a freshly spawned process so that clients measure them from
outside. ``free_port`` asks the kernel for a free port (another process may still take it
before the server binds: a server that cannot start raises ``RuntimeError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on loopback now."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# A path no app serves. FastAPI builds each route's parameters when a request first tries
# it, on the thread serving that request, and that build changes the route function's
# shared `Query` objects (their alias): two apps of one process (node servers in threads)
# building the same function at once race, and pydantic's resulting warning (an error
# under the tests' filter) turns a request into HTTP 500. One request to this path tries
# every route of an app, so each app is built once, before any other request reaches it.
WARM_PATH = "/.well-known/biobank-warm-routes"


def warm_routes(url: str) -> None:
    """Build every route of the app at `url` (`WARM_PATH`: it answers 404)."""
    with contextlib.suppress(httpx.HTTPError):  # the server's own requests will tell
        httpx.get(url + WARM_PATH, timeout=30)


def _config(app: Any, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on")


class LiveServer:
    """A real uvicorn server on a loopback port, run in a daemon thread (signals stay with
    the main thread)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.server = uvicorn.Server(_config(app, self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()  # a server still starting must not outlive the failure
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        warm_routes(self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def live_server(app: Any, port: int | None = None) -> Iterator[LiveServer]:
    """Serve ``app`` on loopback for the duration of the ``with`` block."""
    server = LiveServer(app, port).start()
    try:
        yield server
    finally:
        server.stop()


def _serve(apps: list[tuple[Any, int]]) -> None:
    servers = [uvicorn.Server(_config(app, port)) for app, port in apps]
    for server in servers[1:]:
        threading.Thread(target=server.run, daemon=True).start()
    servers[0].run()


def _serve_nodes(homes: list[tuple[str, int]]) -> None:
    from federation.build import node_app

    _serve([(node_app(Path(home), f"http://{HOST}:{port}"), port) for home, port in homes])


def _serve_catalogue(settings: dict[str, Any], port: int) -> None:
    from catalogue import listen
    from catalogue.app import create_app
    from catalogue.settings import Settings

    app = create_app(Settings(**settings))
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = [
        (uvicorn.Server(_config(app, port)), [])
    ]
    if getattr(app.state, "admin_app", None) is not None:  # CATALOGUE_ADMIN_LISTEN
        servers.append(listen.admin_server(app, log_level="warning"))
    asyncio.run(listen.serve_all(servers))


class ServerProcess:
    """A spawned process serving one or more apps on loopback ports (a context manager)."""

    def __init__(
        self,
        target: Any,
        args: tuple[Any, ...],
        ports: list[int],
        ready: str | None = None,
        ready_timeout: float = 900.0,
    ) -> None:
        self.ports = ports
        self.ready = ready  # a path answering 200 once the server is ready (after the ports)
        self.ready_timeout = ready_timeout
        self.process = multiprocessing.get_context("spawn").Process(
            target=target, args=args, daemon=True
        )

    @classmethod
    def nodes(cls, homes: list[Path]) -> ServerProcess:
        """One process serving every node home, each on its own port."""
        pairs = [(str(h), free_port()) for h in homes]
        return cls(_serve_nodes, (pairs,), [p for _, p in pairs])

    @classmethod
    def catalogue(cls, settings: dict[str, Any]) -> ServerProcess:
        """One process serving a catalogue built from ``Settings(**settings)``."""
        port = free_port()
        return cls(_serve_catalogue, (settings, port), [port], ready="/readyz")

    def urls(self) -> list[str]:
        return [f"http://{HOST}:{p}" for p in self.ports]

    def __enter__(self) -> ServerProcess:
        self.process.start()
        deadline = time.monotonic() + 60
        for port in self.ports:
            while True:
                with socket.socket() as s:
                    if s.connect_ex((HOST, port)) == 0:
                        break
                if time.monotonic() > deadline or not self.process.is_alive():
                    self.stop()
                    raise RuntimeError(f"server on port {port} did not start")
                time.sleep(0.05)
        for url in self.urls():  # one app at a time (`WARM_PATH`)
            warm_routes(url)
        if self.ready:
            self._wait_ready(self.ready, self.ready_timeout)
        return self

    def _wait_ready(self, path: str, timeout: float) -> None:
        """Wait until `path` answers 200: a catalogue loads its search index before it is
        ready (about half a minute at 10M samples), and a search meanwhile waits for it."""
        deadline = time.monotonic() + timeout
        url = self.urls()[0] + path
        while True:
            try:
                if httpx.get(url, timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not self.process.is_alive():
                self.stop()
                raise RuntimeError(f"server at {url} not ready within {timeout:g} s")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


__all__ = ["LiveServer", "ServerProcess", "free_port", "live_server", "port_free"]

"""Node and catalogue servers in their own processes, so clients measure them from outside."""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(apps: list[tuple[Any, int]]) -> None:
    servers = [uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                             log_level="warning", lifespan="on"))
               for app, port in apps]
    threads = [threading.Thread(target=s.run, daemon=True) for s in servers[1:]]
    for t in threads:
        t.start()
    servers[0].run()


def _serve_nodes(homes: list[tuple[str, int]]) -> None:
    from catalogue.demo import node_app

    _serve([(node_app(Path(home), f"http://127.0.0.1:{port}"), port) for home, port in homes])


def _serve_catalogue(settings: dict[str, Any], port: int) -> None:
    from catalogue.app import create_app
    from catalogue.settings import Settings

    _serve([(create_app(Settings(**settings)), port)])


class ServerProcess:
    """A spawned process serving one or more apps on loopback ports."""

    def __init__(self, target: Any, args: tuple[Any, ...], ports: list[int]) -> None:
        self.ports = ports
        self.process = multiprocessing.get_context("spawn").Process(
            target=target, args=args, daemon=True)

    @classmethod
    def nodes(cls, homes: list[Path]) -> ServerProcess:
        pairs = [(str(h), free_port()) for h in homes]
        return cls(_serve_nodes, (pairs,), [p for _, p in pairs])

    @classmethod
    def catalogue(cls, settings: dict[str, Any]) -> ServerProcess:
        port = free_port()
        return cls(_serve_catalogue, (settings, port), [port])

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def __enter__(self) -> ServerProcess:
        self.process.start()
        deadline = time.monotonic() + 60
        for port in self.ports:
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline or not self.process.is_alive():
                    self.stop()
                    raise RuntimeError(f"server on port {port} did not start")
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)

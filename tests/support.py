"""Test support shared by every test package: the external data folder and real loopback servers."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "data" / "external"


def external_data() -> Path:
    """The shared external test data; skip outside CI when absent, fail inside CI."""
    if EXTERNAL.is_dir():
        return EXTERNAL
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared external test data is missing at {EXTERNAL}")
    pytest.skip(f"shared external test data not found at {EXTERNAL} "
                "(only CI and developers have it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on a loopback port, run in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def live_server(app: Any, port: int | None = None) -> Iterator[LiveServer]:
    server = LiveServer(app, port).start()
    try:
        yield server
    finally:
        server.stop()

"""Issue 16 item 11: with CATALOGUE_ADMIN_LISTEN the admin API is served on its own listener
(host:port or a unix socket) and NOT on the public one; real servers, both listeners."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from catalogue.listen import Listen, parse_listen
from catalogue.settings import Settings
from federation.servers import ServerProcess, free_port
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _wait_tcp(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"admin listener on {port} did not start")


def _wait_unix(path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            with socket.socket(socket.AF_UNIX) as s:
                if s.connect_ex(str(path)) == 0:
                    return
        time.sleep(0.05)
    raise AssertionError(f"admin socket {path} did not start")


def _public_has_no_admin(public: httpx.Client) -> None:
    for method, path in (("POST", "/v1/admin/harvest"), ("POST", "/v1/admin/nodes")):
        resp = public.request(method, path, headers=AUTH, json={"url": "u", "key": "k"})
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
    assert "/v1/admin/harvest" not in public.get("/openapi.json").json()["paths"]
    assert public.get("/v1/nodes").status_code == 200


def test_admin_listen_tcp_serves_admin_apart_from_the_public_api(tmp_path: Path) -> None:
    admin_port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'c.db'}",
        tmp_path / "home",
        admin_listen=f"127.0.0.1:{admin_port}",
    )
    with ServerProcess.catalogue(settings.model_dump()) as proc:
        _wait_tcp(admin_port)
        with (
            httpx.Client(base_url=proc.urls()[0], timeout=30) as public,
            httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=30) as admin,
        ):
            _public_has_no_admin(public)
            assert admin.post("/v1/admin/harvest", headers=AUTH).json() == {"nodes": []}
            refused = admin.post("/v1/admin/harvest")
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            assert admin.get("/v1/search").status_code == 404  # the admin listener is admin only
            assert (
                admin.post("/v1/admin/nodes", headers=AUTH, content=b"x" * 100_000).status_code
                == 413
            )


def test_admin_listen_unix_socket_serves_admin_owner_only(tmp_path: Path) -> None:
    sock = tmp_path / "admin.sock"
    settings = make_settings(
        f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home", admin_listen=str(sock)
    )
    with ServerProcess.catalogue(settings.model_dump()) as proc:
        _wait_unix(sock)
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        transport = httpx.HTTPTransport(uds=str(sock))
        with (
            httpx.Client(base_url=proc.urls()[0], timeout=30) as public,
            httpx.Client(transport=transport, base_url="http://admin", timeout=30) as admin,
        ):
            _public_has_no_admin(public)
            assert admin.post("/v1/admin/harvest", headers=AUTH).json() == {"nodes": []}
            assert admin.post("/v1/admin/harvest").status_code == 401


def test_admin_listen_setting_is_checked() -> None:
    assert parse_listen("127.0.0.1:8081") == Listen(host="127.0.0.1", port=8081)
    assert parse_listen("[::1]:8081") == Listen(host="::1", port=8081)
    assert parse_listen("unix:/run/c/admin.sock") == Listen(uds="/run/c/admin.sock")
    for bad in ("8081", "localhost", "host:99999", "relative/admin.sock"):
        with pytest.raises(ValidationError, match="CATALOGUE_ADMIN_LISTEN"):
            Settings(admin_listen=bad)
    assert Settings(admin_listen="").admin_listen is None


def test_serve_command_opens_both_listeners_and_stops_both(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "CATALOGUE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "CATALOGUE_HOME": str(tmp_path / "home"),
        "CATALOGUE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CATALOGUE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
    }
    exe = Path(sys.executable).parent / "biobank-catalogue"
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [str(exe), "serve", "--port", str(port), "--no-harvest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_tcp(port)
        _wait_tcp(admin_port)
        public = httpx.post(f"http://127.0.0.1:{port}/v1/admin/harvest", headers=AUTH)
        assert public.status_code == 404
        admin = httpx.post(f"http://127.0.0.1:{admin_port}/v1/admin/harvest", headers=AUTH)
        assert admin.status_code == 200, admin.text
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        for p in (port, admin_port):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", p)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

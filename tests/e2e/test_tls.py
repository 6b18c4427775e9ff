"""HTTPS through Caddy (deploy/caddy/*.Caddyfile) in front of a real node and a real catalogue:
enrol, harvest, audit and monitor with certificate verification on, plain HTTP redirected, a
certificate from another CA refused and reported, the admin API absent, security headers
present, the client's real address seen by the app.

Two Caddy processes (the node's and the catalogue's: different hosts and CAs in real life),
each with its own internal CA (`local_certs`) in a throwaway storage directory. The catalogue
runs as `biobank-catalogue serve` (its access log shows the client address uvicorn believes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation import LiveServer, free_port, node_app, prepare_node
from federation.build import CATALOGUE_ORIGIN, DemoNode
from protocol.tls import client_tls
from tests.support import REPO

BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
OTHER_CLIENT = "127.0.0.2"  # a client address that is not the proxy's (Linux: all 127/8 is lo)
TOKEN = "tls-test-admin-token-0123456789"  # noqa: S105 - a test token


def _caddy() -> str:
    found = shutil.which("caddy")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but caddy is missing (apt-get install caddy)")
    pytest.skip("caddy not installed (apt-get install caddy)")


@dataclass
class Proxy:
    """One Caddy process in front of one upstream."""

    process: subprocess.Popen[bytes]
    https: str  # https://127.0.0.1:PORT
    http: str  # http://127.0.0.1:PORT (redirects)
    root: Path  # the root certificate of this Caddy's internal CA


def _start_caddy(caddy: str, workdir: Path, role: str, upstream: int) -> Proxy:
    https_port, http_port = free_port(), free_port()
    storage = workdir / f"caddy-{role}"
    config = workdir / f"{role}.Caddyfile"
    # test-only global options; the site block is the shipped file, unchanged
    config.write_text(
        "{\n\tadmin off\n"
        f"\thttp_port {http_port}\n"
        "\tlocal_certs\n\tskip_install_trust\n"
        f"\tstorage file_system {storage}\n}}\n"
        f"import {REPO / 'deploy' / 'caddy' / f'{role}.Caddyfile'}\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "SITE": f"{LOOPBACK}:{https_port}",
        "UPSTREAM": f"{LOOPBACK}:{upstream}",
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / f"xdg-{role}"),
        "XDG_CONFIG_HOME": str(workdir / f"xdg-{role}"),
    }
    with (workdir / f"caddy-{role}.log").open("wb") as log:
        process = subprocess.Popen(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = Proxy(
        process,
        f"https://{LOOPBACK}:{https_port}",
        f"http://{LOOPBACK}:{http_port}",
        storage / "pki" / "authorities" / "local" / "root.crt",
    )
    deadline = time.monotonic() + 30
    while True:  # ready: its CA exists and it completes a verified TLS handshake
        if process.poll() is not None:
            raise RuntimeError(
                f"caddy ({role}) exited: {(workdir / f'caddy-{role}.log').read_text()}"
            )
        if proxy.root.is_file():
            try:
                httpx.get(proxy.https, verify=client_tls(proxy.root, setting="test"), timeout=5)
                return proxy
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"caddy ({role}) did not become ready")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.05)


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if path.exists():
            with socket.socket(socket.AF_UNIX) as s:
                if s.connect_ex(str(path)) == 0:
                    return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"admin socket {path} did not start")
        time.sleep(0.05)


def _admin(path: Path) -> httpx.Client:
    """A client of the catalogue's admin API on its unix socket."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://admin")


@dataclass
class Site:
    """The node and the catalogue behind their proxies, and what the tests need to drive them."""

    workdir: Path
    node: DemoNode
    node_proxy: Proxy
    catalogue_proxy: Proxy
    catalogue_upstream: str
    admin_socket: Path  # CATALOGUE_ADMIN_LISTEN: /v1/admin on a unix socket, not the upstream
    catalogue_env: dict[str, str]
    catalogue_log: Path
    both_roots: Path
    harvest: subprocess.CompletedProcess[str]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=env or self.catalogue_env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    @property
    def node_url(self) -> str:
        return self.node_proxy.https


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    caddy = _caddy()
    workdir = tmp_path_factory.mktemp("tls")
    node = DemoNode("DE", workdir / "nodes" / "DE")
    prepare_node(node, samples=300, seed=3, workdir=workdir)
    catalogue_port = free_port()
    with contextlib.ExitStack() as stack:
        node_proxy = _start_caddy(caddy, workdir, "node", node.port)
        stack.callback(_stop, node_proxy.process)
        catalogue_proxy = _start_caddy(caddy, workdir, "catalogue", catalogue_port)
        stack.callback(_stop, catalogue_proxy.process)
        # the node's descriptor names its public HTTPS URL
        server = LiveServer(node_app(node.home, node_proxy.https), node.port).start()
        stack.callback(server.stop)
        env = {
            **os.environ,
            "CATALOGUE_DATABASE_URL": f"sqlite:///{workdir / 'catalogue.db'}",
            "CATALOGUE_HOME": str(workdir / "catalogue"),
            "CATALOGUE_ORIGIN": CATALOGUE_ORIGIN,
            "CATALOGUE_ADMIN_TOKEN": TOKEN,
            "CATALOGUE_HARVEST_WORKERS": "2",  # the one-shot harvest: one worker process too
            "CATALOGUE_CA_BUNDLE": str(node_proxy.root),
            "CATALOGUE_ADMIN_LISTEN": str(workdir / "admin.sock"),
        }
        log_path = workdir / "catalogue-serve.log"
        with log_path.open("wb") as log:
            serve = subprocess.Popen(
                [
                    *(str(BIN / "biobank-catalogue"), "serve", "--no-harvest"),
                    *("--port", str(catalogue_port)),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stack.callback(_stop, serve)
        _wait_for_port(catalogue_port, serve)
        upstream = f"http://{LOOPBACK}:{catalogue_port}"
        admin_socket = workdir / "admin.sock"
        _wait_for_socket(admin_socket, serve)
        # enrolment through the admin API, on its own unix socket on the catalogue host: the
        # catalogue fetches the node's descriptor over HTTPS, verified against
        # CATALOGUE_CA_BUNDLE
        with _admin(admin_socket) as admin:
            enrolled = admin.post(
                "/v1/admin/nodes",
                json={"url": node_proxy.https, "key": node.verifier_key},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=60,
            )
        assert enrolled.status_code == 201, enrolled.text
        both = workdir / "both-roots.pem"
        both.write_bytes(node_proxy.root.read_bytes() + catalogue_proxy.root.read_bytes())
        s = Site(
            workdir,
            node,
            node_proxy,
            catalogue_proxy,
            upstream,
            admin_socket,
            env,
            log_path,
            both,
            None,  # type: ignore[arg-type]
        )
        s.harvest = s.run("biobank-catalogue", "harvest")
        yield s


def _size(site: Site) -> int:
    status = site.run("biobank-catalogue", "status", "--json")
    (row,) = json.loads(status.stdout)["nodes"]
    return int(row["tree_size"])


def test_the_catalogue_harvests_the_node_over_verified_https(site: Site) -> None:
    assert site.harvest.returncode == 0, site.harvest.stderr
    assert ": ok, size " in site.harvest.stdout
    assert _size(site) > 0


def test_the_auditor_verifies_catalogue_and_node_over_verified_https(site: Site) -> None:
    done = site.run(
        "biobank-audit",
        "verify",
        "--catalogue",
        site.catalogue_proxy.https,
        "--node-direct",
        "--ca-bundle",
        str(site.both_roots),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_node_monitor_checks_the_mirror_over_verified_https(site: Site) -> None:
    done = site.run(
        "biobank-node",
        "monitor",
        "--home",
        str(site.node.home),
        "--catalogue",
        site.catalogue_proxy.https,
        "--ca-bundle",
        str(site.catalogue_proxy.root),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: the catalogue mirrors")


VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"


def test_plain_http_is_redirected_to_https(site: Site) -> None:
    for proxy in (site.node_proxy, site.catalogue_proxy):
        answer = httpx.get(f"{proxy.http}/v1/search?country=DE", timeout=10)
        assert answer.status_code == 308
        assert answer.headers["location"] == f"{proxy.https}/v1/search?country=DE"


def test_the_harvest_refuses_a_node_certificate_from_another_ca_and_records_it(
    site: Site,
) -> None:
    before = _size(site)
    wrong = {**site.catalogue_env, "CATALOGUE_CA_BUNDLE": str(site.catalogue_proxy.root)}
    done = site.run("biobank-catalogue", "harvest", env=wrong)
    assert done.returncode == 1
    assert (
        f"failed: FetchError: GET {site.node_url}/v1/log/checkpoint: "
        f"ConnectError: [SSL: {VERIFY_FAILED}] certificate verify failed"
    ) in done.stderr
    status = site.run("biobank-catalogue", "status", "--json")
    (row,) = json.loads(status.stdout)["nodes"]
    assert VERIFY_FAILED in row["last_error"]
    assert _size(site) == before  # nothing lost


def test_the_harvest_with_the_system_store_refuses_the_private_ca(site: Site) -> None:
    system = {k: v for k, v in site.catalogue_env.items() if k != "CATALOGUE_CA_BUNDLE"}
    done = site.run("biobank-catalogue", "harvest", env=system)
    assert done.returncode == 1
    assert VERIFY_FAILED in done.stderr


def test_enrolment_refuses_a_node_certificate_from_another_ca(site: Site) -> None:
    wrong = {**site.catalogue_env, "CATALOGUE_CA_BUNDLE": str(site.catalogue_proxy.root)}
    done = site.run(
        "biobank-catalogue", "enrol", site.node_url, "--key", site.node.verifier_key, env=wrong
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: GET {site.node_url}/.well-known/biobank-node: ConnectError: [SSL: {VERIFY_FAILED}]"
    )


def test_a_missing_catalogue_ca_bundle_is_one_clear_error(site: Site) -> None:
    missing = site.workdir / "no-such.pem"
    done = site.run(
        "biobank-catalogue",
        "harvest",
        env={**site.catalogue_env, "CATALOGUE_CA_BUNDLE": str(missing)},
    )
    assert done.returncode == 2
    assert f"CATALOGUE_CA_BUNDLE: no file at {missing}" in done.stderr


def test_the_auditor_reports_a_catalogue_certificate_it_cannot_verify(site: Site) -> None:
    done = site.run(
        "biobank-audit",
        "verify",
        "--catalogue",
        site.catalogue_proxy.https,
        "--ca-bundle",
        str(site.node_proxy.root),
    )
    assert done.returncode == 1
    assert VERIFY_FAILED in done.stdout + done.stderr


def test_the_auditor_reports_a_node_certificate_it_cannot_verify(site: Site) -> None:
    done = site.run(
        "biobank-audit",
        "verify",
        "--catalogue",
        site.catalogue_proxy.https,
        "--node-direct",
        "--ca-bundle",
        str(site.catalogue_proxy.root),
        "--json",
    )
    assert done.returncode == 1
    assert VERIFY_FAILED in done.stdout


def test_the_monitor_refuses_a_catalogue_certificate_from_another_ca(site: Site) -> None:
    done = site.run(
        "biobank-node",
        "monitor",
        "--home",
        str(site.node.home),
        "--catalogue",
        site.catalogue_proxy.https,
        env={**os.environ, "NODE_CA_BUNDLE": str(site.node_proxy.root)},
    )
    assert done.returncode == 2
    assert VERIFY_FAILED in done.stderr


ADMIN_PATHS = [
    "/v1/admin/harvest",
    "/v1/admin",
    "/v1/%61dmin/harvest",
    "/V1/ADMIN/harvest",
    "/v1//admin/harvest",
    "/v1/./admin/harvest",
    "/v1/nodes/../admin/harvest",
    "/v1/admin%2fharvest",
]


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_the_admin_api_is_not_reachable_through_the_proxy(site: Site, path: str) -> None:
    url = httpx.URL(site.catalogue_proxy.https, raw_path=path.encode())
    with httpx.Client(verify=client_tls(site.catalogue_proxy.root, setting="test")) as client:
        answer = client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    # the public listener the proxy forwards to has no admin routes at all
    # (CATALOGUE_ADMIN_LISTEN); on the admin socket the route is there, behind the token
    assert httpx.post(f"{site.catalogue_upstream}/v1/admin/harvest").status_code == 404
    with _admin(site.admin_socket) as admin:
        assert admin.post("/v1/admin/harvest").status_code == 401


def _headers(proxy: Proxy, path: str) -> httpx.Headers:
    answer = httpx.get(proxy.https + path, verify=client_tls(proxy.root, setting="test"))
    assert answer.status_code == 200
    return answer.headers


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("catalogue", "/"),
        ("catalogue", "/v1/search"),
        ("node", "/.well-known/biobank-node"),
        ("catalogue", "/docs"),  # the program's own CSP for Swagger UI, not the proxy's
        ("node", "/docs/assets/init.js"),
    ],
)
def test_hsts_and_the_security_headers_are_present(site: Site, role: str, path: str) -> None:
    headers = _headers(site.node_proxy if role == "node" else site.catalogue_proxy, path)
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    csp = headers.get_list("content-security-policy")
    assert len(csp) == 1  # one policy (the proxy's replaces the app's), not two
    assert "frame-ancestors 'none'" in csp[0]
    assert "object-src 'none'" in csp[0] or "default-src 'none'" in csp[0]
    if path.startswith("/docs"):  # Swagger UI runs: scripts from the server itself
        assert "script-src 'self'" in csp[0] and "style-src 'self' 'unsafe-inline'" in csp[0]
    assert "server" not in headers


def _log_line(site: Site, marker: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in site.catalogue_log.read_text(encoding="utf-8", errors="replace").splitlines():
            if marker in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {marker}")


def _client_from(address: str, verify: object = True) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address, verify=verify)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, timeout=30)


def test_the_catalogue_sees_the_real_client_address_through_the_proxy(site: Site) -> None:
    marker = f"/probe-{uuid.uuid4().hex}"
    verify = client_tls(site.catalogue_proxy.root, setting="test")
    with _client_from(OTHER_CLIENT, verify) as client:
        # a forged X-Forwarded-For from the client is not passed on by the proxy
        client.get(site.catalogue_proxy.https + marker, headers={"X-Forwarded-For": "203.0.113.9"})
    line = _log_line(site, marker)
    assert line.split(" - ")[0].rsplit(":", 1)[0].endswith(OTHER_CLIENT), line
    assert "203.0.113.9" not in line


def test_the_catalogue_believes_forwarded_headers_only_from_loopback_proxies(site: Site) -> None:
    marker = f"/probe-{uuid.uuid4().hex}"
    with _client_from(OTHER_CLIENT) as client:  # straight to uvicorn, not from 127.0.0.1
        client.get(site.catalogue_upstream + marker, headers={"X-Forwarded-For": "203.0.113.9"})
    line = _log_line(site, marker)
    assert OTHER_CLIENT in line.split(" - ")[0], line
    assert "203.0.113.9" not in line


@pytest.mark.browser
def test_the_web_page_works_under_the_proxy_csp(site: Site, chromium_browser: Any) -> None:
    """The page through Caddy, with the proxy's headers: no CSP violation, the search runs.
    (The browser is told to accept the test CA's certificate: this test is about the CSP.)"""
    context = chromium_browser.new_context(ignore_https_errors=True, locale="en-GB")
    try:
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda msg: messages.append(msg.text))
        page.on("pageerror", lambda exc: messages.append(str(exc)))
        answer = page.goto(site.catalogue_proxy.https + "/")
        assert answer is not None
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        page.locator("#total").wait_for()
        page.wait_for_function("document.querySelector('#total').innerText.includes('samples')")
        assert [m for m in messages if "Content Security Policy" in m or "Refused" in m] == []
        assert "samples match" in page.locator("#total").inner_text()
    finally:
        context.close()

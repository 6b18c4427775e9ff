"""Issue 16 items 7-9 against real servers on loopback: a small real federation (two nodes and
the catalogue), probed by hand and fuzzed by schemathesis from both OpenAPI documents."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from federation.build import Federation, build_federation

ST_HOOKS = Path(__file__).with_name("st_hooks.py")
BIG = str(2**63)
ORIGIN_DE = "node.biobanken-de-demo.example/biobank-node"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("fed")
    with build_federation(work, ("DE", "DK"), samples=300, seed=16) as federation:
        yield federation


def _token(fed: Federation) -> str:
    token = fed.catalogue.settings.admin_token
    assert token
    return token


def _assert_problem(resp: httpx.Response, status: int, param: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM, resp.headers
    body = resp.json()
    assert body["status"] == status
    if param is not None:
        assert param in [p["name"] for p in body["invalid_params"]], body


# -- item 7: no 500s --------------------------------------------------------------------------


def test_huge_start_on_entries_is_a_400_problem_naming_start(fed: Federation) -> None:
    urls = [
        f"{fed.nodes[0].url}/v1/log/entries",
        f"{fed.url}/v1/log/entries",
        f"{fed.url}/v1/nodes/{ORIGIN_DE}/log/entries",
    ]
    for url in urls:
        _assert_problem(httpx.get(url, params={"start": BIG}), 400, "start")
    for name in ("index", "size"):
        params = {"index": "0", "size": "1", name: BIG}
        _assert_problem(httpx.get(f"{fed.url}/v1/log/proof/inclusion", params=params), 400, name)


def test_enrol_url_of_100_kb_is_a_4xx_problem(fed: Federation) -> None:
    body = {"url": "http://" + "a" * 100_000 + ".example", "key": "x"}
    headers = {"Authorization": f"Bearer {_token(fed)}"}
    resp = httpx.post(f"{fed.url}/v1/admin/nodes", json=body, headers=headers)
    if resp.status_code == 413:  # a cap on admin request bodies answers first (item 5)
        _assert_problem(resp, 413)
    else:
        _assert_problem(resp, 400, "url")


@pytest.mark.parametrize(
    "url", ["http://" + "a" * 2100, "http://[bad", "http://node.example:99999/", "ftp://x", "x"]
)
def test_enrol_of_a_malformed_url_is_a_400_problem_naming_url(fed: Federation, url: str) -> None:
    headers = {"Authorization": f"Bearer {_token(fed)}"}
    resp = httpx.post(f"{fed.url}/v1/admin/nodes", json={"url": url, "key": "x"}, headers=headers)
    _assert_problem(resp, 400, "url")


def test_beacon_body_nested_too_deep_is_a_400_not_a_500(fed: Federation) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"query": {"filters": ' + deep + b"}}"):
        resp = httpx.post(
            f"{fed.url}/beacon/v2/biosamples",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        if resp.status_code == 413:  # a body cap (item 5) may answer first
            continue
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["errorCode"] == 400  # the Beacon error format


# -- item 8: one error convention -------------------------------------------------------------


def test_node_validation_error_is_400_problem_naming_the_parameter(fed: Federation) -> None:
    node = fed.nodes[0].url
    _assert_problem(httpx.get(f"{node}/v1/log/entries", params={"start": "x"}), 400, "start")
    _assert_problem(httpx.get(f"{node}/v1/log/entries", params={"limit": "0"}), 400, "limit")
    _assert_problem(httpx.get(f"{node}/v1/log/proof/inclusion"), 400, "index")
    _assert_problem(httpx.get(f"{fed.url}/v1/log/entries", params={"start": "-1"}), 400, "start")
    inclusion = f"{node}/v1/log/proof/inclusion"
    _assert_problem(httpx.get(inclusion, params={"index": 5, "size": 3}), 400, "index")
    _assert_problem(httpx.get(inclusion, params={"index": 0, "size": 10**9}), 400, "size")
    consistency = f"{node}/v1/log/proof/consistency"
    _assert_problem(httpx.get(consistency, params={"from": 5, "to": 3}), 400, "from")
    _assert_problem(httpx.get(consistency, params={"from": 1, "to": 10**9}), 400, "to")


def test_wrong_method_is_405_with_allow_listing_every_method(fed: Federation) -> None:
    resp = httpx.post(f"{fed.nodes[0].url}/v1/log/checkpoint")
    _assert_problem(resp, 405)
    assert resp.headers["allow"] == "GET"
    resp = httpx.put(f"{fed.url}/beacon/v2/biosamples")
    _assert_problem(resp, 405)
    assert resp.headers["allow"] == "GET, POST"


def test_openapi_documents_problem_json_and_no_422(fed: Federation) -> None:
    for base in (fed.nodes[0].url, fed.url):
        doc = httpx.get(f"{base}/openapi.json").json()
        assert "Problem" in doc["components"]["schemas"]
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                assert "422" not in op["responses"], (method, path)
                if op.get("parameters"):
                    assert PROBLEM in op["responses"]["400"]["content"], (method, path)
    node_doc = httpx.get(f"{fed.nodes[0].url}/openapi.json").json()
    checkpoint = node_doc["paths"]["/v1/log/checkpoint"]["get"]["responses"]
    assert list(checkpoint["200"]["content"]) == ["text/plain"]
    assert {"404", "503"} <= set(checkpoint)
    metrics = node_doc["paths"]["/metrics"]["get"]["responses"]
    assert list(metrics["200"]["content"]) == ["text/plain"]


def _schemathesis(base: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """schemathesis over ``base``'s OpenAPI document with every check but three: "a request
    the schema allows is accepted" (a proof beyond the signed tree is rightly refused) and
    "a request it forbids is refused" (Beacon's GET ``filters=`` skips empty items, as Beacon
    clients expect); ``no_internal_error`` replaces "no 5xx" (a documented 502 is an answer).
    Response conformance (status, media type, schema, headers, 405 ``Allow``) all hold."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.st_hooks", "NO_COLOR": "1"}
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance,negative_data_rejection,not_a_server_error",
        "--request-timeout",
        "30",
        "--max-examples",
        "25",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "16",
        "--suppress-health-check",
        "all",
        *extra,
    ]
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=240)


def _report(done: subprocess.CompletedProcess[str]) -> str:
    """Schemathesis's failures and errors first (its output ends with long warnings)."""
    out = done.stdout
    cut = min((i for i in (out.find("= ERRORS ="), out.find("= FAILURES =")) if i >= 0), default=0)
    return out[cut : cut + 8000] + done.stderr[-2000:]


@pytest.mark.slow
def test_schemathesis_node_api_has_no_server_errors_or_schema_mismatches(
    fed: Federation,
) -> None:
    started = time.monotonic()
    done = _schemathesis(fed.nodes[0].url)
    assert done.returncode == 0, _report(done)
    assert "no_internal_error" in done.stdout or "passed" in done.stdout
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_schemathesis_catalogue_api_has_no_server_errors_or_schema_mismatches(
    fed: Federation,
) -> None:
    started = time.monotonic()
    # with the admin token: the admin routes are fuzzed past authorisation too (harvest is
    # left out: it takes no input, and runs a whole harvest per call)
    done = _schemathesis(
        fed.url,
        "--header",
        f"Authorization: Bearer {_token(fed)}",
        "--exclude-path",
        "/v1/admin/harvest",
    )
    assert done.returncode == 0, _report(done)
    assert time.monotonic() - started < 100


# -- item 9: headers and small things ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_admin_token_needs_the_bearer_scheme_in_any_case(fed: Federation, scheme: str) -> None:
    url = f"{fed.url}/v1/admin/nodes/no.such.origin/clear"
    resp = httpx.post(url, headers={"Authorization": f"{scheme} {_token(fed)}"})
    _assert_problem(resp, 404)  # past authorisation: the origin is unknown


@pytest.mark.parametrize(
    "header", ["{token}", "Basic {token}", "Bearer", "Bearer {token} x", "{token} x"]
)
def test_admin_refuses_a_bare_token_or_another_scheme(fed: Federation, header: str) -> None:
    headers = {"Authorization": header.format(token=_token(fed))}
    resp = httpx.post(f"{fed.url}/v1/admin/nodes/no.such.origin/clear", headers=headers)
    _assert_problem(resp, 401)
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", [" " * 20, "\t\n  ", " padded-token-0123456789abcdef "])
def test_whitespace_admin_token_refused_at_start(token: str) -> None:
    from catalogue.settings import Settings

    with pytest.raises(ValueError, match="CATALOGUE_ADMIN_TOKEN"):
        Settings(admin_token=token)


def test_trailing_slash_does_not_redirect_or_echo_the_host(fed: Federation) -> None:
    for url in (f"{fed.url}/v1/search/", f"{fed.nodes[0].url}/v1/log/checkpoint/"):
        resp = httpx.get(url, headers={"Host": "evil.example"})
        _assert_problem(resp, 404)
        assert "location" not in resp.headers
        assert "evil.example" not in resp.text


def test_api_responses_carry_nosniff_and_cache_control(fed: Federation) -> None:
    node = fed.nodes[0].url
    size = int(httpx.get(f"{node}/v1/log/checkpoint").text.splitlines()[1])
    assert size > 2
    cases = [
        (f"{node}/v1/log/checkpoint", {}, "public, max-age=10"),
        (f"{node}/v1/log/entries", {"start": 0, "limit": 2}, "public, max-age=86400, immutable"),
        (f"{node}/v1/log/entries", {"start": size - 1}, "no-cache"),  # the last page grows
        (f"{fed.url}/v1/log/checkpoint", {}, "public, max-age=10"),
        (f"{fed.url}/v1/nodes/{ORIGIN_DE}/log/checkpoint", {}, "public, max-age=10"),
        (
            f"{fed.url}/v1/nodes/{ORIGIN_DE}/log/entries",
            {"start": 0, "limit": 2},
            "public, max-age=86400, immutable",
        ),
        (f"{fed.url}/v1/nodes/{ORIGIN_DE}/log/entries", {"start": 0}, "no-cache"),
        (f"{fed.url}/v1/search", {}, "public, max-age=10"),
        (f"{fed.url}/v1/nodes", {}, "no-cache"),
        (f"{fed.url}/v1/log/entries", {"start": BIG}, "no-store"),  # an error
    ]
    for url, params, cache in cases:
        resp = httpx.get(url, params=params)
        assert resp.headers["x-content-type-options"] == "nosniff", url
        assert resp.headers["cache-control"] == cache, (url, params)
    admin = httpx.post(f"{fed.url}/v1/admin/harvest")
    assert admin.headers["cache-control"] == "no-store"
    assert admin.headers["x-content-type-options"] == "nosniff"


def test_public_read_api_allows_any_origin_without_credentials(fed: Federation) -> None:
    resp = httpx.get(f"{fed.url}/v1/search", headers={"Origin": "https://elsewhere.example"})
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    # a cross-origin page may not send the admin token: the preflight refuses Authorization
    preflight = httpx.options(
        f"{fed.url}/v1/admin/harvest",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 400
    assert "POST" not in preflight.headers.get("access-control-allow-methods", "")


def test_docs_have_a_csp_and_no_third_party_scripts(fed: Federation) -> None:
    for base in (fed.url, fed.nodes[0].url):
        page = httpx.get(f"{base}/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp
        assert "http" not in page.text  # every asset from this server, none from a CDN
        assert "<script>" not in page.text  # no inline script (the CSP would block it)
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
            resp = httpx.get(f"{base}/docs/assets/{asset}")
            assert resp.status_code == 200 and len(resp.content) > 100, asset
        assert httpx.get(f"{base}/redoc").status_code == 404


def test_public_status_last_error_has_no_addresses(fed: Federation) -> None:
    from catalogue.status import public_error

    raw = (
        "GET http://10.1.2.3:8443/v1/log/checkpoint: ConnectError: [Errno 111] "
        "Connect call failed ('10.1.2.3', 8443); also db.internal.example:5432 and [fd00::1]:80"
    )
    shown = public_error(raw)
    assert shown is not None
    for secret in ("10.1.2.3", "8443", "db.internal.example", "5432", "fd00::1"):
        assert secret not in shown
    assert "/v1/log/checkpoint" in shown and "ConnectError" in shown
    # and the API shows it so: a node made unreachable fails its next harvest
    with fed.catalogue.engine.begin() as conn:
        from sqlalchemy import update

        from catalogue.models import nodes

        conn.execute(update(nodes).where(nodes.c.origin == ORIGIN_DE).values(last_error=raw))
    try:
        listed = httpx.get(f"{fed.url}/v1/nodes").json()["nodes"]
        error = next(n["last_error"] for n in listed if n["origin"] == ORIGIN_DE)
        assert error == shown
        detail = httpx.get(f"{fed.url}/v1/nodes/{ORIGIN_DE}").json()
        assert detail["last_error"] == shown
    finally:
        with fed.catalogue.engine.begin() as conn:
            conn.execute(update(nodes).where(nodes.c.origin == ORIGIN_DE).values(last_error=None))


def test_repeated_parameters_refused_the_same_way_everywhere(fed: Federation) -> None:
    node = fed.nodes[0].url
    for url, name in (
        (f"{node}/v1/log/entries?start=0&start=1", "start"),
        (f"{fed.url}/v1/log/entries?limit=1&limit=2", "limit"),
        (f"{fed.url}/v1/nodes/{ORIGIN_DE}/log/entries?start=0&start=1", "start"),
        (f"{fed.url}/v1/search?age_max=40&age_max=50", "age_max"),
    ):
        resp = httpx.get(url)
        _assert_problem(resp, 400, name)
        reasons = [p["reason"] for p in resp.json()["invalid_params"] if p["name"] == name]
        assert reasons == ["given more than once"], (url, reasons)
    # a parameter declared repeatable stays repeatable
    assert httpx.get(f"{fed.url}/beacon/v2/biosamples?filters=a&filters=b").status_code != 500

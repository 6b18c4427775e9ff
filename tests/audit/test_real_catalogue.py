"""The auditor against the real catalogue (catalogue.app) harvesting real nodes on loopback.

The nodes publish sample groups (exact and bounded) and the catalogue answers every count as
an interval. Honest, it passes every check (also from a bundle, also with --node-direct);
behind a `Liar` that rewrites one kind of response, each lie is caught by its named check.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from audit.cli import app as audit_app
from federation import LiveServer, build_federation, live_server
from tests.audit.helpers import audit, check, failed
from tests.audit.liar import Liar, edit_page, mirror_path


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, Liar, list[str]]]:
    """Two real nodes (1000 synthetic samples each, published as sample groups) harvested by a
    real catalogue behind a Liar."""
    work = tmp_path_factory.mktemp("real-federation")
    with contextlib.ExitStack() as stack:
        fed = stack.enter_context(
            build_federation(work, ("DE", "IT"), samples=1000, seed=11, serve_catalogue=False)
        )
        liar = Liar(fed.catalogue.app)
        server = stack.enter_context(live_server(liar))
        yield server, liar, sorted(o.origin for o in fed.outcomes)


@pytest.fixture
def real(federation: tuple[LiveServer, Liar, list[str]]) -> Iterator[tuple[str, Liar, str]]:
    server, liar, origins = federation
    liar.lies.clear()
    yield server.url, liar, origins[0]
    liar.lies.clear()


def test_real_catalogue_passes_every_check_with_node_direct(
    real: tuple[str, Liar, str], tmp_path: Path
) -> None:
    url, _liar, _origin = real
    code, report = audit("--catalogue", url, "--node-direct", "--state", tmp_path / "s.json")
    assert code == 0, failed(report)
    assert check(report, "content-schema")["checked"] > 20
    assert check(report, "search-totals")["checked"] > 20
    # the real catalogue's answer is interval sums, and some of them only bounds
    body = httpx.get(f"{url}/v1/search").json()
    counts = [i["count"] for i in body["facets"]["sex"]] + [body["total"], body["donors"]]
    assert all(set(c) == {"min", "max"} for c in counts)
    assert any(c["min"] < c["max"] for c in counts)
    assert check(report, "node-direct")["status"] == "ok"
    assert (tmp_path / "s.json").exists()


def test_real_catalogue_bundle_verifies_offline(
    real: tuple[str, Liar, str], tmp_path: Path
) -> None:
    url, _liar, _origin = real
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(audit_app, ["fetch", "--catalogue", url, str(bundle)])
    assert result.exit_code == 0, result.output
    code, report = audit("--bundle", bundle)
    assert code == 0, failed(report)
    # a bundle edited after the fact fails like a lying catalogue
    lines = (bundle / "nodes" / "0.jsonl").read_text().splitlines()
    del lines[10]
    (bundle / "nodes" / "0.jsonl").write_text("\n".join(lines) + "\n")
    code, report = audit("--bundle", bundle)
    assert code == 1 and "node-tree" in failed(report)


def test_real_catalogue_drops_an_entry_from_a_mirror(real: tuple[str, Liar, str]) -> None:
    url, liar, origin = real
    liar.lie(
        mirror_path(origin, "entries"),
        edit_page(lambda start, es: es if start else es[:20] + es[21:]),
    )
    code, report = audit("--catalogue", url)
    assert code == 1
    assert any(
        f.startswith(f"node {origin} leaf 20: IndexOrderError") for f in failed(report)["node-tree"]
    )


def test_real_catalogue_alters_a_content(real: tuple[str, Liar, str]) -> None:
    url, liar, origin = real
    altered: list[int] = []

    def alter(start: int, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if start == 0:
            i = next(i for i, e in enumerate(entries) if i > 2 and e["content"] is not None)
            entries[i]["content"]["nonce"] = "0" * 32
            altered.append(i)
        return entries

    liar.lie(mirror_path(origin, "entries"), edit_page(alter))
    code, report = audit("--catalogue", url)
    assert code == 1
    assert failed(report)["content-digest"][0].startswith(
        f"node {origin} leaf {altered[0]}: content of"
    )


def test_real_catalogue_reports_a_search_count_that_differs(real: tuple[str, Liar, str]) -> None:
    url, liar, _origin = real
    shown: list[dict[str, Any]] = []

    def narrow(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        item = data["facets"]["sex"][0]
        shown.append(dict(item["count"]))
        item["count"]["max"] -= 1  # one sample fewer than the logs allow
        return json.dumps(data).encode()

    liar.lie(r"/v1/search", narrow)
    code, report = audit("--catalogue", url)
    assert code == 1
    assert list(failed(report)) == ["search-totals"]
    lo, hi = shown[0]["min"], shown[0]["max"]
    [finding] = failed(report)["search-totals"]
    assert finding.startswith("search facets.sex ")
    assert finding.endswith(f"search reports [{lo}, {hi - 1}], the logs give [{lo}, {hi}]")


def test_real_catalogue_counts_a_bounded_group_as_exact(real: tuple[str, Liar, str]) -> None:
    """A count the logs give only as an interval, shown as its upper bound: refused."""
    url, liar, _origin = real

    def pin(query: dict[str, str], body: bytes) -> bytes:
        if query:
            return body  # the lie is in the unfiltered answer only
        data = json.loads(body)
        data["total"]["min"] = data["total"]["max"]
        return json.dumps(data).encode()

    honest = httpx.get(f"{url}/v1/search").json()["total"]
    liar.lie(r"/v1/search", pin)
    code, report = audit("--catalogue", url)
    assert code == 1
    assert failed(report) == {
        "search-totals": [
            f"search total: search reports [{honest['max']}, {honest['max']}], "
            f"the logs give [{honest['min']}, {honest['max']}]"
        ]
    }

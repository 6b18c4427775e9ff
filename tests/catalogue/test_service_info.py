"""GA4GH service-info on a real catalogue server (/service-info and the Beacon's), valid
against the shipped service-info schema."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator

from catalogue.app import create_app
from federation.servers import live_server
from tests.catalogue.conftest import make_settings
from tests.support import external_data

SCHEMA = "ga4gh-beacon-v2-framework/framework/json/responses/ga4gh-service-info-1-0-0-schema.json"


def test_catalogue_service_info_is_valid_and_names_the_service(tmp_path: Path) -> None:
    schema = json.loads((external_data() / SCHEMA).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    settings = make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home")
    with live_server(create_app(settings)) as server:
        own = httpx.get(f"{server.url}/service-info").json()
        beacon = httpx.get(f"{server.url}/beacon/v2/service-info").json()
    for body in (own, beacon):
        assert [e.message for e in validator.iter_errors(body)] == []
        assert body["id"] == "test.catalogue.biobank-catalogue"  # origin, reversed
        assert body["organization"]["url"] == f"{server.url}/"
        assert body["version"] == "1.0.0"
    assert own["type"] == {"group": "org.ga4gh", "artifact": "biobank-catalogue", "version": "1"}
    assert beacon["type"] == {"group": "org.ga4gh", "artifact": "beacon", "version": "v2.0.0"}
    assert "contactUrl" not in own  # none configured
    # a document without its required members is refused by the same validator
    assert not validator.is_valid({k: v for k, v in own.items() if k != "organization"})


def test_catalogue_service_info_names_the_configured_organisation_and_contact(
    tmp_path: Path,
) -> None:
    schema = json.loads((external_data() / SCHEMA).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    settings = make_settings(
        f"sqlite:///{tmp_path / 'c.db'}",
        tmp_path / "home",
        organisation="BBMRI-ERIC test consortium",
        contact="catalogue@bbmri.example",
    )
    with live_server(create_app(settings)) as server:
        own = httpx.get(f"{server.url}/service-info").json()
        beacon = httpx.get(f"{server.url}/beacon/v2/service-info").json()
    for body in (own, beacon):
        assert [e.message for e in validator.iter_errors(body)] == []
        assert body["organization"]["name"] == "BBMRI-ERIC test consortium"
        assert body["contactUrl"] == "mailto:catalogue@bbmri.example"

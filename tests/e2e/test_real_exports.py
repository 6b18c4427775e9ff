"""End to end with a real Directory EMX2 export: import (the CLI, no mapping), serve,
harvest, search; every count is checked against a tally computed here from the raw files."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from catalogue.app import create_app
from catalogue.cli import app as catalogue_cli
from federation.servers import live_server
from node.app import create_app as create_node_app
from node.cli import app as node_cli
from node.settings import NodeSettings
from tests.catalogue.conftest import make_settings
from tests.node.node_support import ORIGIN, make_home
from tests.node.test_directory import DEMO, national_2018, national_export


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("withdrawn", "").lower() != "true"]


def _tally(external: Path) -> dict[str, Any]:
    """What the raw demo export holds: biobanks, collections per biobank and country."""
    biobanks = {r["id"]: r for r in _rows(external / DEMO / "Biobanks.csv")}
    collections = {
        r["id"]: r for r in _rows(external / DEMO / "Collections.csv") if r["biobank"] in biobanks
    }
    per_biobank: dict[str, set[str]] = defaultdict(set)
    for id, row in collections.items():
        per_biobank[row["biobank"]].add(id)
    return {
        "biobanks": set(biobanks),
        "collections": set(collections),
        "per_biobank": per_biobank,
        "per_country": Counter(biobanks[r["biobank"]]["country"] for r in collections.values()),
        "size": {id: int(r["size"]) for id, r in collections.items() if r["size"]},
        "subjects": {id: int(r["number_of_donors"]) for id, r in collections.items()},
    }


def _search(client: httpx.Client, **params: Any) -> dict[str, Any]:
    params.setdefault("page_size", 100)
    response = client.get("/v1/search", params=params)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_a_national_directory_export_imports_serves_and_is_found(
    tmp_path: Path, external: Path
) -> None:
    tally = _tally(external)
    assert len(tally["biobanks"]) == 3 and len(tally["collections"]) == 3  # the demo's size
    home, vkey = make_home(tmp_path, records=False)
    files = national_export(external, tmp_path)
    runner = CliRunner()
    imported = runner.invoke(node_cli, ["import", "--home", str(home.path), *map(str, files)])
    assert imported.exit_code == 0, imported.output
    assert imported.output.startswith("role: national_Biobanks.csv: read as Directory biobank")
    published = f"published {{'biobank': {len(tally['biobanks'])}, "
    assert published + f"'collection': {len(tally['collections'])}}}" in imported.output
    again = runner.invoke(node_cli, ["import", "--home", str(home.path), *map(str, files)])
    records = len(tally["biobanks"]) + len(tally["collections"])
    assert again.exit_code == 0
    assert f"log size {records} -> {records}" in " ".join(again.output.split())

    settings = make_settings(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "cat-home")
    env = {
        "CATALOGUE_DATABASE_URL": settings.database_url,
        "CATALOGUE_HOME": str(settings.home),
        "CATALOGUE_ORIGIN": settings.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }
    with live_server(create_node_app(NodeSettings(home=home.path))) as node:
        enrolled = runner.invoke(catalogue_cli, ["enrol", node.url, "--key", vkey], env=env)
        assert enrolled.exit_code == 0, enrolled.output
        harvested = runner.invoke(catalogue_cli, ["harvest"], env=env)
        assert harvested.exit_code == 0, harvested.output
        assert f"{ORIGIN}: ok, size {records} (+{records})" in harvested.output

    with (
        live_server(create_app(settings)) as cat,
        httpx.Client(base_url=cat.url, timeout=30) as client,
    ):
        everything = _search(client)
        found = {c["id"]: c for c in everything["collections"]["items"]}
        assert set(found) == tally["collections"]
        assert everything["collections"]["total"] == len(tally["collections"])
        for id, card in found.items():
            assert card["declared_size"] == tally["size"].get(id)
            assert card["biobank"] in tally["biobanks"] and card["contact"]["email"]
        # biobanks with collections are found (those without are the catalogue's concern)
        biobanks = {b["id"]: b for b in everything["biobanks"]["items"]}
        assert set(tally["per_biobank"]) <= set(biobanks) <= tally["biobanks"]
        assert all(b["name"] and b["contact"]["email"] for b in biobanks.values())
        for biobank, ids in tally["per_biobank"].items():
            one = _search(client, biobank=biobank)
            assert {c["id"] for c in one["collections"]["items"]} == ids
        for country, count in tally["per_country"].items():
            by_country = _search(client, country=country)
            assert by_country["collections"]["total"] == count


def test_the_2018_directory_as_a_national_export_is_found_country_by_country(
    tmp_path: Path, external: Path
) -> None:
    """About 550 biobanks and 1,500 collections: every country's collection count in
    search is the raw files' count (the one biobank without a contact is skipped)."""
    home, vkey = make_home(tmp_path, records=False)
    files, _ = national_2018(external, tmp_path)
    biobanks = {r["id"]: r for r in _rows(files[0]) if r["contact_person"]}
    iso = {"UK": "GB", "EL": "GR"}  # the Directory's EU country codes, as ISO 3166
    per_country = Counter(
        iso.get(c, c) for c in (biobanks[r["biobanks"]]["country"] for r in _rows(files[1]))
    )
    runner = CliRunner()
    args = ["import", "--home", str(home.path), "--skip-invalid"]
    roles = [f"{files[0]}:biobanks", f"{files[1]}:collections", f"{files[2]}:persons"]
    imported = runner.invoke(node_cli, [*args, *roles])
    assert imported.exit_code == 1  # the skipped biobank row is reported
    assert "role:" not in imported.output
    settings = make_settings(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "cat-home")
    env = {
        "CATALOGUE_DATABASE_URL": settings.database_url,
        "CATALOGUE_HOME": str(settings.home),
        "CATALOGUE_ORIGIN": settings.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }
    with live_server(create_node_app(NodeSettings(home=home.path))) as node:
        assert (
            runner.invoke(catalogue_cli, ["enrol", node.url, "--key", vkey], env=env).exit_code == 0
        )
        harvested = runner.invoke(catalogue_cli, ["harvest"], env=env)
        assert harvested.exit_code == 0, harvested.output
        size = len(biobanks) + sum(per_country.values())
        assert f"{ORIGIN}: ok, size {size} (+{size})" in harvested.output
    with (
        live_server(create_app(settings)) as cat,
        httpx.Client(base_url=cat.url, timeout=30) as client,
    ):
        assert _search(client)["collections"]["total"] == sum(per_country.values()) == 1488
        for country, count in sorted(per_country.items()):
            assert _search(client, country=country)["collections"]["total"] == count, country


def test_a_beacon_cohort_after_its_directory_records_is_found_with_its_counts(
    tmp_path: Path, external: Path
) -> None:
    """A new operator's path with real files: the Directory records (no mapping), then
    ``mapping init`` on the EGA Beacon v2 cohort, its biobank and collection filled in,
    ``preview``, ``import``, serve, harvest, search: the sample total and the counts by
    sex are those tallied here from the raw biosamples and individuals."""
    import json

    from node.importing.sources.beacon import SEX

    ega = external / "ega-beacon2-ri-tools-v2/output_docs/all-fields"
    samples = json.loads((ega / "biosamples.json").read_text(encoding="utf-8"))
    people = {
        p["id"]: p for p in json.loads((ega / "individuals.json").read_text(encoding="utf-8"))
    }
    by_sex = Counter(SEX[people[s["individualId"]]["sex"]["id"]] for s in samples)
    home, vkey = make_home(tmp_path, k=2, records=False)
    runner = CliRunner()
    files = national_export(external, tmp_path)
    assert (
        runner.invoke(node_cli, ["import", "--home", str(home.path), *map(str, files)]).exit_code
        == 0
    )
    mapping = tmp_path / "beacon.toml"
    beacon = [str(ega / "biosamples.json"), str(ega / "individuals.json")]
    made = runner.invoke(node_cli, ["mapping", "init", *beacon, "-o", str(mapping)])
    assert made.exit_code == 0 and "2 thing(s) to decide" in made.output, made.output
    biobank = "bbmri-eric:ID:DE_biobank1"
    text = mapping.read_text(encoding="utf-8")
    text = text.replace('# biobank = "bbmri-eric:ID:XX_BIOBANK"', f'biobank = "{biobank}"')
    text = text.replace(
        '# collection = "bbmri-eric:ID:XX_BIOBANK:collection:beacon"',
        f'collection = "{biobank}:collection:coll1"',
    )
    mapping.write_text(text, encoding="utf-8")
    common = ["--home", str(home.path), "--mapping", str(mapping)]
    shown = runner.invoke(node_cli, ["preview", *beacon, *common, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["samples"] == len(samples)
    imported = runner.invoke(node_cli, ["import", *beacon, *common, "--json"])
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert summary["privacy"]["held_back"] == {} and summary["pending"]["waiting"] is False

    settings = make_settings(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "cat-home")
    env = {
        "CATALOGUE_DATABASE_URL": settings.database_url,
        "CATALOGUE_HOME": str(settings.home),
        "CATALOGUE_ORIGIN": settings.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }
    with live_server(create_node_app(NodeSettings(home=home.path))) as node:
        assert (
            runner.invoke(catalogue_cli, ["enrol", node.url, "--key", vkey], env=env).exit_code == 0
        )
        harvested = runner.invoke(catalogue_cli, ["harvest"], env=env)
        assert harvested.exit_code == 0, harvested.output
    with (
        live_server(create_app(settings)) as cat,
        httpx.Client(base_url=cat.url, timeout=30) as client,
    ):
        everything = _search(client)
        assert everything["total"] == {"min": len(samples), "max": len(samples)}
        for sex, count in by_sex.items():
            assert _search(client, sex=sex)["total"] == {"min": count, "max": count}, sex
        cards = {c["id"]: c for c in _search(client, biobank=biobank)["collections"]["items"]}
        card = cards[f"{biobank}:collection:coll1"]
        assert card["samples"] == {"min": len(samples), "max": len(samples)}
        assert card["name"] and card["contact"]["email"] and card["biobank_published"]

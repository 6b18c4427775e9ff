"""Helpers for node tests: a fresh node home, CSV exports and their mapping."""

from __future__ import annotations

import base64
import csv
from pathlib import Path
from typing import Any

import httpx

from node.home import Home, NodeConfig, init_home
from protocol.canonical import digest
from protocol.entries import parse_leaf
from protocol.keys import KeyHistory
from protocol.merkle import leaf_hash
from protocol.note import Checkpoint
from tests.protocol.reference import root_from_leaf_hashes

ORIGIN = "test.example/biobank-node"
BIOBANK = "bbmri-eric:ID:DE_TEST"
COLLECTION = "bbmri-eric:ID:DE_TEST:collection:main"
#: log entries make_home publishes before a test starts (the biobank and its collection)
RECORD_ENTRIES = 2
HEADER = ["sample_id", "patient", "material", "temp", "gender", "age", "drawn", "icd10"]

MAPPING = f"""
kind = "sample"
list_separator = ";"

[fixed]
biobank = "{BIOBANK}"
collection = "{COLLECTION}"

[columns]
local_id = "sample_id"
donor_id = "patient"
sample_type = "material"
storage_temperature = "temp"
sex = "gender"
age = "age"
date = "drawn"
diagnoses = "icd10"

[values.sample_type]
"Vollblut" = "WholeBlood"

[values.sex]
"w" = "female"
"m" = "male"
"""


def make_home(
    tmp_path: Path, k: int = 2, name: str = "home", records: bool = True
) -> tuple[Home, str]:
    """A new node home with a small-k policy (tests use few donors); returns (home, vkey).

    ``records``: publish the biobank :data:`BIOBANK` and its collection :data:`COLLECTION`
    first (log entries 0 and 1), as an operator does before importing samples that
    reference them (see :func:`publish_records`)."""
    path = tmp_path / name
    vkey = init_home(
        path,
        NodeConfig(
            origin=ORIGIN,
            name="Test node",
            country="DE",
            organisation="Test org",
            contact="node@example.org",
        ),
    )
    (path / "policy.toml").write_text(f"k = {k}\n", encoding="utf-8")
    home = Home.open(path)
    if records:
        publish_records(home)
    return home, vkey


def sample_rows(n: int, start: int = 0, donors: int | None = None) -> list[list[str]]:
    """``n`` rows that all fall in one k-anonymity class (same sex, band, period)."""
    donors = donors or n
    return [
        [
            f"S{i:06d}",
            f"P{i % donors:06d}",
            "Vollblut",
            "-60to-85",
            "w",
            "45",
            "2016-03-01",
            "C50.9",
        ]
        for i in range(start, start + n)
    ]


TEMPERATURES = ("RT", "2to10", "-18to-35", "-60to-85", "LN", "Other")


def spread(rows: list[list[str]], groups: int) -> list[list[str]]:
    """The rows spread over ``groups`` sample groups (storage temperature by row position);
    the privacy classes stay as they are (temperature is no quasi-identifier)."""
    for i, row in enumerate(rows):
        row[3] = TEMPERATURES[i % groups]
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mapping(path: Path, text: str = MAPPING) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fetch_all(client: httpx.Client) -> list[dict[str, Any]]:
    """Every served entry, page by page."""
    entries: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = client.get("/v1/log/entries", params={"start": start}).json()
        entries += page["entries"]
        start = page["next"]
    return entries


def verify_served_log(
    client: httpx.Client, history: KeyHistory, previous_size: int = 0
) -> tuple[Checkpoint, list[dict[str, Any]]]:
    """Check the served log as a third party would: the checkpoint against the key history,
    every leaf canonical and in order, every content against its digest, the root rebuilt.
    Rotate-key leaves are added to ``history`` as they are met."""
    note = client.get("/v1/log/checkpoint").text
    entries = fetch_all(client)
    hashes = []
    for index, item in enumerate(entries):
        leaf = base64.b64decode(item["leaf"])
        entry = parse_leaf(leaf, expected_log=history.origin, expected_index=index)
        if entry["op"] == "rotate-key":
            history.rotate(index=index, key=entry["key"])
        if item["content"] is not None:
            assert entry["op"] == "publish"
            assert digest(item["content"]) == entry["digest"]
        hashes.append(leaf_hash(leaf))
    checkpoint = history.verify(note, previous_size=previous_size)
    assert checkpoint.size == len(entries)
    assert root_from_leaf_hashes(hashes) == checkpoint.root
    return checkpoint, entries


def entry_of(item: dict[str, Any], index: int) -> dict[str, Any]:
    """The parsed leaf of a served entry."""
    return parse_leaf(base64.b64decode(item["leaf"]), expected_log=ORIGIN, expected_index=index)


BIOBANKS_MAPPING = """
kind = "biobank"
[columns]
id = "id"
name = "name"
country = "country"
"contact.email" = "email"
"""

COLLECTIONS_MAPPING = """
kind = "collection"
[columns]
id = "id"
biobank = "biobank"
name = "name"
"""


def write_records(
    folder: Path, biobank: str = BIOBANK, collections: tuple[str, ...] = (COLLECTION,)
) -> list[tuple[Path, Path]]:
    """A biobanks CSV with ``biobank`` and a collections CSV with ``collections``, each
    with its mapping, in ``folder``: [(csv, mapping)], biobanks first."""
    folder.mkdir(parents=True, exist_ok=True)
    bb = write_csv(
        folder / "biobanks.csv",
        [[biobank, f"Biobank {biobank}", "DE", "biobank@example.org"]],
        ["id", "name", "country", "email"],
    )
    colls = write_csv(
        folder / "collections.csv",
        [[c, biobank, f"Collection {c}"] for c in collections],
        ["id", "biobank", "name"],
    )
    return [
        (path, write_mapping(path.with_suffix(".mapping.toml"), text))
        for path, text in ((bb, BIOBANKS_MAPPING), (colls, COLLECTIONS_MAPPING))
    ]


def publish_records(
    home: Home, biobank: str = BIOBANK, collections: tuple[str, ...] = (COLLECTION,)
) -> None:
    """Import (and so publish) a biobank record and its collections' records, from CSV
    files written beside the home, as an operator does before importing samples."""
    from node.importing.importer import run_import
    from node.importing.mapping import Mapping

    folder = home.path.parent / f"{home.path.name}-records"
    for path, mapping in write_records(folder, biobank, collections):
        report = run_import(home, [path], mapping=Mapping.load(mapping))
        assert report.applied and not report.problems, report.problems

"""Helpers for the privacy tests: stage rows, read back what would be published."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from node import privacy
from node.importing import staging
from node.policy import Policy

Row = tuple[object, ...]


def row(
    local_id: str,
    donor: str | None,
    *,
    sex: str | None = "female",
    age: int | None = 45,
    year: int | None = 2016,
    diagnoses: Sequence[tuple[str, str]] = (("ICD-10", "C50.9"),),
    biobank: str = "bb:A",
    collection: str | None = "col:1",
    storage: str | None = "LN",
    use: Sequence[str] = ("DUO:0000042",),
    datasets: Sequence[str] = ("Genomic",),
) -> Row:
    """One staging row in node.importing.staging.INPUT_COLUMNS order."""
    diag = json.dumps([{"system": s, "code": c} for s, c in diagnoses])
    return (
        local_id,
        donor,
        biobank,
        collection,
        "Serum",
        storage,
        sex,
        age,
        year,
        diag,
        json.dumps(list(use)),
        json.dumps(list(datasets)),
        f"test row {local_id}",
    )


def record_fields(row: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """The optional sample-record fields to publish for a staged row after privacy.apply."""
    if row["held_back"]:
        raise ValueError(f"{row['row_location']}: row is held back and must not be published")
    out: dict[str, Any] = {}
    if policy.publishes("sex") and row["sex"] is not None:
        out["sex"] = row["sex"]
    if policy.publishes("storage_temperature") and row["storage_temperature"] is not None:
        out["storage_temperature"] = row["storage_temperature"]
    if policy.publishes("age") and row["age_min"] is not None:
        out["age"] = {"min": row["age_min"], "max": row["age_max"]}
    if policy.publishes("period") and row["period_from"] is not None:
        out["period"] = {"from": row["period_from"], "to": row["period_to"]}
    for name in ("diagnoses", "use_conditions", "dataset_types"):
        values = json.loads(row[name] or "[]")
        if policy.publishes(name) and values:
            out[name] = values
    return out


def stage(rows: Iterable[Row]) -> tuple[sqlite3.Connection, str]:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    table = staging.create(conn)
    conn.executemany(staging.insert_sql(table), list(rows))
    return conn, table


def run(
    rows: Iterable[Row], policy: Policy
) -> tuple[dict[str, dict[str, Any]], privacy.PrivacyReport, dict[str, str | None]]:
    """Apply the policy; return published records by local id, the report, donors by id."""
    conn, table = stage(rows)
    report = privacy.apply(conn, table, policy)
    published: dict[str, dict[str, Any]] = {}
    donors: dict[str, str | None] = {}
    for r in conn.execute(f"SELECT * FROM {table}"):
        donors[r["local_id"]] = r["donor_id"]
        if not r["held_back"]:
            published[r["local_id"]] = {
                "biobank": r["biobank"],
                "collection": r["collection"],
                **record_fields(r, policy),
            }
    conn.close()
    return published, report, donors


def class_key(record: dict[str, Any]) -> str:
    """The quasi-identifier class of a published record, as the public sees it."""
    return json.dumps(
        [
            record.get("sex"),
            record["biobank"],
            record.get("collection"),
            record.get("age"),
            record.get("period"),
            record.get("diagnoses"),
        ],
        sort_keys=True,
    )


def donors_per_class(
    published: dict[str, dict[str, Any]], donors: dict[str, str | None]
) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for local_id, record in published.items():
        donor = donors[local_id]
        out[class_key(record)].add(f"d:{donor}" if donor is not None else f"s:{local_id}")
    return out

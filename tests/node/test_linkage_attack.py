"""Attack (a): a log observer links a donor's samples through the order of entries.

A version-1 node published one record per sample in export order, and exports list each
donor's samples together: "neighbouring entries with the same biobank, collection and sex
are one donor" recovered donors' complete sample sets. Here a real node server publishes
sample groups from a generated export through several imports and consent withdrawals;
an observer reads the served log at every checkpoint, and the node's ground truth (its
holding) says what each publication changed and which samples each group counts.
"""

from __future__ import annotations

import base64
import csv
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from federation.generate import flavour_for, generate
from federation.servers import live_server
from node.app import create_app
from node.home import Home, NodeConfig, init_home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from node.withdraw import erase
from protocol.entries import parse_leaf

K = 10
Key = tuple[str, str, str | None]  # (biobank, collection, sex): what the heuristic compares


def _holding(home: Home) -> dict[str, tuple[str, str | None]]:
    """Ground truth: local id -> (donor, published group) of every sample the node holds."""
    conn = sqlite3.connect(home.db_path)
    try:
        return {
            local: (donor or "s:" + local, group)
            for local, donor, group in conn.execute(
                "SELECT local_id, donor_hash, published_group FROM holding"
            )
        }
    finally:
        conn.close()


def _runs(keys: Iterable[tuple[Key, str]]) -> list[list[str]]:
    """The heuristic: maximal runs of neighbouring entries with the same key."""
    runs: list[list[str]] = []
    last: Key | None = None
    for key, item in keys:
        if runs and key == last:
            runs[-1].append(item)
        else:
            runs.append([item])
        last = key
    return runs


def _recovered(
    runs: list[list[str]], members: dict[str, set[str]], donors: dict[str, set[str]]
) -> list[list[str]]:
    """Donors whose complete sample set is exactly what one run's entries count."""
    sets = {frozenset(s) for s in donors.values()}
    out = []
    for run in runs:
        claimed: set[str] = set()
        for item in run:
            claimed |= members[item]
        if frozenset(claimed) in sets:
            out.append(run)
    return out


def _split_by_donor(rows: list[list[str]], donor_col: int, at: list[int]) -> list[list[list[str]]]:
    """The rows cut into parts after the ``at`` donors (each donor's rows stay together)."""
    donors: list[str] = []
    for row in rows:
        if not donors or donors[-1] != row[donor_col]:
            donors.append(row[donor_col])
    cuts = [set(donors[a:b]) for a, b in zip([0, *at], [*at, len(donors)], strict=True)]
    return [[r for r in rows if r[donor_col] in part] for part in cuts]


def test_group_log_defeats_the_neighbouring_entries_heuristic(tmp_path: Path) -> None:
    export = generate("DE", 3000, 11, tmp_path / "export")
    flavour = flavour_for("DE")
    with export.samples_csv.open(encoding="utf-8", newline="") as fh:
        header, *rows = list(csv.reader(fh, delimiter=flavour.delimiter))
    donor_col = header.index(flavour.columns["donor_id"])
    local_col = header.index(flavour.columns["local_id"])
    n_donors = len({r[donor_col] for r in rows})
    first, few, rest = _split_by_donor(rows, donor_col, [n_donors * 2 // 3, n_donors * 2 // 3 + 3])

    def write(name: str, part: list[list[str]]) -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter=flavour.delimiter, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(part)
        return path

    init_home(
        tmp_path / "home",
        NodeConfig(
            origin=export.origin,
            name=export.node_name,
            country="DE",
            organisation=export.organisation,
            contact=export.contact_email,
        ),
    )
    (tmp_path / "home" / "policy.toml").write_text(f"k = {K}\n", encoding="utf-8")
    home = Home.open(tmp_path / "home")
    for csv_path, mapping_path in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
    ):
        assert run_import(home, [csv_path], mapping=Mapping.load(mapping_path)).applied
    mapping = Mapping.load(export.samples_mapping)
    withdrawn_first = [r[donor_col] for r in first[:40:20]][:2]  # two donors: waits
    later = sorted({r[donor_col] for r in first[100:600]} - set(withdrawn_first))[:K]  # goes
    steps: list[tuple[str, Any]] = [
        ("first", lambda: run_import(home, [write("a.csv", first)], mapping=mapping)),
        ("three donors", lambda: run_import(home, [write("b.csv", few)], mapping=mapping)),
        ("withdraw two", lambda: erase(home, donors=withdrawn_first)),
        (
            "the rest",
            lambda: run_import(home, [write("c.csv", first + few + rest)], mapping=mapping),
        ),
        ("withdraw ten", lambda: erase(home, donors=later)),
    ]

    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):

        def size() -> int:
            return int(client.get("/v1/log/checkpoint").text.splitlines()[1])

        def entries(start: int, stop: int) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            while start < stop:
                page = client.get("/v1/log/entries", params={"start": start}).json()
                for item in page["entries"][: stop - start]:
                    entry = parse_leaf(
                        base64.b64decode(item["leaf"]),
                        expected_log=export.origin,
                        expected_index=start,
                    )
                    out.append(entry | {"content": item["content"]})
                    start += 1
            return out

        seen = size()
        publications = 0
        waited = 0
        for name, step in steps:
            before = _holding(home)
            step()
            after = _holding(home)
            if name == "first":
                v1_truth = after
            now = size()
            published = entries(seen, now)
            seen = now
            # ground truth: the samples whose published group changed, and their donors
            changed = {
                s
                for s in set(before) | set(after)
                if before.get(s, ("", None))[1] != after.get(s, ("", None))[1]
            }
            donors = {(after.get(s) or before[s])[0] for s in changed}
            groups = [e for e in published if e["kind"] == "sample-group"]
            if not groups:
                assert not changed, name
                waited += 1
                continue
            publications += 1
            assert len(donors) >= K, f"{name}: a change set of {len(donors)} donors went out"
            ids = [e["id"] for e in groups]
            assert ids == sorted(ids), f"{name}: entries not in group-id order"
            assert published[-len(groups) :] == groups  # records (if any) come first

            # the heuristic on what the observer saw in this publication
            members: dict[str, set[str]] = defaultdict(set)
            by_donor: dict[str, set[str]] = defaultdict(set)
            for local, (donor, group) in after.items():
                if group is not None:
                    members[group].add(local)
                    by_donor[donor].add(local)
            keyed = [
                ((c["biobank"], c["collection"], c.get("sex")), e["id"])
                for e in groups
                if e["op"] == "publish"
                for c in (e["content"],)
            ]
            exact = [
                run
                for run in _recovered(_runs(keyed), members, by_donor)
                if all(isinstance(_counts(groups, g), int) for g in run)
            ]
            assert exact == [], f"{name}: the heuristic recovered {len(exact)} donors"
            # a run that matches by chance holds only groups of fewer than k donors, which
            # publish bounds: nothing tells the observer whose or how many samples they are
            for run in _recovered(_runs(keyed), members, by_donor):
                assert all(len({after[s][0] for s in members[g]}) < K for g in run)
            if name == "first":
                v1_content = {e["id"]: e["content"] for e in groups}
        assert (publications, waited) == (3, 2)

    # sanity: the same heuristic on a version-1 log of the first import (one entry per
    # published sample, in export order, with its group's attributes) recovers donors:
    # the measure bites
    v1: list[tuple[Key, str]] = []
    for row in first:
        group = v1_truth.get(row[local_col], ("", None))[1]
        if group is not None:
            c = v1_content[group]
            v1.append(((c["biobank"], c["collection"], c.get("sex")), row[local_col]))
    per_sample = {local: {local} for _, local in v1}
    v1_donors: dict[str, set[str]] = defaultdict(set)
    for _, local in v1:
        v1_donors[v1_truth[local][0]].add(local)
    assert len(_recovered(_runs(v1), per_sample, v1_donors)) > 20


def _counts(groups: list[dict[str, Any]], gid: str) -> Any:
    """The published sample count (an int, or a bound object) of group ``gid``."""
    return next(e["content"]["samples"] for e in groups if e["id"] == gid)

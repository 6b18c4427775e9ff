"""Freshness: from the end of ``biobank-node import`` to the change being counted by /v1/search.

On the loaded federation (the bench's nodes, served, and its harvested SQLite catalogue
served in a process of its own, with no scheduled harvest: only the nodes' push can make a
change searchable), each trial writes a small export of NEW samples of NEW donors (rows of
the node's own export as templates, so they join existing privacy classes), runs the real
``biobank-node import`` command on one node and, from the moment that process exits, polls
``/v1/search?country=XX`` until the node's biobanks show a verified checkpoint at least as
large as the log the import produced (the index and that checkpoint are committed in one
transaction, so the counts then include the change). Two change sets, alternately over the
five nodes:

- ``small``: one sample each of k distinct new donors, the smallest change set the privacy
  design lets a node publish (k from the node's policy);
- ``10000``: 10,000 samples, donors renamed consistently (about the export's samples per donor).

The wait of a change set of fewer than k donors at the node is policy, not latency: one extra
trial imports one new donor's sample (it waits: nothing is published), then k-1 more donors';
the time between the two imports is reported apart (``waiting``) and the latency is measured
from the second import as for the others. (k-1 donors at once may already publish: new
donors can change a class's generalisation and so move other donors' samples, which the
change-set rule counts.)
"""

from __future__ import annotations

import csv
import itertools
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

__all__ = ["freshness", "show"]

POLL = 0.02  # seconds between two searches while waiting for a change
TIMEOUT = 120.0  # a change not searchable within this is a failure of the trial


def _node_cli() -> str:
    found = Path(sys.executable).parent / "biobank-node"
    return str(found) if found.exists() else "biobank-node"


class NoTemplate(Exception):  # noqa: N818 - a reason to skip, not an error of the program
    """A node whose log has no exactly counted group to add samples to (tiny sizes)."""


class _Node:
    """One bench node: its home, export folder, country and a supply of template rows."""

    def __init__(self, home: Path, export: Path, country: str) -> None:
        from node.importing import Mapping
        from node.policy import Policy

        self.home, self.export, self.country = home, export, country
        self.mapping_path = export / "samples.mapping.toml"
        mapping = Mapping.load(self.mapping_path)
        self.delimiter = mapping.delimiter or ","
        self.local = mapping.columns["local_id"]
        self.donor = mapping.columns["donor_id"]
        self.k = Policy.load(home / "policy.toml").k
        # templates: rows whose sample is counted in a group published with exact counts (a
        # sample held back would wait; one more in a group published as a bound {"lt": B}
        # may change nothing anyone can see, and then the node rightly publishes nothing)
        with closing(sqlite3.connect(f"file:{home / 'node.db'}?mode=ro", uri=True)) as c:
            published = {
                r[0]
                for r in c.execute(
                    "SELECT h.local_id FROM holding h JOIN records r ON r.kind = 'sample-group' "
                    "AND r.id = h.published_group AND r.live = 1 JOIN contents c "
                    "ON c.idx = r.last_index WHERE h.live = 1 "
                    "AND json_type(c.content, '$.samples') = 'integer'"
                )
            }
        with (export / "samples.csv").open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=self.delimiter)
            self.header = list(reader.fieldnames or [])
            chosen = (r for r in reader if r[self.local] in published)
            self.rows = list(itertools.islice(chosen, 20_000))
        if not self.rows:
            raise NoTemplate(f"{home}: no sample in a group published with exact counts")
        self.serial = 0

    def write(self, path: Path, samples: int, donors: int) -> Path:
        """An export of ``samples`` new samples of ``donors`` new donors."""
        tag = f"fresh{os.getpid()}x{time.time_ns()}"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.header, delimiter=self.delimiter)
            writer.writeheader()
            for i in range(samples):
                row = dict(self.rows[(self.serial + i) % len(self.rows)])
                row[self.local] = f"{tag}-s{i}"
                row[self.donor] = f"{tag}-d{i % donors}"
                writer.writerow(row)
        self.serial += samples
        return path

    def log_size(self) -> int:
        with closing(sqlite3.connect(f"file:{self.home / 'node.db'}?mode=ro", uri=True)) as c:
            row = c.execute("SELECT max(size) FROM checkpoints").fetchone()
        return int(row[0] or 0)

    def imported(self, export: Path) -> float:
        """Run the real import command; the monotonic time it ended. ``self.committed``: when
        its new checkpoint was first seen in node.db (None: none), watched every 10 ms."""
        before = self.log_size()
        self.committed: float | None = None
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.01):
                if self.log_size() != before:
                    self.committed = time.monotonic()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            done = self._run(export)
        finally:
            stop.set()
            watcher.join()
        ended = time.monotonic()
        if self.committed is None and self.log_size() != before:
            self.committed = ended
        if done.returncode != 0:
            raise RuntimeError(f"import into {self.home} failed: {done.stderr[-2000:]}")
        return ended

    def _run(self, export: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
            [
                _node_cli(),
                "import",
                str(export),
                "--home",
                str(self.home),
                "--mapping",
                str(self.mapping_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )


def _verified(client: httpx.Client, country: str) -> int:
    params: dict[str, str | int] = {"country": country, "page_size": 100}
    try:
        resp = client.get("/v1/search", params=params)
    except (httpx.ReadError, httpx.RemoteProtocolError):
        # the server closed an idle keep-alive connection as this request went out (uvicorn
        # closes them after 5 s, about the time an import takes): ask once more, afresh
        resp = client.get("/v1/search", params=params)
    body = resp.json()
    sizes = [
        int((item.get("provenance") or {}).get("checkpoint_size") or 0)
        for item in body["biobanks"]["items"]
    ]
    return max(sizes, default=0)


def _until_searchable(client: httpx.Client, node: _Node, size: int, since: float) -> float:
    """Seconds from ``since`` until /v1/search counts the node's log of ``size``."""
    while _verified(client, node.country) < size:
        if time.monotonic() - since > TIMEOUT:
            raise RuntimeError(f"{node.country}: size {size} not searchable in {TIMEOUT:g} s")
        time.sleep(POLL)
    return time.monotonic() - since


def _stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if len(ordered) == 1:
        p50 = p95 = ordered[0]
    else:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p95 = cuts[49], cuts[94]
    return {"n": len(values), "p50_s": p50, "p95_s": p95, "max_s": ordered[-1], "runs": values}


def freshness(
    catalogue_url: str,
    nodes: list[tuple[Path, Path, str]],
    work: Path,
    *,
    trials: int = 20,
    large: int = 10_000,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trials of both change sets over ``nodes`` ((home, export folder, country)), pushed to
    the catalogue at ``catalogue_url`` (added to each node's notify targets here); ``large``:
    the samples of the larger change set (10,000; smaller in tests)."""
    from node import notify, store

    work.mkdir(parents=True, exist_ok=True)
    bench_nodes, left_out = [], []
    for home, export, country in nodes:
        try:
            bench_nodes.append(_Node(home, export, country))
        except NoTemplate as exc:
            left_out.append(str(exc))
    if not bench_nodes:  # a few hundred samples a node: every group is a bound
        return {"skipped": "; ".join(left_out)}
    for node in bench_nodes:
        conn = store.connect(node.home / "node.db")
        try:
            notify.add_target(conn, catalogue_url)
        finally:
            conn.close()
    results: dict[str, Any] = {}
    with httpx.Client(base_url=catalogue_url, timeout=60) as client:
        for node in bench_nodes:  # the first notification (the current log): nothing new
            _until_searchable(client, node, node.log_size(), time.monotonic())
        for label, samples, donors in (("small", 0, 0), (str(large), large, 0)):
            latencies, from_commit, entries, import_s = [], [], [], []
            for trial in range(trials):
                node = bench_nodes[trial % len(bench_nodes)]
                n = samples or node.k
                d = donors or (node.k if not samples else max(node.k, samples // 5))
                export = node.write(work / f"{label}-{trial}.csv", n, d)
                before = node.log_size()
                started = time.monotonic()
                ended = node.imported(export)
                size = node.log_size()
                if size == before:
                    raise RuntimeError(f"{label} trial {trial}: the import published nothing")
                latencies.append(_until_searchable(client, node, size, ended))
                seen = ended + latencies[-1]
                from_commit.append(seen - (node.committed or ended))
                entries.append(size - before)
                import_s.append(ended - started)
                say(f"freshness {label} {trial + 1}/{trials}: {latencies[-1]:.2f} s")
            results[label] = {
                **_stats(latencies),
                "samples": samples or "k",
                "from_commit": _stats(from_commit),  # the import's exit comes after its commit
                "entries_median": statistics.median(entries),
                "import_seconds_median": statistics.median(import_s),
            }
        results["waiting"] = _waiting(client, bench_nodes[0], work)
    results["k"] = bench_nodes[0].k
    results["left_out"] = left_out
    return results


def _waiting(client: httpx.Client, node: _Node, work: Path) -> dict[str, Any]:
    """One new donor waits at the node; k-1 more publish them all: the wait, then the latency."""
    for attempt in range(1, 11):  # a new donor may complete a class held back: try another
        before = node.log_size()
        first_end = node.imported(node.write(work / f"wait-{attempt}.csv", 1, 1))
        held = node.log_size() == before
        if held:
            break
    second_start = time.monotonic()
    second_end = node.imported(node.write(work / "wait-k.csv", node.k - 1, node.k - 1))
    size = node.log_size()
    latency = _until_searchable(client, node, size, second_end)
    return {
        "held_at_node": held,  # the one donor's change set was not published by itself
        "attempts": attempt,  # donors imported until one waited (a donor completing a
        # class under k donors publishes that class's held-back samples with it)
        "waited_s": second_end - first_end,  # policy: until the import completing k donors
        "second_import_s": second_end - second_start,
        "latency_after_publication_s": latency,
    }


def show(results: dict[str, Any] | None, console: Any) -> None:
    """The freshness figures as a table (nothing when the run skipped them)."""
    if not results:
        return
    if "skipped" in results:
        console.print(f"freshness skipped: {results['skipped']}")
        return
    from rich.table import Table

    table = Table(title="freshness: end of biobank-node import to counted by /v1/search (push)")
    columns = ("change set", "trials", "p50", "p95", "max", "p95 from commit", "entries", "import")
    for column in (*columns, "target"):
        table.add_column(column)
    for label, name, target in (
        ("small", f"k = {results['k']} new donors, one sample each", "p95 < 5 s"),
        ("10000", "10,000 samples", ""),
    ):
        r = results.get(label)
        if r:
            table.add_row(
                name,
                str(r["n"]),
                f"{r['p50_s']:.2f} s",
                f"{r['p95_s']:.2f} s",
                f"{r['max_s']:.2f} s",
                f"{r['from_commit']['p95_s']:.2f} s",
                f"{r['entries_median']:g}",
                f"{r['import_seconds_median']:.1f} s",
                target,
            )
    console.print(table)
    w = results.get("waiting")
    if w:
        console.print(
            f"waiting at the node (policy, not latency): one new donor held "
            f"{'yes' if w['held_at_node'] else 'NO'}, waited {w['waited_s']:.1f} s for the "
            f"import completing k donors; then searchable "
            f"{w['latency_after_publication_s']:.2f} s after it"
        )

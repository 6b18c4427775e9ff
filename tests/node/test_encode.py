"""The import's helper process checks exactly what the importer would check inline.

Big CSV/TSV sample files are checked in a helper process (node/importing/encode.py) while
the importer stages the batch before. These tests run the same imports with and without
the helper and compare the holding, the log (nonces and times aside), problems and counts.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest

from federation.generate import generate
from node.home import SECRET, Home
from node.importing import encode
from node.importing.codes import Codes
from node.importing.encode import ImportHelper
from node.importing.importer import ImportReport, run_import
from node.importing.mapping import Mapping
from node.importing.sources import tabular
from node.importing.sources.base import read_table
from node.importing.sources.tabular import SampleRows
from tests.node.node_support import make_home


def _batches(folder: Path) -> tuple[Mapping, list[str], list[list[Any]]]:
    mapping = Mapping.load(folder / "samples.mapping.toml")
    rows = read_table(folder / "samples.csv", mapping.delimiter or ",", fields=True)
    _, header, _ = next(rows)
    return mapping, list(header), list(iter(lambda: list(islice(rows, 25)), []))


@pytest.mark.parametrize("in_helper", [0, 1, 10**6])
def test_checked_batches_come_back_in_order_however_the_work_is_shared(
    tmp_path: Path, in_helper: int
) -> None:
    generate("DK", 600, 3, tmp_path)
    mapping, header, batches = _batches(tmp_path)
    expected = [SampleRows(mapping, Codes.default(), header).check(b) for b in batches]
    helper = ImportHelper()
    try:
        got = list(helper.check_samples(mapping, header, batches, in_helper=in_helper))
    finally:
        helper.close()
    assert got == expected and len(got) == 24


def test_a_helper_that_dies_fails_the_import_with_a_clear_error(tmp_path: Path) -> None:
    generate("DK", 200, 3, tmp_path)
    mapping, header, batches = _batches(tmp_path)
    helper = ImportHelper()
    try:
        helper._process.kill()
        helper._process.join()
        with pytest.raises(RuntimeError, match="helper process ended unexpectedly"):
            list(helper.check_samples(mapping, header, batches))
    finally:
        helper.close()


def test_closing_ends_the_helper(tmp_path: Path) -> None:
    generate("DK", 100, 3, tmp_path)
    mapping, header, batches = _batches(tmp_path)
    helper = ImportHelper()
    assert len(list(helper.check_samples(mapping, header, batches))) == 4
    helper.close()
    assert not helper._process.is_alive() and helper._process.exitcode == 0


def _import(home: Home, folder: Path, **kw: Any) -> ImportReport:
    report = ImportReport(files=[])
    for kind in ("biobanks", "collections", "samples"):
        report = run_import(
            home,
            [folder / f"{kind}.csv"],
            mapping=Mapping.load(folder / f"{kind}.mapping.toml"),
            **kw,
        )
    return report


def _state(home: Home) -> dict[str, Any]:
    conn = sqlite3.connect(home.db_path)
    try:
        leaves = []
        for leaf, content in conn.execute(
            "SELECT l.leaf, c.content FROM leaves l LEFT JOIN contents c ON c.idx = l.idx "
            "ORDER BY l.idx"
        ):
            entry = orjson.loads(leaf)
            for varying in ("digest", "time"):  # the digest covers the random nonce
                entry.pop(varying, None)
            body = orjson.loads(content) if content else None
            if body:
                body.pop("nonce", None)
            leaves.append((entry, body))
        holding = conn.execute("SELECT * FROM holding ORDER BY local_id").fetchall()
    finally:
        conn.close()
    return {"leaves": leaves, "holding": holding}


def _report(report: ImportReport) -> tuple[Any, ...]:
    return (
        report.published,
        report.unchanged,
        report.withdrawn,
        report.size_after,
        [str(p) for p in report.problems],
        report.applied,
        report.privacy.to_dict() if report.privacy else None,
    )


def test_imports_through_the_helper_equal_inline_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "export"
    generate("DE", 1500, 11, export)
    inline, _ = make_home(tmp_path, name="inline")
    helped, _ = make_home(tmp_path, name="helped")
    shutil.copyfile(inline.path / SECRET, helped.path / SECRET)
    helped = Home.open(helped.path)
    monkeypatch.setattr(tabular, "BATCH", 70)  # many batches, several in the helper at once
    requests: list[str] = []
    real_send = ImportHelper._send

    def send(self: ImportHelper, request: tuple[Any, ...]) -> None:
        requests.append(request[0])
        real_send(self, request)

    monkeypatch.setattr(ImportHelper, "_send", send)

    def both(folder: Path, **kw: Any) -> None:
        monkeypatch.setattr(encode, "HELPER_MIN_BYTES", 10**12)
        a = _import(inline, folder, **kw)
        monkeypatch.setattr(encode, "HELPER_MIN_BYTES", 1)
        requests.clear()
        b = _import(helped, folder, **kw)
        assert requests.count("check") > 5
        assert _report(a) == _report(b)
        assert _state(inline) == _state(helped)

    both(export)  # a first import: everything new

    # a second export: some samples changed, some gone, some new, two invalid rows
    changed = tmp_path / "changed"
    shutil.copytree(export, changed)
    path = changed / "samples.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header, body = rows[0], rows[1:]
    storage = header.index("Lagertemperatur")
    for i, row in enumerate(body):
        if i % 5 == 0:
            row[storage] = "-80 °C" if row[storage] != "-80 °C" else "-20 °C"
    body = [row for i, row in enumerate(body) if i % 11 != 3]
    extra = [list(r) for r in body[:40]]
    for n, row in enumerate(extra):
        row[0] = f"NEW-{n:04d}"
    extra[7][storage] = "lukewarm"  # not a code the mapping knows: a problem
    extra[9] = extra[9][:5]  # a truncated row: a problem of the reader
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows([header, *body, *extra])
    both(changed, snapshot=True, skip_invalid=True)
    assert _state(helped)["leaves"][-1][0]["kind"] == "sample-group"

"""Excel .xlsx exports, read like CSV through a mapping (openpyxl, read-only streaming).

The sheet named for the mapping's kind (``Samples``, ``collections``, ``Biobanks``...;
see :func:`sheet_role`), else the first sheet naming no role, else the first, is read
through the mapping; the other role sheets (``Biobanks``, ``Collections``, ``Persons``)
are read as Directory tables in the same import (:func:`plan`); the rest are listed as
not imported. Row 1 is the header; locations
are the rows Excel shows (``Samples.xlsx sheet Samples row 7``). Cells become the text a
CSV export would hold: whole numbers without ``.0``, dates as ISO dates.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.importing.codes import Codes
from node.importing.mapping import Mapping
from node.importing.sources import directory, tabular
from node.importing.sources.base import Sink
from protocol.errors import ConfigError, Problem

if TYPE_CHECKING:
    from node.importing.encode import ImportHelper

__all__ = [
    "DIRECTORY_ROLES",
    "ROLES",
    "cell_text",
    "choose_sheet",
    "plan",
    "read",
    "roles",
    "rows",
    "sheet_role",
]

#: sheet names (case and spacing ignored, a ``prefix_`` allowed) -> the file role they name
ROLES = {
    "biobanks": "biobank",
    "biobank": "biobank",
    "collections": "collection",
    "collection": "collection",
    "samples": "sample",
    "sample": "sample",
    "persons": "person",
    "person": "person",
    "contacts": "person",
    "contact": "person",
}


def sheet_role(name: str) -> str | None:
    """The role a sheet name names: ``Samples`` and ``eu_bbmri_eric_biobanks`` do."""
    key = name.strip().lower().replace(" ", "_")
    return ROLES.get(key) or ROLES.get(key.rsplit("_", 1)[-1])


def _open(path: Path) -> Any:
    import openpyxl

    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ConfigError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc


def roles(path: Path) -> dict[str, str | None]:
    """Every sheet of the workbook and the role its name names (None: names none)."""
    book = _open(path)
    try:
        return {name: sheet_role(name) for name in book.sheetnames}
    finally:
        book.close()


def choose_sheet(names: list[str], kind: str | None) -> str:
    """The sheet to read for a mapping of ``kind`` (see the module docstring)."""
    named = [n for n in names if kind is not None and sheet_role(n) == kind]
    return named[0] if named else names[0]


def cell_text(value: object) -> str:
    """A cell as the text a CSV export of it would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def rows(
    path: Path, sheet: str, fields: bool = False
) -> Generator[tuple[str, Any, list[Problem]], None, None]:
    """The rows of one sheet in :func:`node.importing.sources.base.read_table`'s shape."""
    book = _open(path)
    try:
        where = f"{path.name} sheet {sheet}"
        values = book[sheet].iter_rows(values_only=True)
        first = next(values, None)
        header = [cell_text(v).strip() for v in first or ()]
        while header and not header[-1]:
            header.pop()  # Excel's used range often runs past the last named column
        if not header:
            loc = f"{where} row 1"
            yield loc, None, [Problem(loc, "", "", "empty sheet: no header row")]
            return
        yield f"{where} row 1", {h: h for h in header}, []
        width = len(header)
        for number, raw in enumerate(values, start=2):
            cells = [cell_text(v) for v in raw]
            if not any(c.strip() for c in cells):
                continue
            loc = f"{where} row {number}"
            problems = []
            extra = [c for c in cells[width:] if c.strip()]
            if extra:
                problems.append(Problem(loc, "", extra[0], "value in a column that has no header"))
            cells = (cells + [""] * width)[:width]
            yield loc, cells if fields else dict(zip(header, cells, strict=True)), problems
    finally:
        book.close()


#: sheet roles the Directory reader reads without a mapping -> its role names
DIRECTORY_ROLES = {"biobank": "biobank", "collection": "collection", "person": "persons"}


def plan(
    path: Path, kind: str | None, given: str | None = None
) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """How one import reads a workbook: (the sheet read through the mapping of ``kind``,
    or None; [(sheet, Directory role)] read as Directory tables; [sheets not read]).

    Several role sheets split into their roles in ONE import: the sheet named for the
    mapping's kind (else the first sheet naming no role, else the first) goes through the
    mapping; every other sheet named ``Biobanks``, ``Collections`` or ``Persons``/
    ``Contacts`` is a Directory table (no mapping). ``given`` (the file's role, from
    ``FILE:ROLE`` or ``--kind``) reads one sheet in that role (with the persons sheets
    a Directory table's contacts reference). A samples sheet without a
    mapping, or a workbook with no role sheet and no mapping, is an error.
    """
    names = list(roles(path))
    if not names:
        raise ConfigError(f"{path.name}: the workbook has no sheet")
    if given is not None:
        role = "person" if given == "persons" else given
        sheet = choose_sheet(names, role)
        others = [n for n in names if n != sheet]
        if kind is not None and role == kind:
            return sheet, [], others
        if role in DIRECTORY_ROLES:  # with the persons sheets its contacts reference
            persons = [
                (n, "persons") for n in others if role != "person" and sheet_role(n) == "person"
            ]
            read = {sheet, *(n for n, _r in persons)}
            return (
                None,
                [(sheet, DIRECTORY_ROLES[role]), *persons],
                [n for n in names if n not in read],
            )
        raise ConfigError(f"{path.name}: {given} sheets need --mapping MAP (see node/README.md)")
    mapped = None
    if kind is not None:
        named = [n for n in names if sheet_role(n) == kind]
        plain = [n for n in names if sheet_role(n) is None]
        mapped = (named or plain or names)[0]
    tables = [
        (n, DIRECTORY_ROLES[r])
        for n in names
        if n != mapped and (r := sheet_role(n) or "") in DIRECTORY_ROLES
    ]
    if kind is None:
        samples = [n for n in names if sheet_role(n) == "sample"]
        if samples:
            raise ConfigError(
                f"{path.name}: sheet {samples[0]!r} holds samples: give --mapping MAP for it "
                "(the Biobanks, Collections and Persons sheets are read with it)"
            )
        if not tables:
            raise ConfigError(
                f"{path.name}: no sheet names a role (sheets {', '.join(names[:6])}); name "
                "them Biobanks, Collections, Persons or Samples, or give --mapping MAP"
            )
    read = {n for n, _r in tables} | ({mapped} if mapped else set())
    return mapped, tables, [n for n in names if n not in read]


def read(
    path: Path,
    mapping: Mapping | None,
    sink: Sink,
    codes: Codes,
    helper: ImportHelper | None = None,
    given: str | None = None,
    inferred: list[str] | None = None,
) -> int:
    """Stage every row of the workbook's sheets as :func:`plan` splits them; return the
    rows read. Each sheet's role is added to ``inferred`` as a sentence saying why."""
    mapped, tables, ignored = plan(path, mapping.kind if mapping else None, given)
    for other in ignored:
        why = f"the mapping reads sheet {mapped!r}" if mapped else "its name names no role"
        sink.ignored(f"{path.name}: sheet {other!r} ({why})")
    count = 0
    if tables:
        if inferred is not None and given is None:
            inferred += [
                f"{path.name} sheet {n}: read as Directory {role} table (the sheet's name)"
                for n, role in tables
            ]
        count += directory.read_tables(
            [(f"{path.name} sheet {n}", role, partial(rows, path, n)) for n, role in tables],
            sink,
            codes,
        )
    if mapped is not None and mapping is not None:
        if inferred is not None and given is None and tables:
            inferred.append(
                f"{path.name} sheet {mapped}: read as {mapping.kind} rows through the mapping"
            )
        table = rows(path, mapped, fields=mapping.kind == "sample")
        count += tabular.read(path, mapping, sink, codes, "csv", helper, table=table)
    return count

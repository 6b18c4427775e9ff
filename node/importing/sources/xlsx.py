"""Excel .xlsx exports, read like CSV through a mapping (openpyxl, read-only streaming).

One sheet is read per file: the sheet named for the mapping's kind (``Samples``,
``collections``, ``Biobanks``...; see :func:`sheet_role`), else the only sheet, else
the first one (the others are listed as not imported). Row 1 is the header; locations
are the rows Excel shows (``Samples.xlsx sheet Samples row 7``). Cells become the text a
CSV export would hold: whole numbers without ``.0``, dates as ISO dates.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.importing.codes import Codes
from node.importing.mapping import Mapping
from node.importing.sources import tabular
from node.importing.sources.base import Sink
from protocol.errors import ConfigError, Problem

if TYPE_CHECKING:
    from node.importing.encode import ImportHelper

__all__ = ["ROLES", "cell_text", "choose_sheet", "read", "roles", "rows", "sheet_role"]

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


def read(
    path: Path,
    mapping: Mapping,
    sink: Sink,
    codes: Codes,
    helper: ImportHelper | None = None,
) -> int:
    """Stage every row of the workbook's sheet for ``mapping``; return the rows read."""
    names = list(roles(path))
    if not names:
        raise ConfigError(f"{path.name}: the workbook has no sheet")
    sheet = choose_sheet(names, mapping.kind)
    for other in names:
        if other != sheet:
            sink.ignored(f"{path.name}: sheet {other!r} (the mapping reads sheet {sheet!r})")
    table = rows(path, sheet, fields=mapping.kind == "sample")
    return tabular.read(path, mapping, sink, codes, "csv", helper, table=table)

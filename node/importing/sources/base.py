"""What every reader reports into: staged samples, other records, problems, ignored things."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

from protocol.errors import Problem

__all__ = ["Sink", "read_table", "utf8_lines"]


class Sink(Protocol):
    """The importer side of a reader (see node.importing.importer.Staging)."""

    conn: sqlite3.Connection  # for readers that park resources in TEMP tables

    def sample(self, row: tuple[object, ...]) -> None:
        """A checked staging row (node.importing.staging.INPUT_COLUMNS order)."""

    def record(
        self,
        kind: str,
        id: str,
        biobank: str,
        content: dict[str, object],
        location: str,
        columns: dict[str, str] | None = None,
    ) -> None:
        """A biobank or collection record, complete but not yet schema-checked.
        ``columns`` names the operator's own column of a field (``{"biobank": "biobanks"}``)
        for problems found after staging (an unpublished biobank)."""

    def problem(self, problem: Problem, kind: str | None = None, key: str | None = None) -> None:
        """A problem; ``key`` (local sample id or record id) marks the record as present."""

    def ignored(self, what: str) -> None:
        """Something deliberately not imported (an unmapped column, an Observation)."""


def utf8_lines(path: Path, bad_lines: set[int]) -> Iterator[str]:
    """Lines of ``path`` decoded as UTF-8; undecodable lines are noted and replaced."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(number)
                line = raw.decode("utf-8", errors="replace")
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield line


def read_table(
    path: Path,
    delimiter: str,
    fields: bool = False,
) -> Generator[tuple[str, Any, list[Problem]], None, None]:
    """Rows of a delimited file as (location, {column: value}, problems); header first.

    The first item is (location, {column: column}, problems), or (location, None,
    problems) when there is no readable header. Locations name spreadsheet rows: the
    header is row 1. ``fields``: data rows come as the list of cells instead of a dict.
    """
    bad_lines: set[int] = set()
    reader = csv.reader(utf8_lines(path, bad_lines), delimiter=delimiter, strict=True)
    name = path.name
    try:
        header = next(reader)
    except StopIteration:
        yield f"{name} row 1", None, [Problem(f"{name} row 1", "", "", "empty file: no header row")]
        return
    except csv.Error as exc:
        yield f"{name} row 1", None, [Problem(f"{name} row 1", "", "", f"unreadable header: {exc}")]
        return
    header = [h.strip() for h in header]
    yield (
        f"{name} row 1",
        {h: h for h in header},
        ([Problem(f"{name} row 1", "", "", "header is not valid UTF-8")] if 1 in bad_lines else []),
    )
    row = 1  # the row a spreadsheet shows: header row 1, a quoted newline stays in its row
    while True:
        start = reader.line_num + 1  # physical line, for the UTF-8 check
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            loc = f"{name} row {row}"
            yield loc, None, [Problem(loc, "", "", f"unreadable row ({exc}); file truncated?")]
            return
        if not cells or (not cells[0].strip() and all(not f.strip() for f in cells)):
            continue
        loc = f"{name} row {row}"
        problems: list[Problem] = []
        if bad_lines and any(start <= n <= reader.line_num for n in bad_lines):
            problems.append(Problem(loc, "", "", "row is not valid UTF-8 text"))
        if len(cells) != len(header):
            problems.append(
                Problem(
                    loc,
                    "",
                    len(cells),
                    f"row has {len(cells)} fields but the header has "
                    f"{len(header)} (truncated or misaligned row)",
                )
            )
        yield loc, cells if fields else dict(zip(header, cells, strict=False)), problems

"""CSV/TSV exports read row by row through a declarative mapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node import recordfields
from node.codes import Codes
from node.mapping import LIST_FIELDS, SAMPLE_LIST_FIELDS, Mapping
from node.samples import MEMO, RawSample, SampleChecker
from node.sources.base import Sink, read_table
from protocol.errors import Problem

if TYPE_CHECKING:
    from node.encode import ImportHelper


def read(path: Path, mapping: Mapping, sink: Sink, codes: Codes, fmt: str = "csv",
         helper: ImportHelper | None = None) -> int:
    """Stage every row of ``path``; return the number of data rows read.

    ``helper``: check the rows of a sample file in the import's helper process, in
    batches and in order, while this process parses the next rows and stages the last.
    """
    delimiter = mapping.delimiter or ("\t" if fmt == "tsv" else ",")
    sampled = mapping.kind == "sample"
    rows = read_table(path, delimiter, fields=sampled)
    loc, header, problems = next(rows)
    for p in problems:
        sink.problem(p)
    if header is None:
        return 0
    missing = sorted({c for c in mapping.columns.values() if c not in header})
    if missing:
        for column in missing:
            sink.problem(
                Problem(loc, column, None, "column named in the mapping is not in the file")
            )
        return 0
    used = set(mapping.columns.values())
    for column in header:
        if column not in used:
            sink.ignored(f"{path.name}: column {column!r} is not in the mapping (never published)")
    if sampled:
        counted = _Counted(rows)
        batches = iter(lambda: list(islice(counted, BATCH)), [])
        checked: Iterable[list[Checked]]
        if helper is not None:
            checked = helper.check_samples(mapping, list(header), batches)
        else:
            sample_rows = SampleRows(mapping, codes, list(header))
            checked = (sample_rows.check(batch) for batch in batches)
        for batch in checked:
            for staged, issues, key in batch:
                if staged is not None:
                    sink.sample(staged)
                else:
                    for p in issues or ():
                        sink.problem(p, "sample", key)
        return counted.n
    names = {fld: col for fld, col in mapping.columns.items()}
    count = 0
    plan = _plan(mapping)
    for loc, row, problems in rows:
        count += 1
        flat = _flat(row or {}, mapping, plan)
        id = flat.get("id")
        key = str(id) if id else None
        if row is None or problems:
            for p in problems:
                sink.problem(p, mapping.kind, key)
            continue
        content, issues = recordfields.build(
            mapping.kind, flat, loc, codes, mapping.sources, names
        )
        if issues:
            for p in issues:
                sink.problem(p, mapping.kind, key)
            continue
        biobank = str(content.get("biobank", content.get("id", "")))
        sink.record(mapping.kind, str(content.get("id", "")), biobank, content, loc)
    return count


#: A checked sample row: (staging row, None, None), or (None, problems, local id or None)
Checked = tuple["tuple[object, ...] | None", "list[Problem] | None", "str | None"]
BATCH = 2000  # rows per batch sent to the helper


class _Counted:
    """Iterates ``rows`` and counts them."""

    def __init__(self, rows: Iterator[tuple[str, Any, list[Problem]]]) -> None:
        self.rows = rows
        self.n = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> tuple[str, Any, list[Problem]]:
        row = next(self.rows)
        self.n += 1
        return row


class SampleRows:
    """Rows of a sample file to staging rows or problems: mapping, code lists and checks.

    Reads no database and keeps its memos per file, so a big import runs it in its
    helper process (see node/encode.py); ``tests/node/test_encode.py`` compares the two.
    """

    def __init__(self, mapping: Mapping, codes: Codes, header: list[str]) -> None:
        self.mapping = mapping
        self.header = header
        self.checker = SampleChecker(codes, mapping.sources)
        self.names = {fld: col for fld, col in mapping.columns.items()}
        self.plan = _plan(mapping)
        self.memo: dict[tuple[str, str], list[str]] = {}
        # every row's flat dict has the same keys (the fixed values and the mapped columns)
        self.only_sample_fields = set(mapping.fixed) | set(mapping.columns) <= set(
            RawSample.__dataclass_fields__)

    def check(self, rows: Iterable[tuple[str, list[str] | None, list[Problem]]]
              ) -> list[Checked]:
        """One :data:`Checked` per (location, cells, problems) row, in order."""
        out: list[Checked] = []
        header, mapping, plan, memo = self.header, self.mapping, self.plan, self.memo
        sample_fields = RawSample.__dataclass_fields__
        for loc, cells, problems in rows:
            row = dict(zip(header, cells, strict=False)) if cells is not None else None
            flat = _flat(row or {}, mapping, plan, memo)
            key = flat.get("local_id")
            key = str(key) if key else None
            if row is None or problems:
                out.append((None, problems, key))
                continue
            raw = (RawSample(**flat) if self.only_sample_fields  # type: ignore[arg-type]
                   else RawSample(**{k: v for k, v in flat.items() if k in sample_fields}))  # type: ignore[arg-type]
            staged, issues = self.checker.check(raw, loc, self.names)
            out.append((staged, None, None) if staged is not None else (None, issues, key))
        return out


Plan = list[tuple[str, str, dict[str, str], bool, bool]]


def _plan(mapping: Mapping) -> Plan:
    """Per mapped field, once per file: (field, column, value table, is a list, has fixed)."""
    lists = SAMPLE_LIST_FIELDS if mapping.kind == "sample" else LIST_FIELDS
    return [
        (fld, column, mapping.values.get(fld, {}), fld in lists, fld in mapping.fixed)
        for fld, column in mapping.columns.items()
    ]


def _flat(
    row: dict[str, str],
    mapping: Mapping,
    plan: Plan,
    memo: dict[tuple[str, str], list[str]] | None = None,
) -> dict[str, object]:
    """The record fields of one row; ``memo`` (samples only: their lists are only read)
    keeps each distinct list cell's parsed value."""
    flat: dict[str, object] = dict(mapping.fixed)
    separator = mapping.list_separator
    for fld, column, table, is_list, fixed in plan:
        value = row.get(column, "").strip()
        if not value:
            if not fixed:
                flat[fld] = [] if is_list else None
            continue
        if is_list:
            items = memo.get((fld, value)) if memo is not None else None
            if items is None:
                items = [table.get(v, v) for v in (i.strip() for i in value.split(separator)) if v]
                if memo is not None:
                    if len(memo) >= MEMO:
                        memo.clear()
                    memo[(fld, value)] = items
            flat[fld] = items
        else:
            flat[fld] = table.get(value, value)
    return flat

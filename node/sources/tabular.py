"""CSV/TSV exports read row by row through a declarative mapping."""

from __future__ import annotations

from pathlib import Path

from node import recordfields
from node.codes import Codes
from node.mapping import LIST_FIELDS, SAMPLE_LIST_FIELDS, Mapping
from node.samples import MEMO, RawSample, SampleChecker
from node.sources.base import Sink, read_table
from protocol.errors import Problem


def read(path: Path, mapping: Mapping, sink: Sink, codes: Codes, fmt: str = "csv") -> int:
    """Stage every row of ``path``; return the number of data rows read."""
    delimiter = mapping.delimiter or ("\t" if fmt == "tsv" else ",")
    checker = SampleChecker(codes, mapping.sources)
    rows = read_table(path, delimiter)
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
    names = {fld: col for fld, col in mapping.columns.items()}
    count = 0
    id_field = "local_id" if mapping.kind == "sample" else "id"
    plan = _plan(mapping)
    memo: dict[tuple[str, str], list[str]] | None = {} if mapping.kind == "sample" else None
    sample_fields = RawSample.__dataclass_fields__
    # every row's flat dict has the same keys (the fixed values and the mapped columns)
    only_sample_fields = set(mapping.fixed) | set(mapping.columns) <= set(sample_fields)
    for loc, row, problems in rows:
        count += 1
        flat = _flat(row or {}, mapping, plan, memo)
        key = flat.get(id_field)
        key = str(key) if key else None
        if row is None or problems:
            for p in problems:
                sink.problem(p, mapping.kind, key)
            continue
        if mapping.kind == "sample":
            raw = (RawSample(**flat) if only_sample_fields  # type: ignore[arg-type]
                   else RawSample(**{k: v for k, v in flat.items() if k in sample_fields}))  # type: ignore[arg-type]
            staged, issues = checker.check(raw, loc, names)
            if staged is None:
                for p in issues:
                    sink.problem(p, "sample", key)
            else:
                sink.sample(staged)
        else:
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

"""CSV/TSV exports read row by row through a declarative mapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.importing import recordfields, wording
from node.importing.codes import Codes
from node.importing.mapping import LIST_FIELDS, SAMPLE_LIST_FIELDS, Joiner, Mapping
from node.importing.samples import (
    AGE_TEXT,
    MAX_AGE,
    MEMO,
    RawSample,
    SampleChecker,
    age_at,
    parse_date,
)
from node.importing.sources.base import Sink, read_table
from protocol.errors import Problem
from protocol.schema import SchemaSet

if TYPE_CHECKING:
    from node.importing.encode import ImportHelper

__all__ = ["BATCH", "Checked", "Plan", "SampleRows", "SeenCells", "read"]


def read(
    path: Path,
    mapping: Mapping,
    sink: Sink,
    codes: Codes,
    fmt: str = "csv",
    helper: ImportHelper | None = None,
    table: Iterator[tuple[str, Any, list[Problem]]] | None = None,
) -> int:
    """Stage every row of ``path``; return the number of data rows read.

    ``table``: rows from another reader (an .xlsx sheet) in :func:`read_table`'s shape.

    ``helper``: check the rows of a sample file in the import's helper process, in
    batches and in order, while this process parses the next rows and stages the last.
    """
    delimiter = mapping.delimiter or ("\t" if fmt == "tsv" else ",")
    sampled = mapping.kind == "sample"
    rows = read_table(path, delimiter, fields=sampled) if table is None else table
    loc, header, problems = next(rows)
    for p in problems:
        sink.problem(p)
    if header is None:
        return 0
    own = len(header)
    joiner = Joiner(mapping.joins) if mapping.joins else None  # [[join]]: NAME.column
    if joiner is not None:
        header, join_problems = joiner.header(list(header), loc)
        for p in join_problems:
            sink.problem(p)
    missing = sorted({c for c in mapping.columns.values() if c not in header})
    if missing:
        for column in missing:
            sink.problem(
                Problem(loc, column, None, "column named in the mapping is not in the file")
            )
        return 0
    used = set(mapping.columns.values())
    for column in list(header)[:own]:
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
        if joiner is not None and row is not None:
            row, more = joiner.row(row, loc)
            problems = problems + more
        flat = _flat(row or {}, mapping, plan)
        id = flat.get("id")
        key = str(id) if id else None
        if row is None or problems:
            for p in problems:
                sink.problem(p, mapping.kind, key)
            continue
        content, issues = recordfields.build(mapping.kind, flat, loc, codes, mapping.sources, names)
        # schema problems in the same pass as code problems, named by the operator's column
        # (fields whose codes failed are left out of content: only report the others)
        failed = {wording.plain(p, names).field for p in issues}
        issues += [
            p
            for p in (
                wording.plain(s, names) for s in _schemas().problems(mapping.kind, content, loc)
            )
            if p.field not in failed
        ]
        if issues:
            for p in issues:
                sink.problem(wording.plain(p, names), mapping.kind, key)
            continue
        biobank = str(content.get("biobank", content.get("id", "")))
        sink.record(mapping.kind, str(content.get("id", "")), biobank, content, loc, names)
    return count


_SCHEMAS: list[SchemaSet] = []


def _schemas() -> SchemaSet:
    """The shipped record schemas, loaded once per process on first use."""
    if not _SCHEMAS:
        _SCHEMAS.append(SchemaSet.default())
    return _SCHEMAS[0]


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
    helper process (see node/importing/encode.py); ``tests/node/test_encode.py`` compares the two.
    """

    def __init__(
        self, mapping: Mapping, codes: Codes, header: list[str], fast: bool = True
    ) -> None:
        """``fast``: stage rows whose every value was seen in a valid row by lookups
        (:class:`SeenCells`); False checks every row in full (the reference the tests use)."""
        self.mapping = mapping
        self.header = header
        self.checker = SampleChecker(codes, mapping.sources)
        self.names = {fld: col for fld, col in mapping.columns.items()}
        self.plan = _plan(mapping)
        self.memo: dict[tuple[str, str], list[str]] = {}
        # every row's flat dict has the same keys (the fixed values and the mapped columns)
        self.only_sample_fields = set(mapping.fixed) | set(mapping.columns) <= set(
            RawSample.__dataclass_fields__
        )
        self.seen = SeenCells.plan(mapping, header, self.checker.this_year) if fast else None

    def check(self, rows: Iterable[tuple[str, list[str] | None, list[Problem]]]) -> list[Checked]:
        """One :data:`Checked` per (location, cells, problems) row, in order."""
        out: list[Checked] = []
        header, mapping, plan, memo = self.header, self.mapping, self.plan, self.memo
        sample_fields = RawSample.__dataclass_fields__
        seen = self.seen
        for loc, cells, problems in rows:
            if seen is not None and cells is not None and not problems:
                done = seen.stage(cells, loc)
                if done is not None:
                    out.append((done, None, None))
                    continue
            row = dict(zip(header, cells, strict=False)) if cells is not None else None
            flat = _flat(row or {}, mapping, plan, memo)
            key = flat.get("local_id")
            key = str(key) if key else None
            if row is None or problems:
                out.append((None, problems, key))
                continue
            fields = (
                flat
                if self.only_sample_fields
                else {k: v for k, v in flat.items() if k in sample_fields}
            )
            raw = RawSample(**fields)  # type: ignore[arg-type]
            staged, issues = self.checker.check(raw, loc, self.names)
            if staged is not None and seen is not None and cells is not None:
                seen.learn(cells, staged)
            out.append((staged, None, None) if staged is not None else (None, issues, key))
        return out


#: Fields whose staged value depends on their own cell alone (and the file's mapping),
#: with their place in the staging row (node.importing.staging.INPUT_COLUMNS)
_LEARNED = (
    ("biobank", 2),
    ("collection", 3),
    ("sample_type", 4),
    ("storage_temperature", 5),
    ("sex", 6),
    ("diagnoses", 9),
    ("use_conditions", 10),
    ("dataset_types", 11),
)
_MISSING = (None, None, None)


class SeenCells:
    """The staging rows of sample rows made of values already seen in valid rows.

    Every field of a staging row but the ids, the age and the year depends on its own
    cell alone (code lists, value tables, fixed values, list splitting), so the full
    check of a valid row teaches, per field, cell -> staged value (:meth:`learn`). A row
    whose cells are all known is staged by lookups: the ids are stripped, the date and
    age parsed with the full check's own functions (memoised). Anything unknown or
    invalid returns None and the row takes the full check, which names its problems.
    ``tests/node/test_sample_rows.py`` holds the two equal on valid and broken rows.
    """

    def __init__(self, columns: dict[str, int], pad: bool, this_year: int) -> None:
        self.columns = columns
        self.pad = pad
        self.this_year = this_year
        self.learned: list[tuple[int, int, dict[str, object]]] = [
            (columns[f], pos, {}) for f, pos in _LEARNED
        ]
        self.dates: dict[str, tuple[int | None, int | None, int | None]] = {}
        self.ages: dict[str, int | None] = {}
        self.births: dict[str, tuple[int, int | None, int | None]] = {}

    @classmethod
    def plan(cls, mapping: Mapping, header: list[str], this_year: int) -> SeenCells | None:
        """None when the ids, date, age or birth are not plain columns (a value table or
        a fixed value on them): such files take the full check on every row."""
        index = {column: i for i, column in enumerate(header)}  # the last of a repeated name
        columns: dict[str, int] = {}
        for fld in ("local_id", "donor_id", "date", "age", "birth", *(f for f, _ in _LEARNED)):
            column = mapping.columns.get(fld)
            plain = fld not in mapping.fixed and not mapping.values.get(fld)
            if fld in ("local_id", "donor_id", "date", "age", "birth") and not plain:
                return None
            # -1: not mapped, read from the empty cell that stage() adds at the end
            columns[fld] = -1 if column is None or column not in index else index[column]
        if columns["local_id"] < 0:
            return None
        return cls(columns, any(i < 0 for i in columns.values()), this_year)

    def learn(self, cells: list[str], staged: tuple[object, ...]) -> None:
        """Keep what the full check made of each learned field's cell in a valid row."""
        if self.pad:
            cells = [*cells, ""]
        for i, pos, memo in self.learned:
            if len(memo) >= MEMO:
                memo.clear()
            memo[cells[i]] = staged[pos]

    def stage(self, cells: list[str], location: str) -> tuple[object, ...] | None:
        """The staging row of ``cells`` as the full check makes it, or None: check it."""
        if self.pad:
            cells = [*cells, ""]
        c = self.columns
        try:
            known = [memo[cells[i]] for i, _, memo in self.learned]
        except KeyError:
            return None
        local_id = cells[c["local_id"]].strip()
        if not local_id:
            return None
        year, month, day = self._date(cells[c["date"]])
        if year is False:
            return None
        age = self.ages.get(cells[c["age"]], False)
        if age is False:
            text = cells[c["age"]].strip()
            if text and (not AGE_TEXT.fullmatch(text) or int(text) > MAX_AGE):
                return None
            age = self._keep(self.ages, cells[c["age"]], int(text) if text else None)
        if age is None and year is not None:
            birth_cell = cells[c["birth"]]
            birth = self.births.get(birth_cell)
            if birth is None and birth_cell.strip():
                birth = parse_date(birth_cell)
                if birth is None:
                    return None
                self._keep(self.births, birth_cell, birth)
            if birth is not None:
                age = age_at(birth, year, month, day)
                if not 0 <= age <= MAX_AGE:
                    return None
        biobank, collection, sample_type, storage, sex, diagnoses, use, datasets = known
        return (
            local_id,
            cells[c["donor_id"]].strip() or None,
            biobank,
            collection,
            sample_type,
            storage,
            sex,
            age,
            year,
            diagnoses,
            use,
            datasets,
            location,
        )

    def _date(self, cell: str) -> tuple[Any, int | None, int | None]:
        """(year, month, day) of a valid date cell, (None, None, None) of an empty one,
        (False, None, None) of anything the full check would refuse."""
        got = self.dates.get(cell)
        if got is None:
            text = cell.strip()
            parsed = parse_date(text) if text else _MISSING
            if parsed is None or (
                parsed[0] is not None and not 1800 <= parsed[0] <= self.this_year + 1
            ):
                return False, None, None
            got = self._keep(self.dates, cell, parsed)
        return got

    @staticmethod
    def _keep(memo: dict[str, Any], key: str, value: Any) -> Any:
        if len(memo) >= MEMO:
            memo.clear()
        memo[key] = value
        return value


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

"""k-anonymity at the node: generalise sample rows until every class has k donors.

CONTRACT with the importer (``node/importing/importer.py``) and ``node/importing/staging.py``
========================================================================

``apply(conn, staging_table, policy) -> PrivacyReport``

* Call it once after every valid row of the import is staged (see ``node/importing/staging.py`` for
  the input columns) and before diffing against what is published.  It works only with
  SQL over the staging table (GROUP BY, COUNT(DISTINCT donor)), so memory does not grow
  with the file.  It is deterministic and independent of row order: the same rows give
  the same output, always.  It may be called again on the same table (e.g. after rows of
  a withdrawn donor were deleted); it then recomputes everything from the inputs.
* Output, written IN PLACE on the staging table (the columns ``node/importing/staging.py`` names):

  ``age_min``, ``age_max``        published age band in years; both NULL = publish no age
  ``period_from``, ``period_to``  published collection period in years; NULL = no period
  ``diagnoses``                   rewritten to the published, generalised list: canonical
                                  JSON (sorted by system then code, no duplicates);
                                  ``'[]'`` = publish no diagnoses
  ``storage_temperature``         set NULL when the policy does not publish it
  ``sex``                         set NULL when the policy does not publish it
  ``use_conditions``,             set ``'[]'`` when the policy does not publish them
  ``dataset_types``
  ``held_back``                   1 = must NOT be published; 0 = publish

  and it adds (if missing) these columns:

  ``reason``          NULL when published, else why held back: ``'below_k'`` (class
                      still under k donors after the whole generalisation ladder)
  ``privacy_level``   the ladder rung used (0 = the policy's own precision), for reports
  ``diagnoses_in``    the original diagnoses (kept so that a re-run starts from them)
  ``qkey``            internal class key; ignore

* ``node/groups.py`` runs it over a TEMP copy of the node's whole live holding (never
  over one file) and forms the published groups from the output: only what the policy
  publishes, omitting NULL / empty values (``sex``, ``storage_temperature``, ``age``,
  ``period``, ``diagnoses``, ``use_conditions``, ``dataset_types``).
* ``PrivacyReport.render(console)`` prints the summary (rich table) the import shows;
  ``PrivacyReport.to_dict()`` is stable JSON for ``--json`` output.
* Erasure: ``biobank-node withdraw --donor`` takes the donor's samples out of the holding
  and re-applies :func:`apply` over what is left (``node/withdraw.py``).

Quasi-identifiers (the class key): sex, age band, period, diagnosis set, biobank AND
collection (collection is published and membership of a cohort can be known, so it is
treated as a quasi-identifier too).  Donors are counted DISTINCT; a NULL donor id counts
as one donor per sample.  See ``docs/privacy.md`` for the ladder and the reasoning.
"""

from __future__ import annotations

import bisect
import functools
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from node.policy import Policy

#: Extra columns apply() adds to the staging table when missing.
EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reason", "TEXT"),
    ("privacy_level", "INTEGER"),
    ("diagnoses_in", "TEXT"),
    ("qkey", "TEXT"),
)
#: the largest age and year the sample-group schema allows (a band's end is cut there)
AGE_LIMIT = 150
YEAR_LIMIT = 2100
COARSER = {"full": "category", "category": "chapter", "chapter": "chapter", "none": "none"}

# WHO ICD-10 (2019) chapters by the first category of their range; a category belongs to
# the last chapter starting at or before it (codes outside WHO ranges, e.g. ICD-10-CM D49,
# fall into the chapter around them).
_CHAPTERS: tuple[tuple[str, str], ...] = (
    ("A00", "A00-B99"),
    ("C00", "C00-D48"),
    ("D50", "D50-D89"),
    ("E00", "E00-E90"),
    ("F00", "F00-F99"),
    ("G00", "G00-G99"),
    ("H00", "H00-H59"),
    ("H60", "H60-H95"),
    ("I00", "I00-I99"),
    ("J00", "J00-J99"),
    ("K00", "K00-K93"),
    ("L00", "L00-L99"),
    ("M00", "M00-M99"),
    ("N00", "N00-N99"),
    ("O00", "O00-O99"),
    ("P00", "P00-P96"),
    ("Q00", "Q00-Q99"),
    ("R00", "R00-R99"),
    ("S00", "S00-T98"),
    ("U00", "U00-U85"),
    ("V00", "V01-Y98"),
    ("Z00", "Z00-Z99"),
)
_CHAPTER_STARTS = [start for start, _ in _CHAPTERS]


def icd10_chapter(code: str) -> str:
    """The WHO ICD-10 chapter of ``code`` written as its code range (``C50.9`` -> ``C00-D48``)."""
    category = code.strip().upper()[:3]
    pos = bisect.bisect_right(_CHAPTER_STARTS, category) - 1
    return _CHAPTERS[max(pos, 0)][1]


@functools.cache
def generalise_diagnoses(diagnoses: str | None, precision: str) -> str:
    """Generalise a JSON diagnosis list to ``precision``; canonical JSON, sorted, unique.

    ICD-10 codes become their 3-character category or chapter range; ORPHA (and any other
    system) codes are published only at ``full`` precision and dropped below it.
    """
    if precision == "none" or not diagnoses:
        return "[]"
    out: set[tuple[str, str]] = set()
    for item in json.loads(diagnoses):
        system, code = str(item.get("system", "")), str(item.get("code", "")).strip()
        if not code:
            continue
        if precision == "full":
            out.add((system, code))
        elif system == "ICD-10" and precision == "category":
            # a block (C76-C80) or chapter range is already coarser than a category
            out.add((system, code.upper() if "-" in code else code.upper()[:3]))
        elif system == "ICD-10":
            out.add((system, icd10_chapter(code)))
    return json.dumps(
        [{"code": c, "system": s} for s, c in sorted(out)], separators=(",", ":"), sort_keys=True
    )


@dataclass(frozen=True)
class Rung:
    """One step of the generalisation ladder; ``None`` widths mean the field is dropped."""

    age_band: int | None
    period_width: int | None
    precision: str

    def describe(self, base: Rung) -> str:
        """What this rung changes relative to the policy's own precision ``base``."""
        parts = []
        if self.age_band != base.age_band:
            parts.append(
                "age dropped"
                if self.age_band is None
                else f"age band {base.age_band}->{self.age_band} years"
            )
        if self.period_width != base.period_width:
            parts.append(
                "period dropped"
                if self.period_width is None
                else f"period {base.period_width}->{self.period_width} years"
            )
        if self.precision != base.precision:
            parts.append(
                "diagnoses dropped"
                if self.precision == "none"
                else f"diagnoses {base.precision}->{self.precision}"
            )
        return ", ".join(parts) or "as the policy says"


def ladder(policy: Policy) -> list[Rung]:
    """The generalisation ladder for ``policy``, from its own precision to the coarsest."""
    a = policy.age_band if policy.publishes("age") else None
    p = policy.period_width if policy.publishes("period") else None
    d = policy.diagnosis_precision if policy.publishes("diagnoses") else "none"

    def times(width: int | None, factor: int) -> int | None:
        return None if width is None else width * factor

    d1 = COARSER[d]
    d2 = COARSER[d1]
    steps = [
        Rung(a, p, d),
        Rung(times(a, 2), p, d),
        Rung(times(a, 2), times(p, 2), d),
        Rung(times(a, 2), times(p, 2), d1),
        Rung(times(a, 4), times(p, 2), d1),
        Rung(times(a, 4), times(p, 4), d1),
        Rung(times(a, 4), times(p, 4), d2),
        Rung(None, times(p, 4), d2),
        Rung(None, None, d2),
        Rung(None, None, "none"),
    ]
    out: list[Rung] = []
    for step in steps:
        if not out or out[-1] != step:
            out.append(step)
    return out


@dataclass
class PrivacyReport:
    """What one :func:`apply` did: rows per ladder rung, rows held back per reason."""

    k: int
    rows: int = 0
    published: int = 0
    donors_published: int = 0
    classes: int = 0
    smallest_class: int | None = None
    by_rung: list[tuple[int, str, int]] = field(default_factory=list)
    held_back: dict[str, int] = field(default_factory=dict)
    orpha_dropped: int = 0

    @property
    def generalised(self) -> int:
        """Rows published coarser than the policy's own precision."""
        return sum(n for level, _, n in self.by_rung if level > 0)

    @property
    def held_back_total(self) -> int:
        return sum(self.held_back.values())

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form (for ``--json`` output and tests)."""
        return {
            "k": self.k,
            "rows": self.rows,
            "published": self.published,
            "generalised": self.generalised,
            "held_back": dict(sorted(self.held_back.items())),
            "donors_published": self.donors_published,
            "classes": self.classes,
            "smallest_class": self.smallest_class,
            "orpha_dropped": self.orpha_dropped,
            "by_rung": [{"level": lv, "change": what, "rows": n} for lv, what, n in self.by_rung],
        }

    def render(self, console: Any) -> None:
        """Print the summary as rich tables on ``console`` (a ``rich.console.Console``)."""
        from rich.table import Table

        table = Table(title=f"Privacy (k = {self.k} distinct donors per class)")
        table.add_column("outcome")
        table.add_column("how")
        table.add_column("samples", justify="right")
        for level, what, n in self.by_rung:
            table.add_row("published" if level == 0 else "generalised", what, str(n))
        for reason, n in sorted(self.held_back.items()):
            table.add_row("held back", REASONS.get(reason, reason), str(n))
        console.print(table)
        console.print(
            f"{self.published} of {self.rows} samples published in {self.classes} classes "
            f"(smallest class {self.smallest_class if self.smallest_class is not None else '-'}"
            f" donors), {self.generalised} generalised, {self.held_back_total} held back"
            + (f", ORPHA codes dropped from {self.orpha_dropped}" if self.orpha_dropped else "")
        )


REASONS = {"below_k": "class under k donors even at the coarsest level"}

_DONOR = "COALESCE('d:' || donor_id, 's:' || local_id)"
# what the coarser rungs read and write (see apply): the class inputs and the outputs
_OUTPUT_COLUMNS = (
    "age_min",
    "age_max",
    "period_from",
    "period_to",
    "diagnoses",
    "qkey",
    "privacy_level",
)
_WORK_COLUMNS = ", ".join(
    (
        "donor_id",
        "local_id",
        "sex",
        "biobank",
        "collection",
        "age",
        "year",
        "diagnoses_in",
        *_OUTPUT_COLUMNS,
    )
)
_PUBLISHED_KEY = "json_array(sex, biobank, collection, age_min, period_from, diagnoses)"


def apply(conn: sqlite3.Connection, staging_table: str, policy: Policy) -> PrivacyReport:
    """Generalise the staged rows in place until every published class has k donors.

    See the module docstring for the exact contract (columns read and written).
    """
    t = _checked_name(staging_table)
    conn.create_function("bb_generalise_diagnoses", 2, generalise_diagnoses, deterministic=True)
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({t})")}
    for name, sqltype in EXTRA_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE {t} ADD COLUMN {name} {sqltype}")
    _blank_excluded(conn, t, policy)
    rungs = ladder(policy)
    precision: str | None = None
    # rung 0 scans the table (and resets the outputs of an earlier run in the same pass);
    # the rows it leaves unsettled move to a narrow work table, and the coarser rungs work
    # there, so each rung costs what is left, not the whole (wide) staging table
    table = t
    for level, rung in enumerate(rungs):
        _set_rung(
            conn,
            table,
            rung,
            recompute_diagnoses=rung.precision != precision,
            where="privacy_level IS NULL" if level else "1",
            first=level == 0,
        )
        precision = rung.precision
        conn.execute("DROP TABLE IF EXISTS temp._bb_privacy_ok")
        conn.execute(
            f"CREATE TEMP TABLE _bb_privacy_ok AS SELECT qkey FROM {table} "
            f"WHERE privacy_level IS NULL GROUP BY qkey "
            f"HAVING COUNT(DISTINCT {_DONOR}) >= ?",
            (policy.k,),
        )
        conn.execute(
            f"UPDATE {table} SET privacy_level = ? WHERE privacy_level IS NULL "
            "AND qkey IN (SELECT qkey FROM temp._bb_privacy_ok)",
            (level,),
        )
        conn.execute("DROP TABLE temp._bb_privacy_ok")
        if level == 0:
            conn.execute("DROP TABLE IF EXISTS temp._bb_work")
            conn.execute(
                f"CREATE TEMP TABLE _bb_work AS SELECT rowid AS rid, {_WORK_COLUMNS} "
                f"FROM {t} WHERE privacy_level IS NULL"
            )
            table = "temp._bb_work"
        if (
            conn.execute(f"SELECT 1 FROM {table} WHERE privacy_level IS NULL LIMIT 1").fetchone()
            is None
        ):
            break  # every row settled: the coarser rungs would change nothing
    outputs = ", ".join(f"{c} = w.{c}" for c in _OUTPUT_COLUMNS)
    conn.execute(f"UPDATE {t} SET {outputs} FROM temp._bb_work AS w WHERE w.rid = {t}.rowid")
    conn.execute("DROP TABLE temp._bb_work")
    conn.execute(f"UPDATE {t} SET held_back = 1, reason = 'below_k' WHERE privacy_level IS NULL")
    return _report(conn, t, policy, rungs)


def _checked_name(name: str) -> str:
    bare = name.removeprefix("temp.")
    if not bare.replace("_", "").isalnum():
        raise ValueError(f"staging table name {name!r} is not a plain SQL identifier")
    return name


def _blank_excluded(conn: sqlite3.Connection, t: str, policy: Policy) -> None:
    if not policy.publishes("sex"):
        conn.execute(f"UPDATE {t} SET sex = NULL")
    if not policy.publishes("storage_temperature"):
        conn.execute(f"UPDATE {t} SET storage_temperature = NULL")
    for name in ("use_conditions", "dataset_types"):
        if not policy.publishes(name):
            conn.execute(f"UPDATE {t} SET {name} = '[]'")


def _set_rung(
    conn: sqlite3.Connection,
    t: str,
    rung: Rung,
    *,
    recompute_diagnoses: bool,
    where: str = "privacy_level IS NULL",
    first: bool = False,
) -> None:
    """Write the rung's published values and class key on every unsettled row.

    ``first``: the pass over every row that also keeps the original diagnoses (once) and
    clears the outcome of an earlier run.
    """
    a, p = rung.age_band, rung.period_width
    age_min = "CASE WHEN :a IS NULL OR age IS NULL OR age < 0 THEN NULL ELSE (age / :a) * :a END"
    period_from = (
        "CASE WHEN :p IS NULL OR year IS NULL OR year < 0 THEN NULL ELSE (year / :p) * :p END"
    )
    source = "COALESCE(diagnoses_in, diagnoses)" if first else "diagnoses_in"
    diagnoses = f"bb_generalise_diagnoses({source}, :d)" if recompute_diagnoses else "diagnoses"
    sets = [
        f"age_min = {age_min}",
        # bands end at the schema's limits (age 150, year 2100): a 20-year band of a
        # 140-year-old is 140-150, never 140-159
        "age_max = CASE WHEN :a IS NULL OR age IS NULL OR age < 0 THEN NULL "
        f"ELSE min((age / :a) * :a + :a - 1, {AGE_LIMIT}) END",
        f"period_from = {period_from}",
        "period_to = CASE WHEN :p IS NULL OR year IS NULL OR year < 0 THEN NULL "
        f"ELSE min((year / :p) * :p + :p - 1, {YEAR_LIMIT}) END",
        f"diagnoses = {diagnoses}",
        # the class key from the NEW values (an UPDATE's expressions see the old row, so
        # they are spelled out): one pass over the table instead of two
        f"qkey = json_array(sex, biobank, collection, {age_min}, {period_from}, {diagnoses})",
    ]
    if first:
        sets += [
            f"diagnoses_in = {source}",
            "privacy_level = NULL",
            "held_back = 0",
            "reason = NULL",
        ]
    conn.execute(
        f"UPDATE {t} SET {', '.join(sets)} WHERE {where}", {"a": a, "p": p, "d": rung.precision}
    )


def _report(conn: sqlite3.Connection, t: str, policy: Policy, rungs: list[Rung]) -> PrivacyReport:
    report = PrivacyReport(k=policy.k)
    report.rows = conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
    for level, n in conn.execute(
        f"SELECT privacy_level, COUNT(*) FROM {t} "
        "WHERE held_back = 0 GROUP BY privacy_level ORDER BY 1"
    ):
        report.by_rung.append((level, rungs[level].describe(rungs[0]), n))
    report.published = sum(n for _, _, n in report.by_rung)
    report.held_back = dict(
        conn.execute(
            f"SELECT reason, COUNT(*) FROM {t} WHERE held_back = 1 GROUP BY reason"
        ).fetchall()
    )
    report.donors_published = conn.execute(
        f"SELECT COUNT(DISTINCT {_DONOR}) FROM {t} WHERE held_back = 0"
    ).fetchone()[0]
    report.classes, report.smallest_class = conn.execute(
        f"SELECT COUNT(*), MIN(n) FROM (SELECT COUNT(DISTINCT {_DONOR}) AS n FROM {t} "
        # qkey of a published row is its published class key (_PUBLISHED_KEY), see _set_rung
        f"WHERE held_back = 0 GROUP BY qkey)"
    ).fetchone()
    report.orpha_dropped = conn.execute(
        f"SELECT COUNT(*) FROM {t} WHERE held_back = 0 AND diagnoses_in LIKE '%ORPHA%' "
        "AND diagnoses NOT LIKE '%ORPHA%'"
    ).fetchone()[0]
    return report

"""Problems in the operator's words: their column, the spreadsheet row, a plain reason.

Readers and the schema name problems by record path (``/contact/email``) and, for schema
failures, in the validator's words (a regular expression, ``{'unit': 'years'} does not
have enough properties``). :func:`plain` rewrites one problem: the field becomes the
operator's column where the mapping names one (else the record field without its
slash), and a schema reason becomes a sentence. :func:`reason_class` groups reasons for
the end-of-import summary; :func:`write_report` writes problems as CSV for a LIMS team.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from protocol.errors import Problem

__all__ = [
    "REPORT_COLUMNS",
    "line",
    "plain",
    "reason_class",
    "rows_with_problems",
    "split_location",
    "summary",
    "write_report",
]

REPORT_COLUMNS = ("file", "row", "column", "value", "reason")

#: schema patterns -> what a value must look like
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("@", "an e-mail address (name@example.org)"),
    ("https?://", "a web address starting with http:// or https://"),
    ("ORPHA:", "an ORPHA code (ORPHA:558)"),
    ("[A-Z][0-9]{2}", "an ICD-10 code (C50, C50.9) or block (C76-C80)"),
    (
        "\\u00C0-\\u024F",
        "an identifier: letters, digits and _ . : - only, starting with a letter or digit",
    ),
    ("(:[0-9]{1,5})?", "a host name, optionally with a port and a path"),
    ("[0-9]{4}-", "a UTC date and time (2024-01-31T12:00:00Z)"),
)

#: (regular expression over the validator's message, plain reason; {0}.. are its groups)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.S), r)
    for p, r in (
        (r"^required field is missing$", "a value is required but none was given"),
        (r"^.* is not of type 'integer'$", "not a whole number"),
        (r"^.* is not of type 'number'$", "not a number"),
        (r"^.* is not of type 'string'$", "not text"),
        (r"^.* is not of type 'array'$", "not a list of values"),
        (r"^.* is not of type 'object'$", "not a group of values"),
        (r"^.* is less than the minimum of (\S+)$", "must be {0} or more"),
        (r"^.* is greater than the maximum of (\S+)$", "must be {0} or less"),
        (r"^.* is less than or equal to the minimum of (\S+)$", "must be more than {0}"),
        (r"^.* is greater than or equal to the maximum of (\S+)$", "must be less than {0}"),
        (r"^.* is too long$", "too long"),
        (r"^.* is too short$", "too short or empty"),
        (r"^.* should be non-empty$", "must not be empty"),
        (r"^.* has non-unique elements$", "a value is listed twice"),
        (r"^.* is not a '([a-z-]+)'$", "not a valid {0}"),
        (r"^.* is not valid under any of the given schemas$", "not a valid value here"),
        (r"^.* is valid under each of .*$", "ambiguous value: it fits more than one form"),
    )
)
_NOT_ENOUGH = re.compile(r"^.* does not have enough properties$", re.S)
_PATTERN = re.compile(r"^.* does not match '(.*)'$", re.S)
_SCHEMA_WORDS = re.compile(
    r"required field|is not|is less|is greater|is too|should be|non-unique|is valid under|"
    r"properties|schema"
)
_RAW = re.compile(r"[\^$\\{}\[\]]|\bproperties\b|\bschema\b")


def line(problem: Problem) -> str:
    """One printed problem in plain words: ``file row N: column='value': reason``; an
    empty cell is said so (``column (empty)``), never a Python ``None``."""
    shown = plain(problem)
    if not shown.field:  # the whole row or file (its reason says what)
        return f"{shown.location}: {shown.reason}"
    if shown.value is None or shown.value == "":
        return f"{shown.location}: {shown.field} (empty): {shown.reason}"
    return str(shown)


def plain(problem: Problem, columns: Mapping[str, str] | None = None) -> Problem:
    """``problem`` with the operator's column and a plain reason (idempotent).

    ``columns``: record field ("contact.email") -> the file's column, from the mapping.
    """
    field = _column(problem.field, columns or {})
    reason = _reason(problem.reason, field, problem.value)
    if field == problem.field and reason == problem.reason:
        return problem
    return Problem(problem.location, field, problem.value, reason)


def _column(field: str, columns: Mapping[str, str]) -> str:
    if not field.startswith("/"):
        return field
    dotted = field.strip("/").replace("/", ".")
    if not dotted:
        return "(whole row)"
    dotted = re.sub(r"\.\d+$", "", dotted)  # /diagnoses/0 -> diagnoses
    if dotted in columns:
        return columns[dotted]
    parts = [c for f, c in columns.items() if f.startswith(dotted + ".")]
    if parts:
        return " / ".join(sorted(parts))
    return dotted


def _reason(reason: str, field: str, value: object) -> str:
    if _NOT_ENOUGH.match(reason):
        if field.split(" / ")[0].split(".")[0] in ("age",) or (
            isinstance(value, dict) and set(value) <= {"unit", "min", "max"}
        ):
            return "an age unit alone is not an age range: give a minimum or a maximum age"
        return "incomplete: fill in at least one more of its values"
    match = _PATTERN.match(reason)
    if match:
        for needle, what in _PATTERNS:
            if needle in match.group(1):
                return f"not in the expected form: must be {what}"
        return "not in the expected form"
    if not _SCHEMA_WORDS.search(reason):  # the readers' own reasons are plain already
        return reason
    for rule, text in _RULES:
        found = rule.match(reason)
        if found:
            return text.format(*found.groups())
    if _RAW.search(reason.replace("'", "")) and (" is " in reason or "does not" in reason):
        return "not a valid value here"
    return reason


def reason_class(reason: str) -> str:
    """The reason without its values, for counting: quoted text becomes '…', numbers N."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    text = re.sub(r"(?<![\w.:-])\d+(?![\w.:-])", "N", text)  # not ICD-10, C50.9
    text = re.sub(r"\(did you mean [^)]*\)", "(did you mean …)", text)
    return re.sub(r"; did you mean [^;]*\?$", "; did you mean …?", text).strip()


def summary(problems: Iterable[Problem]) -> list[tuple[str, int]]:
    """(reason class, number of problems), most frequent first."""
    return Counter(reason_class(p.reason) for p in problems).most_common()


def rows_with_problems(problems: Iterable[Problem]) -> int:
    """How many rows have problems: distinct (file, row) of every location (a row with
    three problems counts once; a problem without a row counts as one)."""
    return len({place for p in problems for place in split_location(p.location)})


def split_location(location: str) -> list[tuple[str, str]]:
    """[(file, row)] of a location: "a.csv row 3" -> [("a.csv", "3")]; a duplicate's
    "a.csv row 3; a.csv row 9" gives two; anything else is (location, "")."""
    out: list[tuple[str, str]] = []
    for part in location.split("; "):
        name, sep, row = part.rpartition(" row ")
        out.append((name, row) if sep and row.isdigit() else (part, ""))
    return out


def write_report(path: Path, problems: Iterable[Problem]) -> int:
    """Write ``problems`` as CSV (file, row, column, value, reason); return the rows written."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        for problem in problems:
            problem = plain(problem)
            value = problem.to_json()["value"]
            for name, row in split_location(problem.location):
                writer.writerow(
                    (name, row, problem.field, "" if value is None else value, problem.reason)
                )
                count += 1
    return count

"""Turn one parsed sample (from CSV or FHIR) into a checked staging row, or problems."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from node.importing.codes import NO_VALUE, Codes, diagnosis, not_available
from protocol.errors import Problem

__all__ = [
    "AGE_TEXT",
    "Bad",
    "MAX_AGE",
    "MEMO",
    "RawSample",
    "SampleChecker",
    "age_at",
    "parse_date",
]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$")
_EU_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
AGE_TEXT = re.compile(r"\d{1,3}")  # an age in whole years, as written (fullmatch)
MAX_AGE = 130
MEMO = 100_000  # entries per memo before it is cleared (bounded memory on odd exports)
Bad = Callable[[str, object, str], None]


@dataclass
class RawSample:
    """A sample as read from a source, values still as the source wrote them."""

    local_id: str | None = None
    donor_id: str | None = None
    biobank: str | None = None
    collection: str | None = None
    sample_type: str | None = None
    storage_temperature: str | None = None
    sex: str | None = None
    age: str | None = None
    birth: str | None = None
    date: str | None = None
    diagnoses: list[str] = field(default_factory=list)
    use_conditions: list[str] = field(default_factory=list)
    dataset_types: list[str] = field(default_factory=list)


def parse_date(text: str) -> tuple[int, int | None, int | None] | None:
    """(year, month, day) from ISO (YYYY, YYYY-MM, YYYY-MM-DD[T...]) or dd.mm.yyyy; else None."""
    text = text.strip()
    m = _DATE.match(text)
    if m:
        parts = (int(m.group(1)), m.group(2) and int(m.group(2)), m.group(3) and int(m.group(3)))
    else:
        e = _EU_DATE.match(text)
        if not e:
            return None
        parts = (int(e.group(3)), int(e.group(2)), int(e.group(1)))
    year, month, day = parts
    try:
        dt.date(year, month or 1, day or 1)
    except ValueError:
        return None
    return year, month or None, day or None


def age_at(
    birth: tuple[int, int | None, int | None], year: int, month: int | None, day: int | None
) -> int:
    """Whole years from ``birth`` (a :func:`parse_date` result) to a collection date."""
    age = year - birth[0]
    if birth[1] and birth[2] and month and day and (month, day) < (birth[1], birth[2]):
        age -= 1
    return age


class SampleChecker:
    """Checks and maps sample values; ``names`` says which source column each field came from."""

    def __init__(self, codes: Codes, sources: tuple[str, ...] = ()) -> None:
        self.codes = codes
        self.sources = sources
        self.this_year = dt.date.today().year
        # memos: exports repeat a small set of values per field
        self._mapped: dict[tuple[str, str], str | None] = {}
        self._dates: dict[str, tuple[int, int | None, int | None] | None] = {}
        self._diagnoses: dict[tuple[str, ...], tuple[str, list[tuple[str, str]]]] = {}
        self._lists: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, str]]]] = {}

    def check(
        self, raw: RawSample, location: str, names: dict[str, str] | None = None
    ) -> tuple[tuple[object, ...] | None, list[Problem]]:
        """A staging row (``staging.INPUT_COLUMNS`` order), or None and the problems."""
        names = names or {}
        problems: list[Problem] = []

        def bad(fld: str, value: object, reason: str) -> None:
            problems.append(
                Problem(
                    location=location, field=names.get(fld, "/" + fld), value=value, reason=reason
                )
            )

        if not raw.local_id:
            bad("local_id", raw.local_id, "missing required local sample id")
        if not raw.biobank:
            bad("biobank", raw.biobank, "missing required biobank")
        if not raw.collection:
            bad("collection", raw.collection, "missing required collection")
        sample_type = self._code("sample-type", "sample_type", raw.sample_type, bad, required=True)
        storage = self._code(
            "storage-temperature", "storage_temperature", raw.storage_temperature, bad
        )
        sex = self._code("sex", "sex", raw.sex.lower() if raw.sex else raw.sex, bad)
        year = month = day = None
        if raw.date:
            parsed = self._date(raw.date)
            if parsed is None:
                bad("date", raw.date, "not a date (YYYY, YYYY-MM-DD or DD.MM.YYYY)")
            else:
                year, month, day = parsed
                if not 1800 <= year <= self.this_year + 1:
                    bad("date", raw.date, f"collection year {year} is out of range")
                    year = None
        age = self._age(raw, year, month, day, bad)
        # the list fields repeat a few combinations: check each combination once
        key = tuple(raw.diagnoses)
        memo = self._diagnoses.get(key)
        if memo is None:
            if len(self._diagnoses) > MEMO:
                self._diagnoses.clear()
            memo = self._diagnoses[key] = self._check_diagnoses(raw.diagnoses)
        diagnoses, issues = memo
        for value, reason in issues:
            bad("diagnoses", value, reason)
        use = self._code_list("duo", "use_conditions", raw.use_conditions, bad)
        datasets = self._code_list("dataset-type", "dataset_types", raw.dataset_types, bad)
        if problems:
            return None, problems
        return (
            raw.local_id,
            raw.donor_id or None,
            raw.biobank,
            raw.collection or None,
            sample_type,
            storage,
            sex,
            age,
            year,
            diagnoses,
            use,
            datasets,
            location,
        ), []

    def _check_diagnoses(self, values: list[str]) -> tuple[str, list[tuple[str, str]]]:
        diagnoses: list[dict[str, str]] = []
        issues: list[tuple[str, str]] = []
        for value in values:
            if not_available(value):
                continue  # "not available" (NAV, UNK, ...): no value, on purpose
            code = diagnosis(value)
            if code is None:
                issues.append(
                    (
                        value,
                        "not an ICD-10 code (e.g. C50.9, a block C76-C80, a chapter "
                        "urn:miriam:icd:II) or ORPHA code (ORPHA:558)",
                    )
                )
            elif code["system"] == "ORPHA" and not self._known("orpha", code["code"]):
                issues.append((value, "not a known ORPHA code (e.g. ORPHA:558)"))
            elif code not in diagnoses:
                diagnoses.append(code)
        return orjson.dumps(diagnoses).decode(), issues

    def _code_list(self, codelist: str, fld: str, values: list[str], bad: Bad) -> str:
        """JSON text of the sorted, unique mapped codes (unknown codes reported)."""
        key = (codelist, tuple(values))
        memo = self._lists.get(key)
        if memo is None:
            if len(self._lists) > MEMO:
                self._lists.clear()
            issues: list[tuple[str, str]] = []
            mapped = [
                c
                for c in (
                    self._code(codelist, fld, v, lambda _f, v, r: issues.append((str(v), r)))
                    for v in values
                )
                if c
            ]
            memo = self._lists[key] = (orjson.dumps(sorted(set(mapped))).decode(), issues)
        for value, reason in memo[1]:
            bad(fld, value, reason)
        return memo[0]

    def _date(self, text: str) -> tuple[int, int | None, int | None] | None:
        if text not in self._dates:
            if len(self._dates) > MEMO:
                self._dates.clear()
            self._dates[text] = parse_date(text)
        return self._dates[text]

    def _known(self, codelist: str, code: str) -> bool:
        try:
            return code in self.codes.codes(codelist)
        except Exception:  # noqa: BLE001 - a list the project does not ship: pattern check only
            return True

    def _code(
        self, codelist: str, fld: str, value: str | None, bad: Bad, required: bool = False
    ) -> str | None:
        if value is None or value == "":
            if required:
                bad(fld, value, f"missing required {fld}")
            return None
        key = (codelist, value)
        if key in self._mapped:
            mapped = self._mapped[key]
        else:
            if len(self._mapped) > MEMO:
                self._mapped.clear()
            mapped = self._mapped[key] = self.codes.map(codelist, value, self.sources)
        if mapped is None:
            bad(fld, value, self.codes.unknown(codelist, fld, value))
        elif mapped == NO_VALUE:
            if required:
                bad(fld, value, f"missing required {fld} ({value!r} means not available)")
            return None
        return mapped

    def _age(
        self, raw: RawSample, year: int | None, month: int | None, day: int | None, bad: Bad
    ) -> int | None:
        if raw.age not in (None, ""):
            text = str(raw.age).strip()
            if not AGE_TEXT.fullmatch(text):
                bad("age", raw.age, "not a whole number of years")
                return None
            if int(text) > MAX_AGE:
                bad("age", raw.age, f"age above {MAX_AGE} years")
                return None
            return int(text)
        if raw.birth and year is not None:
            birth = parse_date(raw.birth)
            if birth is None:
                bad("birth", raw.birth, "not a birth date or year")
                return None
            age = age_at(birth, year, month, day)
            if not 0 <= age <= MAX_AGE:
                bad("birth", raw.birth, f"age at collection would be {age}")
                return None
            return age
        return None

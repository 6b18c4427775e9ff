"""``biobank-node mapping init``: guess a mapping file from an export's header and values.

Reads the header and a sample of rows of one or more CSV/TSV files, matches columns to
record fields by name (synonyms in English, German, Danish, Italian and Chinese, plus the
BBMRI-ERIC Directory's column names) and by the values they hold (code lists, the
mapping tables of ``schemas/mappings``, diagnosis codes, dates, ages), and writes a
commented TOML mapping (the format of :mod:`node.importing.mapping`) with its guesses,
the columns it left out and the values that still need a decision.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from node.importing.codes import Codes, diagnosis, not_available
from node.importing.mapping import FIELDS, LIST_FIELDS, SAMPLE_LIST_FIELDS, Mapping
from node.importing.recordfields import CODED
from node.importing.samples import parse_date
from protocol.codelists import CodeLists
from protocol.errors import ConfigError

__all__ = ["Guess", "guess", "mapping_app", "render", "value_code"]

SAMPLE_ROWS = 200_000
MAX_DISTINCT = 2000  # distinct values kept per column
MAX_LISTED = 40  # distinct values listed per field

# which code list checks a field's values (samples use the singular field names)
CODELIST = {**CODED, "sample_type": "sample-type", "storage_temperature": "storage-temperature"}

# column names per record field, any language; compared after _norm()
NAMES: dict[str, tuple[str, ...]] = {
    "local_id": (
        "sample id",
        "sampleid",
        "sample",
        "specimen id",
        "specimen",
        "sample number",
        "proben id",
        "probe id",
        "probennummer",
        "probe",
        "proben nr",
        "prøve id",
        "prøvenummer",
        "prøve",
        "id campione",
        "codice campione",
        "campione",
        "样本编号",
        "样本id",
        "样本号",
        "标本编号",
    ),
    "donor_id": (
        "donor id",
        "donor",
        "participant id",
        "participant",
        "patient id",
        "patient",
        "subject id",
        "subject",
        "pseudonym",
        "spender pseudonym",
        "spender id",
        "spender",
        "patienten id",
        "proband",
        "id donatore",
        "donatore",
        "id paziente",
        "paziente",
        "捐献者编号",
        "捐献者",
        "患者编号",
        "供者编号",
        "受试者编号",
        "cpr",
    ),
    "biobank": (
        "biobank",
        "biobank id",
        "site",
        "standort",
        "sede",
        "centre",
        "center",
        "institute",
        "样本库",
        "生物样本库",
        "biobanca",
    ),
    "collection": (
        "collection",
        "collection id",
        "study",
        "studie",
        "sammlung",
        "kollektiv",
        "samling",
        "collezione",
        "studio",
        "样本集",
        "队列",
        "项目",
        "cohort",
        "kohorte",
    ),
    "sample_type": (
        "sample type",
        "material",
        "material type",
        "specimen type",
        "materiale",
        "materialtyp",
        "probenart",
        "probentyp",
        "prøvetype",
        "tipo materiale",
        "tipo campione",
        "样本类型",
        "标本类型",
    ),
    "storage_temperature": (
        "storage temperature",
        "storage temp",
        "temperature",
        "temp",
        "lagertemperatur",
        "lagerung",
        "opbevaringstemperatur",
        "temperatur",
        "temperatura di conservazione",
        "temperatura",
        "保存温度",
        "储存温度",
        "存储温度",
    ),
    "sex": ("sex", "gender", "geschlecht", "køn", "sesso", "genere", "性别"),
    "age": (
        "age",
        "age at collection",
        "age years",
        "alter",
        "alter bei entnahme",
        "alder",
        "alder ved prøvetagning",
        "età",
        "eta",
        "età al prelievo",
        "年龄",
        "采集年龄",
    ),
    "birth": (
        "birth date",
        "date of birth",
        "birthdate",
        "dob",
        "birth year",
        "geburtsdatum",
        "geburtsjahr",
        "fødselsdato",
        "data di nascita",
        "出生日期",
        "出生年份",
    ),
    "date": (
        "collection date",
        "date",
        "sampling date",
        "draw date",
        "entnahmedatum",
        "entnahme",
        "datum",
        "prøvetagningsdato",
        "dato",
        "data prelievo",
        "data",
        "采集日期",
        "日期",
    ),
    "diagnoses": (
        "diagnosis",
        "diagnoses",
        "diagnosis codes",
        "icd10",
        "icd 10",
        "icd",
        "disease",
        "diagnose",
        "diagnosen",
        "diagnoser",
        "diagnosi",
        "诊断",
        "诊断编码",
        "diagnosis available",
    ),
    "use_conditions": (
        "use conditions",
        "consent",
        "consent codes",
        "duo",
        "data use",
        "nutzungsbedingungen",
        "einwilligung",
        "brugsvilkår",
        "samtykke",
        "condizioni d'uso",
        "condizioni d uso",
        "consenso",
        "使用条件",
        "知情同意",
    ),
    "dataset_types": (
        "dataset types",
        "data types",
        "data available",
        "data categories",
        "datenarten",
        "datentypen",
        "datatyper",
        "tipi di dati",
        "数据类型",
    ),
    # biobank and collection records
    "id": ("id", "identifier", "kennung"),
    "name": ("name", "title", "bezeichnung", "navn", "nome", "名称"),
    "acronym": ("acronym", "abbreviation", "akronym", "kürzel", "acronimo", "缩写"),
    "description": ("description", "beschreibung", "beskrivelse", "descrizione", "描述"),
    "url": ("url", "website", "homepage", "webseite"),
    "juristic_person": ("juristic person", "legal entity", "organisation", "organization"),
    "country": ("country", "land", "paese", "国家"),
    "contact.email": ("contact email", "email", "e mail", "contact", "kontakt"),
    "contact.name": ("contact name", "head", "ansprechpartner"),
    "contact.role": ("contact role", "head role", "role"),
    "quality_standards": ("quality standards", "quality", "standards", "combined quality"),
    "capabilities": ("capabilities", "services"),
    "sample_source": ("sample source", "source"),
    "age.min": ("age min", "age low", "min age", "minimum age", "age from"),
    "age.max": ("age max", "age high", "max age", "maximum age", "age to"),
    "age.unit": ("age unit",),
    "sample_types": ("sample types", "materials", "material types", "sample type", "material"),
    "storage_temperatures": (
        "storage temperatures",
        "storage temperature",
        "temperatures",
        "temp types",
    ),
    "design": ("design", "type", "collection type", "collection types"),
    "collection_setting": ("collection setting", "setting"),
    "status": ("status",),
    "number_of_subjects": ("number of subjects", "number of donors", "donors", "subjects"),
    "size": ("size", "number of samples", "samples"),
}
# fields a column may be matched to by its values alone
VALUE_ONLY = frozenset({*CODELIST, "diagnoses", "use_conditions", "contact.email"}) - {"country"}
# fields whose name alone is not enough when no sampled value fits
STRICT = frozenset({"contact.email", "date", "birth", "age"})
# sample-field names that also name the collection/biobank fields (not for samples)
RECORD_ONLY = {"id", "name", "acronym", "description", "url"}

# local names of coded values (compared after _norm); the code list labels are tried too
VALUE_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "sample-type": {
        "WholeBlood": ("whole blood", "vollblut", "fuldblod", "sangue intero", "全血", "blood"),
        "Plasma": ("plasma", "edta plasma", "plasma edta", "citrat plasma", "血浆"),
        "Serum": ("serum", "siero", "血清"),
        "BuffyCoat": ("buffy coat", "buffycoat", "白膜层"),
        "DNA": ("dna", "脱氧核糖核酸"),
        "RNA": ("rna",),
        "Urine": ("urine", "urin", "urina", "harn", "尿液", "尿"),
        "Saliva": ("saliva", "speichel", "spyt", "唾液"),
        "TissueFreshFrozen": (
            "fresh frozen tissue",
            "frozen tissue",
            "tissue frozen",
            "gewebe kryokonserviert",
            "gewebe gefroren",
            "kryogewebe",
            "væv frosset",
            "frosset væv",
            "tessuto congelato",
            "冷冻组织",
        ),
        "TissueFFPE": (
            "ffpe",
            "ffpe block",
            "tissue ffpe",
            "gewebe ffpe",
            "væv ffpe",
            "tessuto ffpe",
            "石蜡包埋组织",
            "石蜡组织",
        ),
        "CerebrospinalFluid": (
            "csf",
            "cerebrospinal fluid",
            "liquor",
            "spinalvæske",
            "liquido cerebrospinale",
            "脑脊液",
        ),
        "Faeces": ("faeces", "feces", "stool", "stuhl", "fæces", "feci", "粪便"),
        "PBMC": ("pbmc", "外周血单个核细胞"),
        "Fibroblast": (
            "fibroblast",
            "fibroblasts",
            "fibroblasten",
            "fibroblaster",
            "fibroblasti",
            "成纤维细胞",
        ),
    },
    "storage-temperature": {
        "RT": (
            "room temperature",
            "ambient",
            "raumtemperatur",
            "stuetemperatur",
            "temperatura ambiente",
            "室温",
            "rt",
        ),
        "LN": (
            "liquid nitrogen",
            "ln2",
            "ln2 vapour",
            "ln",
            "flüssigstickstoff",
            "stickstoff",
            "flydende nitrogen",
            "azoto liquido",
            "液氮",
        ),
    },
    "sex": {
        "female": (
            "f",
            "w",
            "k",
            "female",
            "woman",
            "weiblich",
            "kvinde",
            "femmina",
            "donna",
            "女",
            "女性",
        ),
        "male": ("m", "male", "man", "männlich", "mand", "maschio", "uomo", "男", "男性"),
        "other": ("o", "a", "d", "x", "other", "divers", "anden", "andet", "altro", "其他"),
        "unknown": (
            "u",
            "nd",
            "na",
            "n a",
            "unknown",
            "unbekannt",
            "ukendt",
            "sconosciuto",
            "non noto",
            "未知",
        ),
    },
    "dataset-type": {
        "Lifestyle": ("lifestyle", "lebensstil", "livsstil", "stile di vita", "生活方式"),
        "Environmental": ("environmental", "umwelt", "miljø", "ambientale", "环境"),
        "Physiological": ("physiological", "physiologie", "fysiologisk", "fisiologici", "生理"),
        "Biochemical": ("biochemical", "biochemie", "biokemisk", "biochimici", "生化"),
        "Clinical": ("clinical", "klinisch", "klinisk", "clinici", "临床"),
        "Psychological": ("psychological", "psychologie", "psykologisk", "psicologici", "心理"),
        "Genomic": ("genomic", "genomdaten", "genomisk", "genomici", "基因组"),
        "Proteomic": ("proteomic", "proteomik", "proteomisk", "proteomici", "蛋白质组"),
        "Metabolomic": ("metabolomic", "metabolomik", "metabolomisk", "metabolomici", "代谢组"),
        "BodyImage": ("imaging", "bildgebung", "billeddiagnostik", "医学影像", "body image"),
        "WholeSlideImage": (
            "whole slide image",
            "ganzschnittbilder",
            "vetrini digitali",
            "病理切片图像",
            "wsi",
        ),
        "PhotoImage": ("photo", "photo image", "fotodokumentation", "fotos", "照片"),
        "GenealogicalRecords": (
            "genealogy",
            "genealogical records",
            "stammbaum",
            "stamtavle",
            "genealogia",
            "家系",
        ),
    },
}


def _norm(text: str) -> str:
    """Lower case, NFKC, no bracketed parts, punctuation as single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)
    text = re.sub(r"[\s_\-./:;,|'\"]+", " ", text)
    return text.strip()


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _name_score(header: str, fld: str) -> int:
    """How well a column name names a field: 100 exact, 50+ a phrase within it, 0 none."""
    h = _norm(header)
    best = 0
    for phrase in (*NAMES.get(fld, ()), _norm(fld)):
        p = _norm(phrase)
        if not p:
            continue
        if h == p or h.replace(" ", "") == p.replace(" ", ""):
            return 100
        hit = p in h if _cjk(p) else re.search(rf"(^| ){re.escape(p)}($| )", h) is not None
        if hit:
            best = max(best, 50 + len(p))
    return best


@dataclass
class _Tables:
    """The code lists' labels and the mapping tables, for naming values."""

    codes: Codes
    lists: CodeLists
    tables: dict[str, list[tuple[str, dict[str, str]]]]
    by_name: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> _Tables:
        tables: dict[str, list[tuple[str, dict[str, str]]]] = {}
        folder = resources.files("schemas") / "mappings"
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if not item.name.endswith(".json") or "--" not in item.name:
                continue
            source, codelist = item.name[:-5].split("--", 1)
            data = json.loads(item.read_text(encoding="utf-8"))
            table = {str(k): str(v) for k, v in data.get("map", {}).items() if v is not None}
            tables.setdefault(codelist, []).append((source, table))
        return cls(Codes.default(), CodeLists.default(), tables)

    def names(self, codelist: str) -> dict[str, str]:
        """Normalised code, label (en, zh) and local name -> code, built once per list."""
        found = self.by_name.get(codelist)
        if found is None:
            known = self.codes.codes(codelist)
            found = {}
            for code, names in VALUE_NAMES.get(codelist, {}).items():
                if code in known:
                    found.update({_norm(n): code for n in names})
            try:
                entries = self.lists.get(codelist).entries
            except KeyError:
                entries = ()
            for entry in entries:
                found.update({_norm(entry.en): entry.code, _norm(entry.zh): entry.code})
            found.update({_norm(code): code for code in sorted(known)})
            self.by_name[codelist] = found
        return found


def value_code(codelist: str, value: str, tables: _Tables | None = None) -> tuple[str, str] | None:
    """(our code, how) for one of their values: ``how`` is "code", a mapping-table source
    name (the importer maps these itself), or "guessed" (needs a [values] line)."""
    t = tables or _TABLES()
    known = t.codes.codes(codelist)
    if value in known:
        return value, "code"
    for source, table in t.tables.get(codelist, []):
        mapped = table.get(value)
        if mapped is not None and mapped in known:
            return mapped, source
    v = _norm(value)
    if not v:
        return None
    found = t.names(codelist).get(v)
    if found is not None:
        return found, "guessed"
    if codelist == "storage-temperature":
        return _temperature(unicodedata.normalize("NFKC", value).lower())
    return None


def _temperature(v: str) -> tuple[str, str] | None:
    """A temperature code from a number in the text (-80 °C, +4 °C, 2-8 °C, -20C)."""
    m = re.search(r"([+\-−]?)\s*(\d+)(?:\s*(?:~|to|-|–| )\s*[+-]?\d+)?\s*(?:°|℃|c\b|$)", v)
    if not m:
        return None
    degrees = int(m.group(2)) * (-1 if m.group(1) in ("-", "−") else 1)
    for low, high, code in (
        (-196, -150, "LN"),
        (-85, -60, "-60to-85"),
        (-35, -18, "-18to-35"),
        (2, 10, "2to10"),
        (15, 30, "RT"),
    ):
        if low <= degrees <= high:
            return code, "guessed"
    return None


_CACHE: list[_Tables] = []


def _TABLES() -> _Tables:  # noqa: N802 - a lazily loaded constant
    if not _CACHE:
        _CACHE.append(_Tables.load())
    return _CACHE[0]


@dataclass
class Sampled:
    """The header and, per column, the distinct values of the rows read (with counts)."""

    header: list[str]
    delimiter: str
    columns: dict[str, list[str]]  # distinct non-empty values, first seen first
    filled: dict[str, int]  # rows with a non-empty cell
    rows: int
    overflow: set[str] = field(default_factory=set)  # more than MAX_DISTINCT values


def _sniff(first_line: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _rows(path: Path, kind: str | None) -> tuple[str, Generator[list[str], None, None]]:
    """(delimiter, rows: the header first) of a CSV/TSV file or of a workbook's sheet (the
    sheet named for ``kind``, else a ``Samples`` sheet, else the first; read through
    node.importing.sources.xlsx, streamed)."""
    if path.suffix.lower() in (".xls", ".ods"):
        raise ConfigError(f"{path}: save it as .xlsx or CSV (UTF-8) first")
    if path.suffix.lower() == ".xlsx":
        from node.importing.sources import xlsx

        names = list(xlsx.roles(path))
        if not names:
            raise ConfigError(f"{path}: the workbook has no sheet")
        sheet = xlsx.choose_sheet(names, kind or "sample")
        table = xlsx.rows(path, sheet, fields=True)

        def cells() -> Generator[list[str], None, None]:
            for _loc, row, _problems in table:
                if row is not None:
                    yield list(row) if isinstance(row, list) else list(row.values())

        return ",", cells()

    def lines() -> Generator[list[str], None, None]:
        try:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                first = fh.readline()
                fh.seek(0)
                yield from csv.reader(fh, delimiter=_sniff(first, path.suffix.lower()))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{path}: cannot read as UTF-8 CSV/TSV: {exc}") from exc

    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            delimiter = _sniff(fh.readline(), path.suffix.lower())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read as UTF-8 CSV/TSV: {exc}") from exc
    return delimiter, lines()


def read_sample(files: list[Path], limit: int = SAMPLE_ROWS, kind: str | None = None) -> Sampled:
    """Header (of the first file) and the distinct values per column of up to ``limit``
    rows of each file (streamed: a big export costs time, not memory). CSV, TSV and
    .xlsx (the sheet named for ``kind``, else ``Samples``, else the first)."""
    header: list[str] | None = None
    delimiter = ","
    seen: dict[str, dict[str, None]] = {}
    filled: Counter[str] = Counter()
    overflow: set[str] = set()
    rows = 0
    for path in files:
        file_delimiter, reader = _rows(path, kind)
        file_header = [h.strip() for h in next(reader, [])]
        if not any(file_header):
            raise ConfigError(f"{path}: no header row")
        if header is None:
            header, delimiter = file_header, file_delimiter
            seen = {h: {} for h in header if h}
        elif file_header != header:
            raise ConfigError(f"{path}: its header differs from {files[0]}'s")
        for n, row in enumerate(reader):
            if n >= limit:
                break
            rows += 1
            for name, cell in zip(file_header, row, strict=False):
                value = cell.strip()
                if not name or not value:
                    continue
                filled[name] += 1
                values = seen[name]
                if value not in values:
                    if len(values) < MAX_DISTINCT:
                        values[value] = None
                    else:
                        overflow.add(name)
        reader.close()  # a workbook or file left before its end
    assert header is not None
    return Sampled(
        header, delimiter, {k: list(v) for k, v in seen.items()}, dict(filled), rows, overflow
    )


def _separator(sampled: Sampled) -> str:
    """The list separator: of | ; , the one that most often splits a cell into codes
    (items without spaces); a delimiter inside a cell was quoted, so it counts too."""
    counts: Counter[str] = Counter()
    for cells in sampled.columns.values():
        for cell in cells[:500]:
            for sep in ("|", ";", ","):
                items = cell.split(sep)
                if len(items) > 1 and all(i.strip() and " " not in i.strip() for i in items):
                    counts[sep] += 1
    return counts.most_common(1)[0][0] if counts else "|"


def _items(cells: list[str], separator: str, is_list: bool) -> list[str]:
    if not is_list:
        return cells
    return [i.strip() for c in cells for i in c.split(separator) if i.strip()]


def _fit(fld: str, cells: list[str], separator: str, is_list: bool) -> float:
    """The share of a column's sampled values that fit ``fld`` (0 when it cannot say)."""
    values = _items(cells, separator, is_list)
    if not values:
        return 0.0
    distinct = list(dict.fromkeys(values))[:500]
    ok: int
    if fld == "diagnoses":
        ok = sum(diagnosis(v) is not None for v in distinct)
    elif fld == "use_conditions":
        ok = sum(v in _TABLES().codes.codes("duo") for v in distinct)
    elif fld in ("date", "birth"):
        ok = sum(parse_date(v) is not None and not v.isdigit() for v in distinct)
    elif fld in ("age", "age.min", "age.max"):
        ok = sum(v.isdigit() and int(v) <= 120 for v in distinct)
    elif fld == "contact.email":
        ok = sum("@" in v for v in distinct)
    elif fld in CODELIST and fld not in ("country",):
        ok = sum(value_code(CODELIST[fld], v) is not None for v in distinct)
    else:
        return 0.0
    return ok / len(distinct)


@dataclass
class Guess:
    """What ``mapping init`` found: the mapping it proposes and what it could not decide."""

    kind: str
    delimiter: str
    list_separator: str
    columns: dict[str, str]  # field -> column
    why: dict[str, str]  # field -> how it was matched
    unmatched: list[str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # guessed [values]
    mapped: dict[str, dict[str, str]] = field(default_factory=dict)  # known via tables
    undecided: dict[str, list[str]] = field(default_factory=dict)
    # "not available" codes (NAV, NI, ...): no value, left out by the importer on purpose
    dropped: dict[str, list[str]] = field(default_factory=dict)
    decide: dict[str, list[str]] = field(default_factory=dict)  # free ids to name
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # required fields without a column
    rows: int = 0

    def mapping(self) -> Mapping:
        """The guess as the importer reads it (checks that the file will load)."""
        return Mapping.from_dict(
            {
                "kind": self.kind,
                "delimiter": self.delimiter,
                "list_separator": self.list_separator,
                "sources": self.sources,
                "columns": self.columns,
                "values": self.values,
            }
        )


def _lists(kind: str) -> frozenset[str]:
    return SAMPLE_LIST_FIELDS if kind == "sample" else LIST_FIELDS


def _assign(kind: str, sampled: Sampled, separator: str) -> tuple[dict[str, str], dict[str, str]]:
    fields = sorted(FIELDS[kind] - (RECORD_ONLY if kind == "sample" else set()))
    lists = _lists(kind)
    scored: list[tuple[int, str, str, str]] = []
    for column in sampled.header:
        if not column:
            continue
        cells = sampled.columns.get(column, [])
        for fld in fields:
            by_name = _name_score(column, fld)
            fit = _fit(fld, cells, separator, fld in lists) if cells else 0.0
            score = by_name + (40 if fit >= 0.8 else 0)
            if by_name and cells and fit == 0.0 and _checkable(fld):
                if fld in STRICT:
                    continue  # named like it, but not one value is an e-mail, date or age
                score -= 30  # named like it, but no value fits
            if not by_name and fld not in VALUE_ONLY:
                continue  # dates, ages and ids need a name: many columns hold such values
            if score >= 40:
                how = "name" if by_name else "values"
                if by_name and fit >= 0.8:
                    how = "name and values"
                scored.append((score, fld, column, how))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    columns: dict[str, str] = {}
    why: dict[str, str] = {}
    taken: set[str] = set()
    for _score, fld, column, how in scored:
        if fld in columns or column in taken:
            continue
        if fld in ("date", "birth") and ({"date", "birth"} & set(columns)) and how == "values":
            continue
        columns[fld] = column
        why[fld] = how
        taken.add(column)
    return columns, why


def _checkable(fld: str) -> bool:
    return fld in CODELIST or fld in (
        "diagnoses",
        "date",
        "birth",
        "age",
        "use_conditions",
        "contact.email",
    )


def _kind(sampled: Sampled, separator: str) -> str:
    best, best_score = "sample", -1
    for kind in ("sample", "collection", "biobank"):
        columns, _why = _assign(kind, sampled, separator)
        score = len(columns)
        if kind == "sample" and not {"donor_id", "age", "birth", "date"} & set(columns):
            score -= 3  # no donor, age or date: not one row per sample
        if kind == "biobank" and "biobank" in {_norm(h) for h in sampled.header}:
            score -= 3  # a table that names its biobank holds something else
        if score > best_score:
            best, best_score = kind, score
    return best


def guess(files: list[Path], kind: str | None = None, limit: int = SAMPLE_ROWS) -> Guess:
    """Read ``files`` and guess their mapping."""
    if kind is not None and kind not in FIELDS:
        raise ConfigError(f"kind must be one of sample, collection, biobank, not {kind!r}")
    sampled = read_sample(files, limit, kind)
    separator = _separator(sampled)
    kind = kind or _kind(sampled, separator)
    columns, why = _assign(kind, sampled, separator)
    id_field = "local_id" if kind == "sample" else "id"
    if id_field not in columns:
        column = _distinct_column(sampled, set(columns.values()))
        if column is not None:
            columns[id_field] = column
            why[id_field] = "values (every sampled value differs)"
    lists = _lists(kind)
    made = Guess(
        kind=kind,
        delimiter=sampled.delimiter,
        list_separator=separator,
        columns=dict(sorted(columns.items())),
        why=why,
        unmatched=[h for h in sampled.header if h and h not in columns.values()],
        rows=sampled.rows,
    )
    sources: Counter[str] = Counter()
    for fld, column in made.columns.items():
        cells = sampled.columns.get(column, [])
        distinct = list(dict.fromkeys(_items(cells, separator, fld in lists)))
        if fld in CODELIST:
            for value in distinct:
                found = value_code(CODELIST[fld], value)
                if found is None and not_available(value):
                    made.dropped.setdefault(fld, []).append(value)
                elif found is None:
                    made.undecided.setdefault(fld, []).append(value)
                elif found[1] == "guessed":
                    made.values.setdefault(fld, {})[value] = found[0]
                elif found[1] != "code":
                    made.mapped.setdefault(fld, {})[value] = found[0]
                    for source, table in _TABLES().tables.get(CODELIST[fld], []):
                        if table.get(value) == found[0]:
                            sources[source] += 1
        elif fld == "diagnoses":
            bad = [v for v in distinct if diagnosis(v) is None]
            if bad:
                made.undecided[fld] = bad
        elif fld in ("biobank", "collection") and kind == "sample":
            local = [v for v in distinct if not v.startswith("bbmri-eric:ID:")]
            if local:
                made.decide[fld] = local
    made.sources = [s for s, _n in sources.most_common()]
    required = {"sample": ("local_id", "biobank", "collection"), "collection": ("id", "biobank")}
    made.missing = [f for f in required.get(kind, ("id",)) if f not in made.columns]
    return made


def _distinct_column(sampled: Sampled, taken: set[str]) -> str | None:
    """The first free column whose sampled values are all present and all different."""
    for column in sampled.header:
        cells = sampled.columns.get(column, [])
        full = column and column not in taken and sampled.filled.get(column) == sampled.rows > 0
        if full and (column in sampled.overflow or len(cells) == sampled.rows):
            return column
    return None


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else _q(text)


def render(made: Guess, files: list[Path]) -> str:
    """The commented TOML mapping file."""
    names = ", ".join(p.name for p in files)
    out = [
        f"# Mapping guessed by 'biobank-node mapping init' from {names}",
        f"# ({made.rows} rows read). Check every line; lines marked DECIDE need you.",
        "# Then: biobank-node preview FILE --mapping THIS_FILE",
        f"kind = {_q(made.kind)}",
        f"delimiter = {_q(made.delimiter)}",
        f"list_separator = {_q(made.list_separator)}",
    ]
    if made.sources:
        out.append(f"sources = [{', '.join(_q(s) for s in made.sources)}]")
    out += ["", "[fixed]"]
    for fld in made.missing:
        if fld in ("biobank", "collection"):
            example = "bbmri-eric:ID:XX_BIOBANK" + (":collection:main" * (fld == "collection"))
            out.append(
                f"# {fld} = {_q(example)}   # DECIDE: no column found; one value for all rows"
            )
    out += ["", "[columns]"]
    for fld, column in made.columns.items():
        out.append(f"{_key(fld)} = {_q(column)}   # matched by {made.why.get(fld, 'name')}")
    for fld in made.missing:
        if fld not in ("biobank", "collection"):
            out.append(f'# {fld} = "COLUMN"   # DECIDE: required, no column found')
    if made.unmatched:
        out += ["", "# Columns left out (never imported); map one by adding a line above:"]
        out += [f"#   {_q(c)}" for c in made.unmatched]
    for fld in sorted(
        set(made.values) | set(made.undecided) | set(made.mapped) | set(made.dropped)
    ):
        guessed = made.values.get(fld, {})
        open_ = made.undecided.get(fld, [])
        mapped = made.mapped.get(fld, {})
        out += ["", f"[values.{_key(fld)}]"]
        if made.dropped.get(fld):
            shown = ", ".join(made.dropped[fld][:MAX_LISTED])
            out.append(f"# 'not available' codes, left out on purpose (no value): {shown}")
        if mapped:
            shown = ", ".join(f"{a} -> {b}" for a, b in list(mapped.items())[:MAX_LISTED])
            out.append(f"# mapped by the code tables already: {shown}")
        for local, code in guessed.items():
            out.append(f"{_q(local)} = {_q(code)}   # guessed")
        if open_:
            if fld == "diagnoses":
                out.append('# not ICD-10 or ORPHA codes (map each to one, e.g. "C50.9"):')
            else:
                known = sorted(_TABLES().codes.codes(CODELIST[fld]))
                choice = ", ".join(known) if len(known) <= 20 else f"a {CODELIST[fld]} code"
                out.append(f"# DECIDE: values with no code yet (one of: {choice}):")
            for v in open_[:MAX_LISTED]:
                near = Codes.default().suggest(CODELIST[fld], v) if fld != "diagnoses" else []
                hint = f"   # did you mean {', '.join(near)}?" if near else ""
                out.append(f'# {_q(v)} = ""{hint}')
            if len(open_) > MAX_LISTED:
                out.append(f"# ... and {len(open_) - MAX_LISTED} more")
    for fld, seen in made.decide.items():
        out += ["", f"# [values.{fld}]: these {fld} values are published as they are;"]
        out.append("# DECIDE: give each its BBMRI-ERIC Directory id, e.g.")
        out += [f'# {_q(v)} = "bbmri-eric:ID:..."' for v in seen[:MAX_LISTED]]
    return "\n".join(out) + "\n"


def _json_mapping(files: list[Path]) -> tuple[str, int]:
    """The mapping of Beacon v2 JSON files; FHIR documents need none (an error saying so)."""
    import tomllib

    from node.importing.sources import beacon

    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        if path.suffix.lower() != ".json" or not beacon.is_beacon(path):
            raise ConfigError(
                f"{path.name}: not a Beacon v2 file; FHIR documents import with no mapping "
                "(biobank-node import FILE), CSV/TSV/.xlsx files get their own mapping init"
            )
    text, decide = beacon.mapping_template(files, Codes.default())
    Mapping.from_dict(tomllib.loads(text), "the written mapping")  # the file must load
    return text, decide


mapping_app = typer.Typer(
    help="Write and check mapping files for CSV/TSV/.xlsx exports and Beacon v2 JSON."
)


@mapping_app.command("init")
def init_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="CSV/TSV/.xlsx export files (same header), or Beacon v2 JSON"),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="mapping file to write (default FILE.mapping.toml)"),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="sample, collection or biobank (default: guessed)")
    ] = None,
    rows: Annotated[int, typer.Option(help="rows read per file")] = SAMPLE_ROWS,
    force: Annotated[bool, typer.Option(help="overwrite an existing mapping file")] = False,
) -> None:
    """Guess a mapping from the files' header and values; write it with comments."""
    target = out or files[0].with_name(files[0].stem + ".mapping.toml")
    if target.exists() and not force:
        typer.echo(f"error: {target} exists (use --force to overwrite)", err=True)
        raise typer.Exit(2)
    try:
        if any(f.suffix.lower() == ".json" for f in files):
            text, decide = _json_mapping(files)
            target.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {target}: a Beacon v2 mapping, {decide} thing(s) to decide")
            return
        made = guess(files, kind, rows)
        made.mapping()  # the file must load
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    target.write_text(render(made, files), encoding="utf-8")
    open_ = sum(len(v) for v in made.undecided.values())
    typer.echo(
        f"wrote {target}: kind {made.kind}, {len(made.columns)} column(s) mapped, "
        f"{len(made.unmatched)} left out, {sum(len(v) for v in made.values.values())} "
        f"value(s) guessed, {open_} value(s) and {len(made.missing)} field(s) to decide"
    )

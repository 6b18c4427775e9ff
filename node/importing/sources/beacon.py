"""GA4GH Beacon v2 biosamples and individuals, joined on the individual id.

A file holds a JSON array of Beacon documents, one document, or a Beacon response (an
object with ``response``: ``results`` or ``resultSets[].results``). Biosamples and
individuals are told apart by content; individuals are read first whatever the file
order, so a biosample's donor fields (sex, diagnoses) come from its ``individualId``.

Read per biosample: ``id`` (local sample id), ``individualId`` (donor), sample type from
``sampleOriginType`` then ``sampleOriginDetail`` through the shipped table
``schemas/mappings/beacon-v2--sample-type.json``, ``collectionDate``, the age from the ISO
8601 duration ``collectionMoment``, and ICD-10/ORPHA diagnoses (``ICD10:`` CURIEs) from
``histologicalDiagnosis`` and the individual's ``diseases``. Sex is the individual's
NCIT, PATO or GSSO term. Beacon names no biobank or collection: the import mapping's
``[fixed]`` values give them (and may fix storage temperature, use conditions, data set
types); ``[values] sample_type`` / ``sex`` translate terms the shipped tables lack.
Every other Beacon field (measurements, phenotypes, free text) is never read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from node.importing.codes import Codes
from node.importing.mapping import Mapping
from node.importing.samples import RawSample, SampleChecker
from node.importing.sources.base import Sink
from protocol.errors import ConfigError, Problem

__all__ = ["SEX", "SOURCES", "age_years", "is_beacon", "kind_of", "mapping_template", "read"]

SOURCES = ("beacon-v2",)
#: Beacon sex terms (NCIT General Qualifier, PATO phenotypic sex, GSSO) -> our sex codes
SEX = {
    "NCIT:C16576": "female",
    "NCIT:C20197": "male",
    "NCIT:C17998": "unknown",
    "NCIT:C45908": "other",
    "PATO:0000383": "female",
    "PATO:0000384": "male",
    "GSSO:000369": "female",
    "GSSO:000371": "male",
}
_DURATION = re.compile(
    r"P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?:\d+(?:\.\d+)?H)?(?:\d+(?:\.\d+)?M)?(?:\d+(?:\.\d+)?S)?)?"
)
_SNIFF = 1 << 16
_BIOSAMPLE_KEYS = ("individualId", "sampleOriginType", "biosampleStatus", "sampleOriginDetail")
_INDIVIDUAL_KEYS = ("sex", "diseases", "karyotypicSex", "ethnicity", "geographicOrigin")
#: the fields a problem names, as the Beacon document spells them
NAMES = {
    "local_id": "id",
    "donor_id": "individualId",
    "sample_type": "sampleOriginType",
    "sex": "sex (individual)",
    "age": "collectionMoment",
    "date": "collectionDate",
    "diagnoses": "diseases / histologicalDiagnosis",
    "biobank": "biobank (mapping [fixed])",
    "collection": "collection (mapping [fixed])",
}


def is_beacon(path: Path) -> bool:
    """True when the JSON file looks like Beacon v2 (by content, never by its name).

    A JSON array, or an object with a Beacon ``response``/``meta.beaconId`` or Beacon
    document keys and no FHIR ``resourceType``. FHIR bundles stay FHIR.
    """
    with path.open("rb") as fh:
        head = fh.read(_SNIFF).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return True
    if not head.startswith(b"{") or b'"resourceType"' in head:
        return False
    return any(
        f'"{key}"'.encode() in head
        for key in ("response", "beaconId", "resultSets", *_BIOSAMPLE_KEYS, *_INDIVIDUAL_KEYS)
    )


def kind_of(doc: dict[str, Any]) -> str | None:
    """'biosample', 'individual' or None for a Beacon document."""
    if any(k in doc for k in _BIOSAMPLE_KEYS):
        return "biosample"
    if any(k in doc for k in _INDIVIDUAL_KEYS):
        return "individual"
    return None


def age_years(text: str) -> int | None:
    """Whole years of an ISO 8601 duration (``P53Y4M`` -> 53), None when not one."""
    text = text.strip()
    m = _DURATION.fullmatch(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        return None
    years, months, weeks, days = (float(g) if g else 0.0 for g in m.groups())
    return int(years + months / 12 + weeks / 52.1775 + days / 365.25)


def _documents(path: Path, sink: Sink) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        sink.problem(Problem(path.name, "", "", f"unreadable JSON: {exc}"))
        return []
    documents = _unwrap(data)
    if documents is None:
        sink.problem(Problem(path.name, "", "", "not a Beacon v2 document, array or response"))
        return []
    return documents


def _unwrap(data: Any) -> list[Any] | None:
    """The documents of a parsed Beacon file (array, document or response); None if none."""
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        response = data["response"]
        if isinstance(response.get("resultSets"), list):
            data = [
                doc
                for rs in response["resultSets"]
                if isinstance(rs, dict)
                for doc in rs.get("results") or []
            ]
        else:
            data = response.get("results") or []
    if isinstance(data, dict):
        data = [data]
    return data if isinstance(data, list) else None


def _term(value: Any) -> tuple[str, str]:
    """(id, label) of an ontology term object (or a bare string)."""
    if isinstance(value, dict):
        return str(value.get("id") or ""), str(value.get("label") or "")
    return (str(value), "") if isinstance(value, str) else ("", "")


def _age_text(value: Any) -> str | None:
    """The ISO 8601 duration of a Beacon age (string, {iso8601duration}, {age: {...}})."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("iso8601duration"), str):
            return str(value["iso8601duration"])
        if "age" in value:
            return _age_text(value["age"])
    return None


class _Reader:
    def __init__(self, sink: Sink, codes: Codes, mapping: Mapping | None) -> None:
        self.sink = sink
        self.codes = codes
        self.fixed = dict(mapping.fixed) if mapping is not None else {}
        self.values = dict(mapping.values) if mapping is not None else {}
        self.sources = (mapping.sources if mapping is not None else ()) + SOURCES
        self.checker = SampleChecker(codes, self.sources)
        self.individuals: dict[str, tuple[str | None, list[str]]] = {}

    def diagnoses(self, terms: list[Any]) -> list[str]:
        """ICD-10 and ORPHA codes among ontology terms; other systems are noted."""
        out: list[str] = []
        for term in terms:
            curie, _ = _term(term)
            prefix, _, code = curie.partition(":")
            system = prefix.upper()
            if system in ("ICD10", "ICD10CM", "ICD-10"):
                out.append(code)
            elif system in ("ORPHA", "ORDO", "ORPHANET"):
                out.append("ORPHA:" + code.removeprefix("Orphanet_"))
            elif curie:
                self.sink.ignored(
                    f"Beacon diagnosis codes of system {prefix or '(none)'} "
                    "(only ICD-10 and ORPHA are published)"
                )
        return out

    def sex(self, value: Any) -> str | None:
        curie, label = _term(value)
        if not curie and not label:
            return None
        table = self.values.get("sex", {})
        for key in (curie, label):
            if key and key in table:
                return table[key]
        if curie in SEX:
            return SEX[curie]
        return label or curie  # the checker names it if it is not a known sex

    def individual(self, doc: dict[str, Any]) -> None:
        ident = str(doc.get("id") or "")
        if not ident:
            return
        diseases = [d.get("diseaseCode") for d in doc.get("diseases") or [] if isinstance(d, dict)]
        self.individuals[ident] = (self.sex(doc.get("sex")), self.diagnoses(diseases))

    def sample_type(self, doc: dict[str, Any]) -> str | None:
        table = self.values.get("sample_type", {})
        first = ""
        for key in ("sampleOriginType", "sampleOriginDetail"):
            curie, label = _term(doc.get(key))
            first = first or curie or label
            for value in (curie, label):
                if not value:
                    continue
                mapped = table.get(value) or self.codes.map("sample-type", value, self.sources)
                if mapped is not None:
                    return self._preserved(mapped, doc)
        return first or None

    @staticmethod
    def _preserved(code: str, doc: dict[str, Any]) -> str:
        if code != "TissueFrozen":
            return code
        how = " ".join(_term(doc.get(k))[1].lower() for k in ("sampleStorage", "sampleProcessing"))
        return "TissueFFPE" if "paraffin" in how or "formalin" in how else code

    def biosample(self, doc: dict[str, Any], loc: str) -> None:
        fixed = self.fixed
        donor = doc.get("individualId")
        sex, disease_codes = self.individuals.get(str(donor), (None, [])) if donor else (None, [])
        if donor and self.individuals and str(donor) not in self.individuals:
            self.sink.ignored(
                "Beacon biosamples whose individualId is in no individuals file "
                "(imported without sex and the individual's diseases)"
            )
        raw = RawSample(
            local_id=str(doc["id"]) if doc.get("id") else None,
            donor_id=str(donor) if donor else None,
            biobank=str(fixed["biobank"]) if fixed.get("biobank") else None,
            collection=str(fixed["collection"]) if fixed.get("collection") else None,
            sample_type=self.sample_type(doc),
            storage_temperature=(
                str(fixed["storage_temperature"]) if fixed.get("storage_temperature") else None
            ),
            sex=sex,
            date=str(doc["collectionDate"]) if doc.get("collectionDate") else None,
            use_conditions=[str(v) for v in _list(fixed.get("use_conditions"))],
            dataset_types=[str(v) for v in _list(fixed.get("dataset_types"))],
        )
        problems: list[Problem] = []
        moment = _age_text(doc.get("collectionMoment"))
        if moment:
            years = age_years(moment)
            if years is None:
                problems.append(
                    Problem(loc, "collectionMoment", moment, "not an ISO 8601 duration (P53Y4M)")
                )
            else:
                raw.age = str(years)
        histology = self.diagnoses([doc.get("histologicalDiagnosis")])
        raw.diagnoses = list(dict.fromkeys([*histology, *disease_codes]))
        staged, issues = self.checker.check(raw, loc, NAMES)
        problems += issues
        if problems or staged is None:
            for p in problems:
                self.sink.problem(p, "sample", raw.local_id)
        else:
            self.sink.sample(staged)


def _list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def read(paths: list[Path], sink: Sink, codes: Codes, mapping: Mapping | None = None) -> int:
    """Stage the biosamples of every file; return the number of documents read."""
    if mapping is None or not mapping.fixed.get("biobank") or not mapping.fixed.get("collection"):
        raise ConfigError(
            "Beacon v2 exports name no biobank or collection: give them in a mapping "
            '(kind = "sample", [fixed] biobank and collection; see docs/import-beacon-xlsx.md)'
        )
    reader = _Reader(sink, codes, mapping)
    samples: list[tuple[dict[str, Any], str]] = []
    count = 0
    for path in paths:
        for n, doc in enumerate(_documents(path, sink), start=1):
            count += 1
            loc = f"{path.name} item {n}"
            kind = kind_of(doc) if isinstance(doc, dict) else None
            if kind == "individual":
                reader.individual(doc)
            elif kind == "biosample":
                samples.append((doc, f"{loc} ({doc.get('id')})"))
            else:
                sink.problem(
                    Problem(loc, "", "", "neither a Beacon v2 biosample nor an individual")
                )
    for doc, loc in samples:
        reader.biosample(doc, loc)
    return count


def mapping_template(paths: list[Path], codes: Codes) -> tuple[str, int]:
    """A first import mapping for Beacon v2 files (``biobank-node mapping init``): the
    ``[fixed]`` biobank and collection to DECIDE, and a ``[values]`` line to DECIDE for
    every origin or sex term that neither the shipped tables nor the built-in terms know.
    Returns (TOML text, number of decisions)."""
    biosamples = individuals = 0
    origin: dict[tuple[str, str], int] = {}
    sexes: dict[tuple[str, str], int] = {}
    for path in paths:
        try:
            documents = _unwrap(orjson.loads(path.read_bytes())) or []
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable JSON: {exc}") from exc
        for doc in documents:
            kind = kind_of(doc) if isinstance(doc, dict) else None
            if kind == "individual":
                individuals += 1
                curie, label = _term(doc.get("sex"))
                if (curie or label) and curie not in SEX:
                    sexes[curie or label, label] = sexes.get((curie or label, label), 0) + 1
            elif kind == "biosample":
                biosamples += 1
                terms = [_term(doc.get(k)) for k in ("sampleOriginType", "sampleOriginDetail")]
                if not any(
                    codes.map("sample-type", v, SOURCES) is not None
                    for curie, label in terms
                    for v in (curie, label)
                    if v
                ):
                    curie, label = next((t for t in terms if t[0] or t[1]), ("", ""))
                    if curie or label:
                        key = (curie or label, label)
                        origin[key] = origin.get(key, 0) + 1
    if not biosamples:
        raise ConfigError(
            f"{', '.join(p.name for p in paths)}: no Beacon v2 biosample in these files "
            "(biosamples have individualId, sampleOriginType or biosampleStatus)"
        )
    names = ", ".join(p.name for p in paths)
    lines = [
        "# Mapping written by 'biobank-node mapping init' for Beacon v2 files:",
        f"# {names} ({biosamples} biosample(s), {individuals} individual(s)).",
        "# What is read from Beacon, and the shipped term table: docs/import-beacon-xlsx.md",
        "# Lines marked DECIDE need you. Then: biobank-node preview FILES --mapping THIS_FILE",
        'kind = "sample"',
        "",
        "[columns]",
        'local_id = "id"   # the biosample id (this line only satisfies the mapping format)',
        "",
        "[fixed]",
        "# Beacon names no biobank and no collection: both must be records the node",
        "# publishes (import them first, or in the same import)",
        '# biobank = "bbmri-eric:ID:XX_BIOBANK"   # DECIDE',
        '# collection = "bbmri-eric:ID:XX_BIOBANK:collection:beacon"   # DECIDE',
        '# storage_temperature = "-60to-85"   # optional: Beacon has no storage temperature',
        '# use_conditions = ["DUO:0000042"]   # optional',
        "",
        "[values.sample_type]",
    ]
    if not origin:
        lines.append("# every origin term of these files is in the shipped table")
    for (term, label), n in sorted(origin.items()):
        what = f"{label!r}, " if label and label != term else ""
        lines.append(
            f'# "{term}" = ""   # DECIDE: {what}{n} biosample(s); a MIABIS sample type '
            "(Blood, Serum, TissueFrozen, ...)"
        )
    lines += ["", "[values.sex]"]
    if not sexes:
        lines.append("# every sex term of these files is known (NCIT, PATO, GSSO)")
    for (term, label), n in sorted(sexes.items()):
        what = f"{label!r}, " if label and label != term else ""
        lines.append(
            f'# "{term}" = ""   # DECIDE: {what}{n} individual(s); female, male, other or unknown'
        )
    return "\n".join(lines) + "\n", 2 + len(origin) + len(sexes)

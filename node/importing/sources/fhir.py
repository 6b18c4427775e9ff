"""FHIR transaction bundles (MIABIS on FHIR and BBMRI.de profiles) streamed entry by entry.

Resources are parked in TEMP tables as they stream by and joined at the end, so a
Specimen may come before its Patient and references may cross files of one import.
Understood: Organization (biobank, collection, juristic person, network), Group (MIABIS
collection; networks ignored), Patient, Condition, Specimen. Knowingly ignored (listed in
the report, not errors): Observation, DiagnosticReport, OrganizationAffiliation,
Encounter, Procedure, MedicationStatement. Anything else is a problem.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from node.importing import recordfields
from node.importing.codes import Codes
from node.importing.samples import RawSample, SampleChecker
from node.importing.sources.base import Sink
from node.importing.sources.jsonstream import JSONStreamError, stream_object
from protocol.errors import Problem

__all__ = ["DDL", "FhirReader", "IGNORED", "SOURCES", "read"]

IGNORED = frozenset(
    {
        "Observation",
        "DiagnosticReport",
        "OrganizationAffiliation",
        "Encounter",
        "Procedure",
        "MedicationStatement",
    }
)
SOURCES = ("miabis-on-fhir", "bbmri-de-fhir", "fhir-administrative-gender")

DDL = """
CREATE TEMP TABLE IF NOT EXISTS fhir_res (
    ref TEXT PRIMARY KEY, type TEXT NOT NULL, json TEXT NOT NULL, location TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS fhir_alias (alias TEXT PRIMARY KEY, ref TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS fhir_cond (patient TEXT NOT NULL, code TEXT NOT NULL);
"""


def _ext(res: dict[str, Any], name: str) -> list[Any]:
    """Values of the extensions whose URL ends with ``name``."""
    out = []
    for ext in res.get("extension", []) or []:
        if str(ext.get("url", "")).endswith("/" + name) or ext.get("url") == name:
            for key, value in ext.items():
                if key.startswith("value"):
                    out.append(value)
    return out


def _codes(value: Any) -> list[str]:
    if isinstance(value, dict):
        codings = value.get("coding") or []
        found = [str(c["code"]) for c in codings if c.get("code")]
        if not found and value.get("text"):
            found = [str(value["text"])]
        return found
    return [str(value)] if isinstance(value, str | int) else []


def _profile(res: dict[str, Any]) -> str:
    profiles = (res.get("meta") or {}).get("profile") or []
    return str(profiles[0]).rsplit("/", 1)[-1] if profiles else ""


def _public_id(res: dict[str, Any]) -> str:
    values = [str(i.get("value")) for i in res.get("identifier", []) or [] if i.get("value")]
    for v in values:
        if v.startswith("bbmri-eric:"):
            return v
    return values[0] if values else str(res.get("id", ""))


class FhirReader:
    def __init__(self, conn: sqlite3.Connection, sink: Sink, codes: Codes) -> None:
        self.conn = conn
        self.sink = sink
        self.codes = codes
        conn.executescript(DDL)

    def park(self, path: Path) -> int:
        count = 0
        try:
            for key, value in stream_object(path):
                if key == "item":
                    count += 1
                    self._entry(value, f"{path.name} entry {count}")
                elif key == "resourceType" and value != "Bundle":
                    self.sink.problem(
                        Problem(f"{path.name}", "/resourceType", value, "expected a FHIR Bundle")
                    )
        except JSONStreamError as exc:
            self.sink.problem(
                Problem(f"{path.name} entry {exc.entry + 1}", "", "", f"unreadable JSON: {exc}")
            )
        return count

    def _entry(self, entry: Any, location: str) -> None:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or "resourceType" not in res:
            self.sink.problem(Problem(location, "/resource", entry, "entry has no FHIR resource"))
            return
        rtype = str(res["resourceType"])
        ref = f"{rtype}/{res.get('id', '')}"
        location = f"{location} ({ref})"
        if rtype in IGNORED:
            self.sink.ignored(f"FHIR {rtype} resources (not part of the published metadata)")
            return
        if rtype not in ("Organization", "Group", "Patient", "Condition", "Specimen"):
            self.sink.problem(
                Problem(
                    location,
                    "/resourceType",
                    rtype,
                    f"FHIR resource type {rtype} is not understood",
                )
            )
            return
        if rtype == "Condition":
            subject = (res.get("subject") or {}).get("reference")
            for code in self._diagnoses(res.get("code")):
                self.conn.execute("INSERT INTO fhir_cond VALUES (?, ?)", (subject, code))
            return
        self.conn.execute(
            "INSERT OR REPLACE INTO fhir_res VALUES (?, ?, ?, ?)",
            (ref, rtype, orjson.dumps(res).decode(), location),
        )
        if entry.get("fullUrl"):
            self.conn.execute(
                "INSERT OR REPLACE INTO fhir_alias VALUES (?, ?)", (entry["fullUrl"], ref)
            )

    def _diagnoses(self, concept: Any) -> list[str]:
        """ICD-10 and ORPHA codes of a CodeableConcept; codes of other systems are noted."""
        out = []
        for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
            system = str(coding.get("system", "")).lower()
            if not coding.get("code"):
                continue
            if not system or "icd-10" in system or "icd10" in system or "orpha" in system:
                out.append(str(coding["code"]))
            else:
                self.sink.ignored(
                    f"diagnosis codes of system {coding.get('system')} "
                    "(only ICD-10 and ORPHA are published)"
                )
        return out

    def get(self, ref: str | None) -> dict[str, Any] | None:
        if not ref:
            return None
        row = self.conn.execute(
            "SELECT json FROM fhir_res WHERE ref = ? OR ref = (SELECT ref FROM fhir_alias "
            "WHERE alias = ?)",
            (ref, ref),
        ).fetchone()
        return None if row is None else orjson.loads(row[0])

    def resolve(self) -> None:
        orgs = [
            (orjson.loads(j), loc)
            for j, loc in self.conn.execute(
                "SELECT json, location FROM fhir_res WHERE type = 'Organization' ORDER BY rowid"
            )
        ]
        groups = [
            (orjson.loads(j), loc)
            for j, loc in self.conn.execute(
                "SELECT json, location FROM fhir_res WHERE type = 'Group' ORDER BY rowid"
            )
        ]
        self.collection_ids: dict[str, str] = {}  # Group identifier / org ref -> collection id
        self.collection_biobank: dict[str, str] = {}
        self.members: dict[str, str] = {}  # Specimen ref -> collection (Group member.entity)
        biobanks: list[str] = []
        for res, loc in orgs:
            profile = _profile(res)
            if profile in ("miabis-biobank", "Biobank"):
                biobanks.append(self._biobank(res, loc))
        for res, loc in orgs:
            if _profile(res) == "Collection":  # BBMRI.de: the Organization is the collection
                self._collection(res, None, loc)
        for res, loc in groups:
            if _profile(res) == "miabis-collection":
                self._collection(
                    self.get((res.get("managingEntity") or {}).get("reference")) or {}, res, loc
                )
            else:
                self.sink.ignored(f"FHIR Group profile {_profile(res) or '(none)'} (networks)")
        self.single_biobank = biobanks[0] if len(biobanks) == 1 else None
        self._samples()

    def _contact(self, res: dict[str, Any]) -> dict[str, str]:
        for contact in res.get("contact", []) or []:
            emails = [
                t["value"]
                for t in contact.get("telecom", []) or []
                if t.get("system") == "email" and t.get("value")
            ]
            if emails:
                out = {"email": emails[0]}
                name = contact.get("name") or {}
                full = " ".join([*name.get("given", []), name.get("family", "")]).strip()
                if full:
                    out["name"] = full
                return out
        return {}

    def _common(self, res: dict[str, Any]) -> dict[str, object]:
        urls = [t["value"] for t in res.get("telecom", []) or [] if t.get("system") == "url"]
        desc = _ext(res, "miabis-organization-description-extension") or _ext(
            res, "OrganizationDescription"
        )
        return {
            "name": res.get("name"),
            "acronym": (res.get("alias") or [None])[0],
            "url": urls[0] if urls else None,
            "description": desc[0] if desc else None,
            "quality_standards": [
                c
                for v in _ext(res, "QualityStandard")
                + _ext(res, "miabis-quality-management-standard-extension")
                for c in _codes(v)
            ],
        }

    def _build(self, kind: str, flat: dict[str, object], loc: str) -> dict[str, object] | None:
        contact = flat.pop("contact", None)
        content, problems = recordfields.build(
            kind,
            flat,
            loc,
            self.codes,
            SOURCES,
            dropped=lambda f, v: self.sink.ignored(f"{kind} {f} code {v!r} (not in our code list)"),
        )
        if contact:
            content["contact"] = contact
        if problems:
            for p in problems:
                self.sink.problem(p, kind, str(flat.get("id")))
            return None
        return content

    def _biobank(self, res: dict[str, Any], loc: str) -> str:
        bid = _public_id(res)
        juristic = _ext(res, "JuridicalPerson")
        parent = self.get((res.get("partOf") or {}).get("reference"))
        if not juristic and parent:
            juristic = [parent.get("name")]
        address = (res.get("address") or [{}])[0]
        capabilities = [
            c
            for name in (
                "miabis-infrastructural-capabilities-extension",
                "miabis-organisational-capabilities-extension",
                "miabis-bioprocessing-and-analytical-capabilities-extension",
            )
            for v in _ext(res, name)
            for c in _codes(v)
        ]
        flat = {
            "id": bid,
            **self._common(res),
            "juristic_person": juristic[0] if juristic else None,
            "country": address.get("country"),
            "capabilities": capabilities,
            "contact": self._contact(res),
        }
        content = self._build("biobank", flat, loc)
        if content is not None:
            self.sink.record("biobank", bid, bid, content, loc)
        self.org_biobank = getattr(self, "org_biobank", {})
        self.org_biobank[f"Organization/{res.get('id')}"] = bid
        return bid

    def _collection(self, org: dict[str, Any], group: dict[str, Any] | None, loc: str) -> None:
        cid = _public_id(org) if org else _public_id(group or {})
        parent = (org.get("partOf") or {}).get("reference")
        biobank = getattr(self, "org_biobank", {}).get(parent or "", "")
        if not biobank and parent:
            biobank = _public_id(self.get(parent) or {})
        flat: dict[str, object] = {"id": cid, "biobank": biobank, **self._common(org)}
        if group is not None:
            flat["name"] = flat.get("name") or group.get("name")
            flat["dataset_types"] = [
                c for v in _ext(org, "miabis-collection-dataset-type-extension") for c in _codes(v)
            ]
            flat["sample_source"] = next(
                (c for v in _ext(org, "miabis-sample-source-extension") for c in _codes(v)), None
            )
            flat["collection_setting"] = [
                c
                for v in _ext(org, "miabis-sample-collection-setting-extension")
                for c in _codes(v)
            ]
            flat["design"] = [
                c for v in _ext(org, "miabis-collection-design-extension") for c in _codes(v)
            ]
            subjects = _ext(group, "miabis-number-of-subjects-extension")
            flat["number_of_subjects"] = subjects[0] if subjects else None
            for ch in group.get("characteristic", []) or []:
                what = _codes(ch.get("code"))
                value = ch.get("valueCodeableConcept")
                if "Sex" in what:
                    flat.setdefault("sex", []).extend(_codes(value))  # type: ignore[attr-defined]
                elif "StorageTemperature" in what:
                    flat.setdefault("storage_temperatures", []).extend(_codes(value))  # type: ignore[attr-defined]
                elif "MaterialType" in what:
                    flat.setdefault("sample_types", []).extend(_codes(value))  # type: ignore[attr-defined]
                elif "Diagnosis" in what or "DiagnosisAvailable" in what:
                    flat.setdefault("diagnoses", []).extend(_codes(value))  # type: ignore[attr-defined]
                elif "Age" in what and ch.get("valueRange"):
                    rng = ch["valueRange"]
                    flat["age.min"] = (rng.get("low") or {}).get("value")
                    flat["age.max"] = (rng.get("high") or {}).get("value")
                    flat["age.unit"] = "years"
            for ident in group.get("identifier", []) or []:
                if ident.get("value"):
                    self.collection_ids[str(ident["value"])] = cid
            for member in _ext(group, "extension-Group.member.entity"):
                if isinstance(member, dict) and member.get("reference"):
                    self.members[str(member["reference"])] = cid
        self.collection_ids[f"Organization/{org.get('id')}"] = cid
        for ident in org.get("identifier", []) or []:
            if ident.get("value"):
                self.collection_ids[str(ident["value"])] = cid
        self.collection_biobank[cid] = biobank
        content = self._build("collection", flat, loc)
        if content is not None:
            self.sink.record("collection", cid, biobank, content, loc, {"biobank": "partOf"})

    def _samples(self) -> None:
        checker = SampleChecker(self.codes, SOURCES)
        rows = self.conn.execute(
            "SELECT json, location FROM fhir_res WHERE type = 'Specimen' ORDER BY rowid"
        )
        for text, loc in rows.fetchall():
            res = orjson.loads(text)
            raw, conditions = self._raw_sample(res)
            staged, problems = checker.check(
                raw,
                loc,
                {
                    "local_id": "/identifier",
                    "sample_type": "/type",
                    "collection": "/extension (collection)",
                },
            )
            if staged is None:
                for p in problems:
                    self.sink.problem(p, "sample", raw.local_id)
            else:
                self.sink.sample(staged)
            del conditions

    def _raw_sample(self, res: dict[str, Any]) -> tuple[RawSample, list[str]]:
        idents = [str(i["value"]) for i in res.get("identifier", []) or [] if i.get("value")]
        raw = RawSample(local_id=idents[0] if idents else res.get("id"))
        raw.sample_type = next(iter(_codes(res.get("type"))), None)
        temps = [c for v in _ext(res, "StorageTemperature") for c in _codes(v)]
        for proc in res.get("processing", []) or []:
            temps += [
                c
                for v in _ext(proc, "miabis-sample-storage-temperature-extension")
                for c in _codes(v)
            ]
        raw.storage_temperature = temps[0] if temps else None
        raw.date = ((res.get("collection") or {}).get("collectedDateTime")) or None
        coll_refs = [
            v.get("value")
            for v in _ext(res, "miabis-sample-collection-extension")
            if isinstance(v, dict)
        ]
        coll_refs += [v.get("reference") for v in _ext(res, "Custodian") if isinstance(v, dict)]
        coll_refs = [r for r in coll_refs if r in self.collection_ids]
        if not coll_refs and f"Specimen/{res.get('id')}" in self.members:
            raw.collection = self.members[f"Specimen/{res.get('id')}"]
            raw.biobank = self.collection_biobank.get(raw.collection) or None
        for ref in coll_refs:
            if ref in self.collection_ids:
                raw.collection = self.collection_ids[ref]
                raw.biobank = self.collection_biobank.get(raw.collection) or None
                break
        if raw.biobank is None:
            raw.biobank = self.single_biobank
        subject_ref = (res.get("subject") or {}).get("reference")
        patient = self.get(subject_ref)
        diagnoses = [c for v in _ext(res, "SampleDiagnosis") for c in self._diagnoses(v)]
        if patient:
            pids = [str(i["value"]) for i in patient.get("identifier", []) or [] if i.get("value")]
            raw.donor_id = pids[0] if pids else subject_ref
            raw.sex = patient.get("gender")
            raw.birth = patient.get("birthDate")
            diagnoses += [
                c
                for (c,) in self.conn.execute(
                    "SELECT code FROM fhir_cond WHERE patient = ?", (subject_ref,)
                )
            ]
        raw.diagnoses = list(dict.fromkeys(diagnoses))
        return raw, diagnoses


def read(paths: list[Path], sink: Sink, codes: Codes) -> int:
    """Park every bundle of the import, then resolve references and emit records."""
    reader = FhirReader(sink.conn, sink, codes)
    count = sum(reader.park(p) for p in paths)
    reader.resolve()
    return count

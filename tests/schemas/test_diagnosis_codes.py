"""ICD-10 and ORPHA code patterns against every code of the real Directory disease list.

Findings on DiseaseTypes.csv (12,620 ICD-10 rows, 10,910 ORPHA rows): every ICD-10 code
matches the code pattern except the 22 chapter rows (I..XXII, the icd10-chapter list)
and the 274 block rows such as C00-C97 (accepted in collections, not in samples); every
ORPHA row matches ^ORPHA:[0-9]{1,7}$ except the Orphanet classification heads
ORPHA:C001.. ORPHA:C050, which are classifications, not diseases, and are rejected.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from jsonschema import Draft202012Validator

from tests.schemas.helpers import MOLGENIS, codes_of, schema

PREFIX = "urn:miriam:icd:"


def disease_names(external: Path) -> list[str]:
    path = external / MOLGENIS / "DiseaseTypes.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["name"] for row in csv.DictReader(handle)]


def defs_pattern(kind: str, name: str) -> re.Pattern[str]:
    return re.compile(schema(kind)["$defs"][name]["pattern"])


def test_every_real_icd10_code_is_accepted_or_is_a_chapter_or_block(external: Path) -> None:
    # a plain code is what the shared pattern accepts without its block alternative
    code = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
    code_or_block = defs_pattern("sample-group", "icd10_code_or_block")
    assert defs_pattern("collection", "icd10_code_or_block").pattern == code_or_block.pattern
    chapters = codes_of("icd10-chapter")
    icd = [n[len(PREFIX) :] for n in disease_names(external) if n.startswith(PREFIX)]
    assert len(icd) > 12000
    codes = [c for c in icd if code.match(c)]
    blocks = [c for c in icd if not code.match(c) and code_or_block.match(c)]
    rest = sorted(c for c in icd if not code_or_block.match(c))
    assert rest == sorted(chapters), f"ICD-10 names neither code, block nor chapter: {rest}"
    assert len(codes) > 12000 and len(blocks) > 200
    assert all(re.fullmatch(r"[A-Z][0-9]{2}-[A-Z][0-9]{2}", b) for b in blocks)
    assert "C00-C97" in blocks and "C50.9" in codes


def test_every_real_orpha_disease_code_matches_and_only_classification_heads_do_not(
    external: Path,
) -> None:
    orpha = defs_pattern("sample-group", "orpha_code")
    names = [n for n in disease_names(external) if n.startswith("ORPHA")]
    assert len(names) > 10000
    rejected = [n for n in names if not orpha.match(n)]
    assert rejected and all(re.fullmatch(r"ORPHA:C[0-9]{3}", n) for n in rejected), rejected[:5]


def test_diagnosis_codes_used_in_real_fhir_bundles(external: Path) -> None:
    """The ICD-10 codes real bundles use validate as collection diagnoses."""
    from tests.schemas.helpers import codes_used_in_bundles

    used = codes_used_in_bundles(external, "http://hl7.org/fhir/sid/icd-10")
    assert used
    validator = Draft202012Validator(schema("collection"))
    record = {
        "id": "c",
        "biobank": "b",
        "name": "n",
        "diagnoses": [{"system": "ICD-10", "code": c} for c in sorted(used)],
    }
    assert [e.message for e in validator.iter_errors(record)] == []


def test_bbmri_cz_export_icd_without_dot_is_rejected() -> None:
    """Raw exports write C446 for C44.6: the importer must normalise, the schema refuses."""
    assert not defs_pattern("sample-group", "icd10_code_or_block").match("C446")

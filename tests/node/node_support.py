"""Helpers for node tests: a fresh node home, CSV exports and their mapping."""

from __future__ import annotations

import csv
from pathlib import Path

from node.home import Home, NodeConfig, init_home

ORIGIN = "test.example/biobank-node"
BIOBANK = "bbmri-eric:ID:DE_TEST"
COLLECTION = "bbmri-eric:ID:DE_TEST:collection:main"
HEADER = ["sample_id", "patient", "material", "temp", "gender", "age", "drawn", "icd10"]

MAPPING = f"""
kind = "sample"
list_separator = ";"

[fixed]
biobank = "{BIOBANK}"
collection = "{COLLECTION}"

[columns]
local_id = "sample_id"
donor_id = "patient"
sample_type = "material"
storage_temperature = "temp"
sex = "gender"
age = "age"
date = "drawn"
diagnoses = "icd10"

[values.sample_type]
"Vollblut" = "WholeBlood"

[values.sex]
"w" = "female"
"m" = "male"
"""


def make_home(tmp_path: Path, k: int = 2, name: str = "home") -> tuple[Home, str]:
    """A new node home with a small-k policy (tests use few donors); returns (home, vkey)."""
    path = tmp_path / name
    vkey = init_home(
        path,
        NodeConfig(
            origin=ORIGIN,
            name="Test node",
            country="DE",
            organisation="Test org",
            contact="node@example.org",
        ),
    )
    (path / "policy.toml").write_text(f"k = {k}\n", encoding="utf-8")
    return Home.open(path), vkey


def sample_rows(n: int, start: int = 0, donors: int | None = None) -> list[list[str]]:
    """``n`` rows that all fall in one k-anonymity class (same sex, band, period)."""
    donors = donors or n
    return [
        [
            f"S{i:06d}",
            f"P{i % donors:06d}",
            "Vollblut",
            "-60to-85",
            "w",
            "45",
            "2016-03-01",
            "C50.9",
        ]
        for i in range(start, start + n)
    ]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mapping(path: Path, text: str = MAPPING) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

"""The publishing policy file: defaults, validation errors naming key, value and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.policy import OPTIONAL_FIELDS, Policy, write_default
from protocol.errors import PolicyError


def test_default_file_loads_to_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    write_default(path)
    policy = Policy.load(path)
    assert policy == Policy()
    assert policy.summary() == {
        "k": 10,
        "change_set_donors": 10,
        "age_band": 10,
        "period_width": 5,
        "diagnosis_precision": "full",
        "published_fields": sorted(OPTIONAL_FIELDS),
    }


def test_write_default_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("k = 25\n")
    with pytest.raises(PolicyError, match="already exists"):
        write_default(path)
    assert Policy.load(path).k == 25


def test_summary_is_stable_and_reflects_excluded_fields() -> None:
    policy = Policy.from_dict(
        {"k": 5, "published_fields": ["period", "age", "sex"], "diagnosis_precision": "category"}
    )
    assert policy.summary() == {
        "k": 5,
        "change_set_donors": 5,
        "age_band": 10,
        "period_width": 5,
        "diagnosis_precision": "none",
        "published_fields": ["age", "period", "sex"],
    }
    none = Policy.from_dict({"diagnosis_precision": "none"})
    assert "diagnoses" not in none.summary()["published_fields"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k = 1", "k = 1: must be from 2 to 1000"),
        ("k = '10'", "k = '10': must be a whole number"),
        ("k = true", "k = True: must be a whole number"),
        ("age_band = 0", "age_band = 0: must be from 1 to 120"),
        ("period_width = 2.5", "period_width = 2.5: must be a whole number"),
        ("diagnosis_precision = 'exact'", "diagnosis_precision = 'exact': must be one of full"),
        ("published_fields = ['age', 'name']", "unknown field 'name'"),
        ("published_fields = 'age'", "published_fields = 'age': must be a list"),
        ("published_fields = ['age', 'age']", "listed twice"),
        ("kk = 10", "kk = 10: unknown key"),
        ("k = ", "not valid TOML"),
    ],
)
def test_bad_policy_is_refused_naming_key_value_and_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text + "\n")
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        Policy.load(tmp_path / "absent.toml")

"""The error tree: hierarchy, messages, diagnostics, and Problem formatting."""

from __future__ import annotations

import pytest

from protocol import errors
from protocol.errors import (
    BiobankError,
    EquivocationError,
    InputError,
    Problem,
    ValidationFailed,
    VerificationError,
)

VERIFICATION = [
    "SignatureError",
    "ProofError",
    "DigestMismatch",
    "NonCanonicalError",
    "RootMismatch",
    "RollbackError",
    "EquivocationError",
    "IndexOrderError",
    "MalformedEntry",
    "OriginMismatch",
]
INPUT = ["ValidationFailed", "ConfigError", "PolicyError"]


@pytest.mark.parametrize("name", VERIFICATION)
def test_verification_errors_are_in_the_tree(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, VerificationError)
    assert not issubclass(cls, InputError)
    assert name in (errors.__doc__ or "")


@pytest.mark.parametrize("name", INPUT)
def test_input_errors_are_in_the_tree(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, InputError) and issubclass(cls, BiobankError)
    assert name in (errors.__doc__ or "")


def test_problem_str_truncates_big_values() -> None:
    p = Problem("exports/samples.csv row 12", "/sample_type", "Blut", "unknown code 'Blut'")
    assert str(p) == "exports/samples.csv row 12: /sample_type='Blut': unknown code 'Blut'"
    big = Problem("leaf 1", "/x", "y" * 500, "too long")
    assert len(str(big)) < 130
    assert big.to_json()["value"] == "y" * 77 + "..."
    assert Problem("l", "/o", {"a": 1}, "r").to_json()["value"] == "{'a': 1}"


def test_validation_failed_lists_problems_in_diagnostics() -> None:
    problems = [
        Problem("row 1", "/sex", "x", "unknown code 'x' for sex"),
        Problem("row 2", "/age", -1, "must be >= 0"),
    ]
    err = ValidationFailed("2 rows failed", problems)
    assert err.problems == problems
    assert err.diagnostics().splitlines() == [
        "ValidationFailed: 2 rows failed",
        f"  {problems[0]}",
        f"  {problems[1]}",
    ]


def test_equivocation_keeps_both_checkpoints() -> None:
    err = EquivocationError("split view", trusted="o\n1\nAA==\n\n- k sig\n", new="o\n1\nBB==\n")
    text = err.diagnostics()
    assert text.startswith("EquivocationError: split view")
    assert "AA==" in text and "BB==" in text
    assert str(err) == "split view"

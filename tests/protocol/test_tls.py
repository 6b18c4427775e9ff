"""Client TLS trust: verification always on; a CA bundle that is missing or not PEM is one
clear error naming the setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from protocol.errors import ConfigError
from protocol.tls import client_tls


def test_without_a_bundle_the_system_store_verifies_certificates_and_names() -> None:
    ctx = client_tls(None, setting="X_CA_BUNDLE")
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True


def test_a_missing_bundle_names_the_setting_and_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as err:
        client_tls(missing, setting="CATALOGUE_CA_BUNDLE")
    assert str(err.value) == (
        f"CATALOGUE_CA_BUNDLE: no file at {missing}; give a PEM file of CA certificates "
        "or leave it unset to trust the system store"
    )


def test_a_bundle_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        client_tls(bad, setting="--ca-bundle")
    assert str(err.value).startswith(f"--ca-bundle: {bad} is not a readable PEM file")

"""Client-side TLS trust shared by the programs that fetch over HTTPS (harvester, monitor,
auditor): certificates are always verified, against a CA bundle file or the system store."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from protocol.errors import ConfigError

__all__ = ["client_tls"]


def client_tls(ca_bundle: str | Path | None, *, setting: str) -> ssl.SSLContext:
    """A context that verifies server certificates and host names: against the PEM file
    `ca_bundle`, else against the system store (OpenSSL's default paths, e.g.
    /etc/ssl/certs). `setting` names where the path came from, for the error message."""
    return _context(str(ca_bundle) if ca_bundle else None, setting)


@lru_cache(maxsize=8)
def _context(path: str | None, setting: str) -> ssl.SSLContext:
    if path is None:
        return ssl.create_default_context()
    if not Path(path).is_file():
        raise ConfigError(
            f"{setting}: no file at {path}; give a PEM file of CA certificates "
            "or leave it unset to trust the system store"
        )
    try:
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{setting}: {path} is not a readable PEM file of CA certificates ({exc})"
        ) from exc

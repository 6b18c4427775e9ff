"""Catalogue settings from the environment (prefix CATALOGUE_) or passed in by tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.logs import checked_format

__all__ = ["Settings"]

# Tokens that people paste from examples; refusing them keeps a demo config out of production.
_PLACEHOLDER_TOKENS = {"changeme", "change-me", "secret", "admin", "token", "password"}


class Settings(BaseSettings):
    """Everything the catalogue needs to run; see docs/architecture.md "Catalogue"."""

    model_config = SettingsConfigDict(env_prefix="CATALOGUE_", extra="ignore")

    database_url: str = "sqlite:///catalogue.db"
    admin_token: str | None = None
    home: Path = Path("catalogue-home")
    origin: str = "localhost/biobank-catalogue"
    # who runs the catalogue and how to reach them (GA4GH service-info, Beacon info)
    organisation: str | None = None
    contact: str | None = None  # an e-mail address or a URL
    harvest_interval: float = 300.0
    stale_after: float = 3600.0
    # Limits that keep one misbehaving node from hurting the catalogue.
    request_timeout: float = 10.0
    node_deadline: float = 300.0
    max_response_bytes: int = 16 * 1024 * 1024
    page_size: Annotated[int, Field(ge=1, le=1000)] = 1000  # a node serves ≤ 1000 a page
    max_step: int = 2_000_000
    # A node that signs a larger checkpoint but keeps withholding its leaves (its consistency
    # proof holds, so it is no fork) raises a "withholding" alert after this many seconds.
    withhold_after: Annotated[float, Field(ge=0)] = 86_400.0
    # Entries verified and stored per transaction while a step streams in (bounds memory);
    # the search index changes only when the whole step is verified (catalogue/README.md).
    harvest_chunk: Annotated[int, Field(ge=1)] = 5_000
    # While a chunk is being stored (on SQLite it may wait for the write lock another lane's
    # final commit holds) the next one keeps filling, up to this many times harvest_chunk,
    # so the lane goes on verifying instead of idling (1: chunks of exactly harvest_chunk).
    harvest_chunk_growth: Annotated[int, Field(ge=1)] = 4
    # Worker processes that fetch and verify nodes in parallel (0: in this process). Keeps
    # CPU-heavy verification off the API's event loop and uses every core.
    harvest_workers: int = 2
    # The server keeps its harvest workers between harvests (spawned at its first harvest),
    # so a pushed or scheduled harvest verifies from its first moment; each idle worker holds
    # its imports and compiled schemas (deploy/README.md). False: spawned per harvest.
    harvest_keep_workers: bool = True
    # Request limits (docs/operations.md): bodies of admin calls and of other POST routes
    # (Beacon queries, Negotiator hand-off) are capped, larger ones get 413; proof and
    # log-page requests run at most `proof_concurrency` at a time (others wait, then 503).
    max_admin_body: Annotated[int, Field(ge=256)] = 8 * 1024
    max_body: Annotated[int, Field(ge=1024)] = 1024 * 1024
    proof_concurrency: Annotated[int, Field(ge=1)] = 1  # 2 cores: search first
    # Serve /v1/admin on its own listener ("host:port" or a unix socket path) and NOT on the
    # public one; unset: /v1/admin is served beside the public API (docs/operations.md).
    admin_listen: str | None = None
    # Push, then pull (docs/freshness.md): act on a node's checkpoint notification at most
    # once per this many seconds per node; in the kept workers when idle, otherwise steps
    # up to NOTIFY_INLINE_MAX entries in a thread of the server, larger ones in workers.
    notify: bool = True
    notify_min_interval: Annotated[float, Field(ge=0)] = 1.0
    notify_inline_max: Annotated[int, Field(ge=0)] = 20_000
    # seconds between the web page's looks at /v1/version (a changed-results notice)
    web_poll: Annotated[float, Field(gt=0)] = 15.0
    # This catalogue's public base URL: when set, enrolment asks the node to notify it
    # (POST NODE/v1/notify/targets); unset, node operators add it with `biobank-node notify add`.
    public_url: str | None = None
    # serve and harvest logs: "text" (for people) or "json" (one object a line, for collectors)
    log_format: str = "text"
    # BBMRI-ERIC Negotiator base URL for "Request access" (docs/negotiator.md); unset: the
    # page offers the collections' contacts as an e-mail and a CSV instead.
    negotiator_url: str | None = None

    @field_validator("negotiator_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("CATALOGUE_NEGOTIATOR_URL must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("CATALOGUE_PUBLIC_URL must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return checked_format(value, "CATALOGUE_LOG_FORMAT")

    @field_validator("admin_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        from catalogue.listen import parse_listen

        if value is None or value.strip() == "":
            return None
        parse_listen(value)  # ValueError names the setting
        return value.strip()

    # CA certificates (PEM) that node certificates must chain to; unset: the system store.
    # Verification is always on: there is no setting to switch it off.
    ca_bundle: Path | None = None

    @field_validator("ca_bundle")
    @classmethod
    def _readable_bundle(cls, value: Path | None) -> Path | None:
        from protocol.errors import ConfigError
        from protocol.tls import client_tls

        try:
            client_tls(value, setting="CATALOGUE_CA_BUNDLE")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("admin_token")
    @classmethod
    def _no_placeholder(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.strip() or value != value.strip():
            raise ValueError(
                "CATALOGUE_ADMIN_TOKEN must not be blank or begin or end with whitespace"
            )
        if value.lower() in _PLACEHOLDER_TOKENS or len(value) < 16:
            raise ValueError(
                "CATALOGUE_ADMIN_TOKEN must be a random secret of at least 16 characters"
            )
        return value

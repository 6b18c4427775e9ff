"""Node settings (env prefix ``NODE_``): where the node home is and where to listen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.logs import checked_format


class NodeSettings(BaseSettings):
    """``NODE_HOME``, ``NODE_HOST``, ``NODE_PORT``, ``NODE_LOG_FORMAT``, ``NODE_MAX_BODY``,
    ``NODE_PROOF_CONCURRENCY``, ``NODE_NOTIFY_POLL``, ``NODE_ACCEPT_REGISTRATIONS``,
    ``NODE_REGISTRATION_WAIT``, ``NODE_CA_BUNDLE``."""

    model_config = SettingsConfigDict(env_prefix="NODE_")

    home: Path = Path("node-home")
    host: str = "127.0.0.1"
    port: int = 8080
    # "text" (uvicorn's lines, for people) or "json" (one object a line, for log collectors)
    log_format: str = "text"
    # request limits: every request body is capped (the largest, a catalogue registering
    # for notifications, is a URL);
    # proof and log-page requests run at most `proof_concurrency` at a time
    max_body: int = 16 * 1024
    proof_concurrency: int = 4
    # push, then pull (docs/freshness.md): seconds between looks for a new checkpoint to send
    notify_poll: float = 0.2
    # whether a catalogue may register for notifications at enrolment (POST /v1/notify/targets)
    accept_registrations: bool = True
    # seconds a registration's confirmation may take in all; every refusal after a fetch is
    # answered at this time, so the answer's timing says nothing about the address fetched
    registration_wait: Annotated[float, Field(gt=0, le=60)] = 5.0
    # CA certificates (PEM) a catalogue's certificate must chain to, for notifications (as
    # `monitor --ca-bundle`); unset: the system store. Verification is always on.
    ca_bundle: Path | None = None

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return checked_format(value, "NODE_LOG_FORMAT")

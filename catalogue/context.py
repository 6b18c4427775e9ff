"""What the catalogue's commands and routes share: settings, engine, key and vocabulary.

Kept apart from the web application (catalogue.app) so that a one-shot harvest or enrolment
does not import the API (a third of the harvest process's memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from catalogue.db import make_engine, write_tx
from catalogue.ownlog import CatalogueKey, ensure_state
from catalogue.search.cache import CubeCache
from catalogue.search.codes import Vocabulary
from catalogue.settings import Settings
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from catalogue.harvest.harvester import KeptWorkers

__all__ = ["Context", "build_context", "database_problem"]


@dataclass
class Context:
    """What every route may need, built once by create_app."""

    settings: Settings
    engine: Engine
    key: CatalogueKey
    vocab: Vocabulary
    cube: CubeCache = field(default_factory=CubeCache)
    # the harvest's worker processes the server keeps (create_app; None elsewhere)
    workers: KeptWorkers | None = None


def build_context(settings: Settings) -> Context:
    """Engine, key (created on first start) and an initialised own log."""
    key = CatalogueKey.load_or_create(settings.home, settings.origin)
    try:
        engine = make_engine(settings.database_url)
        with write_tx(engine) as conn:
            ensure_state(conn, key)
    except (ArgumentError, NoSuchModuleError, ImportError, DBAPIError) as exc:
        raise ConfigError(database_problem(settings.database_url, exc)) from exc
    return Context(settings=settings, engine=engine, key=key, vocab=Vocabulary.default())


_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"


def database_problem(url: str, exc: Exception) -> str:
    """One line naming CATALOGUE_DATABASE_URL (its password hidden) and what to do."""
    if isinstance(exc, ArgumentError) and not isinstance(exc, NoSuchModuleError):
        return f"CATALOGUE_DATABASE_URL is not a database URL; use {_URL_FORMS}"
    shown = make_url(url).render_as_string(hide_password=True)
    if isinstance(exc, NoSuchModuleError | ImportError):
        return (
            f"CATALOGUE_DATABASE_URL={shown}: no driver for this kind of database here; "
            f"use {_URL_FORMS}"
        )
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return (
        f"CATALOGUE_DATABASE_URL={shown}: cannot open the database ({reason}); check the "
        "URL, that the database server is running and that the user may create tables"
    )

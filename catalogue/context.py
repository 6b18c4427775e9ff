"""What the catalogue's commands and routes share: settings, engine, key and vocabulary.

Kept apart from the web application (catalogue.app) so that a one-shot harvest or enrolment
does not import the API (a third of the harvest process's memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from catalogue.db import make_engine, write_tx
from catalogue.ownlog import CatalogueKey, ensure_state
from catalogue.search.cache import CubeCache
from catalogue.search.codes import Vocabulary
from catalogue.settings import Settings

__all__ = ["Context", "build_context"]


@dataclass
class Context:
    """What every route may need, built once by create_app."""

    settings: Settings
    engine: Engine
    key: CatalogueKey
    vocab: Vocabulary
    cube: CubeCache = field(default_factory=CubeCache)


def build_context(settings: Settings) -> Context:
    """Engine, key (created on first start) and an initialised own log."""
    engine = make_engine(settings.database_url)
    key = CatalogueKey.load_or_create(settings.home, settings.origin)
    with write_tx(engine) as conn:
        ensure_state(conn, key)
    return Context(settings=settings, engine=engine, key=key, vocab=Vocabulary.default())

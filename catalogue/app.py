"""The catalogue web application: create_app(settings) builds the API and harvest scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalogue import metrics
from catalogue.api import (
    admin,
    beacon,
    dcat,
    negotiator,
    nodes,
    problems,
    public,
    search,
    service_info,
)
from catalogue.cluster import ChangeListener, HarvestLeader, is_postgres
from catalogue.context import Context, build_context
from catalogue.harvest import Harvester
from catalogue.settings import Settings
from catalogue.web import mount_web
from service import http

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, schedule_harvest: bool = False) -> FastAPI:
    """The API; with `schedule_harvest`, harvest every CATALOGUE_HARVEST_INTERVAL seconds
    (on PostgreSQL only while this server is the harvest leader: catalogue.cluster)."""
    settings = settings or Settings()
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_scheduler(ctx)) if schedule_harvest else None
        warm = asyncio.create_task(_warm_until_loaded(ctx))  # /readyz waits for the index
        listener = None
        if is_postgres(settings.database_url):  # other servers' harvests refresh our index
            listener = ChangeListener(settings.database_url, lambda: _warm(ctx)).start()
        try:
            yield
        finally:
            if listener is not None:
                listener.stop()
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ctx.engine.dispose()

    app = FastAPI(
        title="biobank-catalogue",
        version="1",
        description="Verified, combined biobank metadata from enrolled nodes.",
        lifespan=lifespan,
        **http.app_options(repeats_checked=["/v1/search"]),  # among its other problems
    )
    app.state.ctx = ctx
    problems.install(app)
    for router in (
        public.router,
        search.router,
        nodes.router,
        admin.router,
        beacon.router,  # /beacon/v2 (docs/beacon.md)
        service_info.router,
        dcat.router,  # /v1/dcat: DCAT-AP 3 / HealthDCAT-AP (docs/dcat.md)
        negotiator.router,  # /v1/negotiator: access requests (docs/negotiator.md)
    ):
        app.include_router(router)
    metrics.install(app, ctx)  # /healthz, /readyz, /metrics
    mount_web(app)
    http.install(app, errors=problems.DOCUMENTED, foreign=problems.FOREIGN)
    return app


async def _scheduler(ctx: Context) -> None:
    harvester = Harvester(engine=ctx.engine, settings=ctx.settings, key=ctx.key)
    leader = HarvestLeader(ctx.settings.database_url)
    try:
        while True:
            try:
                if await asyncio.to_thread(leader.ensure):
                    await harvester.harvest_all()
                    await asyncio.to_thread(_warm, ctx)  # the next search stays fast
            except Exception:  # keep the schedule alive; each node's failure is recorded
                log.exception("scheduled harvest failed")
            await asyncio.sleep(ctx.settings.harvest_interval)
    finally:
        leader.release()


def _warm(ctx: Context) -> None:
    with ctx.engine.connect() as conn:
        ctx.cube.arrays(conn)


async def _warm_until_loaded(ctx: Context) -> None:
    """Load the search index at startup (retrying while the database is unreachable)."""
    while not ctx.cube.loaded:
        try:
            await asyncio.to_thread(_warm, ctx)
        except Exception as exc:  # /readyz reports the database; try again shortly
            log.warning("search index not loaded yet: %s", type(exc).__name__)
            await asyncio.sleep(5)

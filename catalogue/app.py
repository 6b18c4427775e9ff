"""The catalogue web application: create_app(settings) builds the API and harvest scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalogue import limits, metrics, subtrees
from catalogue.api import (
    admin,
    beacon,
    dcat,
    freshness,
    negotiator,
    nodes,
    notify,
    problems,
    public,
    search,
    service_info,
)
from catalogue.cluster import ChangeListener, HarvestLeader, is_postgres
from catalogue.context import Context, build_context
from catalogue.harvest import Harvester, KeptWorkers
from catalogue.notify import PushHarvests
from catalogue.settings import Settings
from catalogue.web import mount_web
from service import http
from service.proofs import ProofCache

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, schedule_harvest: bool = False) -> FastAPI:
    """The API; with `schedule_harvest`, harvest every CATALOGUE_HARVEST_INTERVAL seconds
    (on PostgreSQL only while this server is the harvest leader: catalogue.cluster)."""
    settings = settings or Settings()
    ctx = build_context(settings)
    if settings.harvest_keep_workers and settings.harvest_workers > 0:
        ctx.workers = KeptWorkers(settings.harvest_workers, settings.log_format)
    # push, then pull: nodes' notifications harvest them at once (catalogue.notify)
    push = PushHarvests(ctx) if settings.notify else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_scheduler(ctx, push)) if schedule_harvest else None
        pusher = asyncio.create_task(push.run()) if push is not None else None
        warm = asyncio.create_task(_warm_until_loaded(ctx))  # /readyz waits for the index
        fill = asyncio.create_task(asyncio.to_thread(subtrees.fill_all, ctx.engine))
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
            with contextlib.suppress(Exception):  # subtree hashes of old mirrors: best effort
                await fill
            for running in (task, pusher):
                if running is not None:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
            if push is not None:
                push.leader.release()
            if ctx.workers is not None:
                await asyncio.to_thread(ctx.workers.close)
            ctx.engine.dispose()

    app = FastAPI(
        title="biobank-catalogue",
        version="1",
        description="Verified, combined biobank metadata from enrolled nodes.",
        lifespan=lifespan,
        **http.app_options(repeats_checked=["/v1/search"]),  # among its other problems
    )
    app.state.ctx = ctx
    app.state.proofs = ProofCache()  # the newest proofs, by the root they lead to
    app.state.push = push
    problems.install(app)
    separate_admin = settings.admin_listen is not None  # CATALOGUE_ADMIN_LISTEN
    for router in (
        public.router,
        search.router,
        nodes.router,
        *(() if separate_admin else (admin.router,)),
        beacon.router,  # /beacon/v2 (docs/beacon.md)
        service_info.router,
        dcat.router,  # /v1/dcat: DCAT-AP 3 / HealthDCAT-AP (docs/dcat.md)
        negotiator.router,  # /v1/negotiator: access requests (docs/negotiator.md)
        freshness.router,  # /v1/version: pages see results change (docs/freshness.md)
        notify.router,  # /v1/notify: a node's new checkpoint, a hint (docs/freshness.md)
    ):
        app.include_router(router)
    metrics.install(app, ctx)  # /healthz, /readyz, /metrics
    mount_web(app)
    limits.install(app, settings, admin=not separate_admin)  # body caps, token first, slots
    if separate_admin:
        app.state.admin_app = create_admin_app(ctx)
    http.install(app, errors=problems.DOCUMENTED, foreign=problems.FOREIGN)
    return app


def create_admin_app(ctx: Context) -> FastAPI:
    """/v1/admin alone, sharing ``ctx`` with the public app (served on
    CATALOGUE_ADMIN_LISTEN by catalogue.listen; the public app has its lifespan)."""
    app = FastAPI(title="biobank-catalogue admin", version="1", **http.app_options())
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(admin.router)
    limits.install(app, ctx.settings, admin=True)
    http.install(app, errors=problems.DOCUMENTED)
    return app


async def _scheduler(ctx: Context, push: PushHarvests | None) -> None:
    harvester = Harvester(engine=ctx.engine, settings=ctx.settings, key=ctx.key, kept=ctx.workers)
    # one leader and one harvest at a time with the push harvests (catalogue.notify)
    leader = push.leader if push is not None else HarvestLeader(ctx.settings.database_url)
    lock = push.lock if push is not None else asyncio.Lock()
    try:
        while True:
            try:
                async with lock:
                    if await asyncio.to_thread(leader.ensure):
                        await harvester.harvest_all()
                        await asyncio.to_thread(_warm, ctx)  # the next search stays fast
            except Exception:  # keep the schedule alive; each node's failure is recorded
                log.exception("scheduled harvest failed")
            await asyncio.sleep(ctx.settings.harvest_interval)
    finally:
        if push is None:
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

"""A harvest worker process imports what harvesting needs and nothing else (issue 19 item 4:
every MB a worker imports is paid once per process, at the harvest's memory peak)."""

from __future__ import annotations

import os
import sys

from catalogue.harvest.harvester import worker_pool

# the API, the search service (its array engine), the settings' pydantic: no worker needs them
NOT_IN_A_WORKER = (
    "numpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "pydantic",
    "pydantic_settings",
    "catalogue.app",
    "catalogue.api",
    "catalogue.settings",
    "catalogue.search.service",
    "node",
    "federation",
)

WHAT_A_WORKER_HOLDS = (
    "(sorted(__import__('sys').modules),"
    " [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
)


def test_a_spawned_harvest_worker_does_not_import_the_api_numpy_or_pydantic() -> None:
    with worker_pool(1) as pool:  # the Harvester's own pool: spawned, its initializer run
        modules, rss_line = pool.submit(eval, WHAT_A_WORKER_HOLDS).result(timeout=120)
        pid = pool.submit(os.getpid).result(timeout=60)
    assert pid != os.getpid()  # measured in the worker, not here
    # what harvesting needs is there (so the list above is not vacuously absent)
    for needed in ("catalogue.harvest.stream", "protocol.verify", "sqlalchemy", "httpx"):
        assert needed in modules, needed
    loaded = [m for m in modules if m.split(".")[0] in NOT_IN_A_WORKER or m in NOT_IN_A_WORKER]
    assert not loaded, f"a harvest worker imported {loaded[:10]}"
    # after its imports a worker held 78 MB with pydantic; about 69 MB without
    assert int(rss_line.split()[1]) < 100 * 1024, rss_line
    assert sys.modules  # this process is not the one measured

"""The benchmark data: five countries' synthetic exports, and node import into fresh homes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from federation.build import COUNTRIES
from federation.generate import GeneratedExport, generate


def generate_all(total: int, seed: int, root: Path) -> list[tuple[str, Path]]:
    """(country, export folder) for each country, ``total`` samples in all.

    An export already generated for the same size and seed is reused (node.json is written
    last, so its presence means the folder is complete)."""
    per_node, extra = divmod(total, len(COUNTRIES))
    out = []
    for i, country in enumerate(COUNTRIES):
        n = per_node + (1 if i < extra else 0)
        folder = root / f"{country}-{n}-{seed}"
        if not (folder / "node.json").is_file():
            describe(generate(country, n, seed, folder))
        out.append((country, folder))
    return out


def import_node(export_dir: str, country: str, home: str) -> dict[str, Any]:
    """Init a fresh node home and import one export; runs in its own process.

    Returns the timings of the sample import alone (biobanks and collections are tiny).
    CPU time includes the import's helper process (node.importing.encode), reaped when it ends."""
    import resource
    import time

    from node.home import Home, NodeConfig, init_home
    from node.importing import Mapping, run_import

    export = _load(export_dir)
    path = Path(home)
    if path.exists():
        shutil.rmtree(path)
    init_home(
        path,
        NodeConfig(
            origin=export["origin"],
            name=export["name"],
            country=country,
            organisation=export["organisation"],
            contact=export["contact"],
        ),
    )
    opened = Home.open(path)
    folder = Path(export_dir)
    for kind in ("biobanks", "collections"):
        report = run_import(
            opened, [folder / f"{kind}.csv"], mapping=Mapping.load(folder / f"{kind}.mapping.toml")
        )
        _check(report, kind)

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu = time.perf_counter(), time.process_time() + children()
    report = run_import(
        opened, [folder / "samples.csv"], mapping=Mapping.load(folder / "samples.mapping.toml")
    )
    elapsed = time.perf_counter() - start
    cpu = time.process_time() + children() - cpu
    _check(report, "samples")
    return {
        "rows": report.rows,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "log_size": report.size_after,
        "published": sum(report.published.values()),
    }


def _load(export_dir: str) -> dict[str, str]:
    import json

    node: dict[str, str] = json.loads((Path(export_dir) / "node.json").read_text(encoding="utf-8"))
    return node


def describe(export: GeneratedExport) -> None:
    """Write node.json next to an export: what a spawned importer needs to init the node."""
    import json

    (export.out_dir / "node.json").write_text(
        json.dumps(
            {
                "origin": export.origin,
                "name": export.node_name,
                "organisation": export.organisation,
                "contact": export.contact_email,
            }
        ),
        encoding="utf-8",
    )


def _check(report: Any, what: str) -> None:
    if report.problems or not report.applied:
        shown = "; ".join(str(p) for p in report.problems[:5])
        raise RuntimeError(f"import of {what} failed: {shown}")

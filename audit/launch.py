"""``biobank-audit``'s entry point (`[project.scripts]`), which imports the command only when
called: a process the command starts by ``spawn`` runs the command's console script again as
its main module first, and imports whatever that script imports (docs/operations.md,
"Worker processes")."""

from __future__ import annotations

from typing import Any


def main() -> Any:
    from audit.cli import main as command

    return command()

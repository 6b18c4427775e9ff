"""How a biobank's export becomes records: readers (``sources``), checks, staging, the
importer's phases (merged into the holding, see ``node/groups.py``), and the diff of
biobank and collection records against the published log.

The entry points load on first use, so the import's helper process (which imports
``node.importing.encode``) loads none of the importer's other modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.importing.importer import ImportReport, detect_format, read_files, run_import
    from node.importing.mapping import Mapping

__all__ = ["ImportReport", "Mapping", "detect_format", "read_files", "run_import"]

_HOME = {
    "ImportReport": "importer",
    "detect_format": "importer",
    "read_files": "importer",
    "run_import": "importer",
    "Mapping": "mapping",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"node.importing.{module}"), name)

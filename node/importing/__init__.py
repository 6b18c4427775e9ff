"""How a biobank's export becomes records: readers (``sources``), checks, staging, the
importer's phases, and the per-sample encoding and diff against the published log."""

from node.importing.importer import ImportReport, detect_format, read_files, run_import
from node.importing.mapping import Mapping

__all__ = ["ImportReport", "Mapping", "detect_format", "read_files", "run_import"]

"""Build a federation for people to try and for tests and benchmarks: synthetic exports,
node homes, a catalogue, loopback servers, and the ``biobank-demo`` command.

Not part of a deployment: production code (``node``, ``catalogue``, ``audit``) never
imports it.
"""

from federation.build import (
    CATALOGUE_ORIGIN,
    COUNTRIES,
    DemoCatalogue,
    DemoNode,
    Federation,
    build_federation,
    enrol_all,
    node_app,
    open_catalogue,
    prepare_node,
)
from federation.generate import GeneratedExport, generate
from federation.servers import LiveServer, ServerProcess, free_port, live_server

__all__ = [
    "CATALOGUE_ORIGIN",
    "COUNTRIES",
    "DemoCatalogue",
    "DemoNode",
    "Federation",
    "GeneratedExport",
    "LiveServer",
    "ServerProcess",
    "build_federation",
    "enrol_all",
    "free_port",
    "generate",
    "live_server",
    "node_app",
    "open_catalogue",
    "prepare_node",
]

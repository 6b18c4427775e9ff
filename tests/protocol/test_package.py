"""The protocol package stays free of web frameworks, databases and HTTP clients."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("fastapi", "sqlmodel", "sqlalchemy", "httpx", "node", "catalogue", "audit")


def test_protocol_imports_nothing_forbidden() -> None:
    code = (
        "import sys, protocol.verify, protocol.codelists, protocol.keys; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

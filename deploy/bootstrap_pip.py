"""Installs pip into a virtual environment made with --without-pip.

Debian's python3 lacks ensurepip unless python3-venv is installed; this fetches the pip
wheel from the package index instead, so `make` works on a fresh machine without root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/pypi/pip/json"


def main() -> int:
    with urllib.request.urlopen(INDEX, timeout=60) as resp:  # noqa: S310 - fixed https URL
        release = json.load(resp)
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        urllib.request.urlretrieve(wheel["url"], path)  # noqa: S310 - URL from the index
        subprocess.run([sys.executable, f"{path}/pip", "install", "-q", str(path)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

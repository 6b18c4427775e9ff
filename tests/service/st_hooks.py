"""Schemathesis hooks for tests/service/test_api_conformance.py (loaded via SCHEMATHESIS_HOOKS).

``no_internal_error``: a 500 is a bug whatever the input; a 502/503 the OpenAPI document
lists (a node unreachable at enrolment, the admin API disabled) is an answer, which
``status_code_conformance`` already holds to the document.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code == 500 or response.status_code > 503:
        raise AssertionError(f"{case.method} {case.path}: HTTP {response.status_code}")
    return None

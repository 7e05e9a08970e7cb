"""schemathesis hooks for tests/api/test_openapi.py (loaded through ``SCHEMATHESIS_HOOKS``).

The run must keep its own credentials: generated path parameters that name the run's
API token (``FLEETDECK_ST_KEEP_TOKEN_IDS``, comma-separated ids) or the ``admin`` user are
swapped for ones that exist nowhere, so a generated ``DELETE /api/v1/tokens/{id}`` cannot
revoke the token the run authenticates with. With ``FLEETDECK_ST_AGENT_HOST``, an ingest
body's ``host`` becomes the host the agent token is bound to, so batches reach the parser
instead of a 403. ``before_call`` sees every phase's requests (coverage, fuzzing, stateful),
and schemathesis revalidates a case after the hook, so a changed case is judged as sent.
"""
from __future__ import annotations

import os

import schemathesis

KEEP_TOKEN_IDS = {part for part in os.environ.get("FLEETDECK_ST_KEEP_TOKEN_IDS", "").split(",") if part}
AGENT_HOST = os.environ.get("FLEETDECK_ST_AGENT_HOST")
UNKNOWN_TOKEN_ID = 2_000_000_000


@schemathesis.hook
def before_call(context, case, kwargs) -> None:  # noqa: ANN001 - schemathesis' hook signature
    params = case.path_parameters
    if isinstance(params, dict):
        if str(params.get("id")) in KEEP_TOKEN_IDS:
            params["id"] = UNKNOWN_TOKEN_ID
        if params.get("username") == "admin":
            params["username"] = "not-admin"
    if AGENT_HOST and isinstance(case.body, dict) and isinstance(case.body.get("host"), str):
        case.body["host"] = AGENT_HOST

"""Stage and poll requests through the WLCG Tape REST API (version 1).

A storage advertises the API at ``/.well-known/wlcg-tape-rest-api``; the
document lists endpoints by version. Staging is ``POST {endpoint}/stage`` with
``{"files": [{"path": ...}]}``, which returns a request id. Polling the files'
locality is ``POST {endpoint}/archiveinfo`` with ``[{"path": ...}]``. Only
storage implementations with the ``tape-rest`` capability are asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from testbed.errors import RequestError
from testbed.results import Verdict
from testbed.tokens import redact_authorization

__all__ = ["CAPABILITY", "TapeResult", "discover_endpoint", "poll", "stage"]

logger = logging.getLogger(__name__)

CAPABILITY = "tape-rest"
WELL_KNOWN = "/.well-known/wlcg-tape-rest-api"


@dataclass
class TapeResult:
    """The verdict on one tape request, with its status and evidence."""

    verdict: Verdict
    status: int
    reason: str
    evidence: dict[str, Any]


def discover_endpoint(http: httpx.Client, base_url: str) -> str:
    """Return the URI of the storage's version 1 tape REST endpoint."""
    try:
        response = http.get(f"{base_url}{WELL_KNOWN}")
        response.raise_for_status()
        endpoints = response.json()["endpoints"]
        return str(next(e["uri"] for e in endpoints if e.get("version") == "v1"))
    except (httpx.HTTPError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise RequestError(
            f"{base_url} offers no version 1 tape REST API at {WELL_KNOWN}: {exc}"
        ) from exc


def _post(http: httpx.Client, url: str, token: str, body: Any) -> TapeResult:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        response = http.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise RequestError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
    status = response.status_code
    evidence = {
        "request": {
            "method": "POST",
            "url": url,
            "headers": {
                "Authorization": redact_authorization(headers["Authorization"])
            },
        },
        "response": {"status": status, "body": response.text[:300]},
    }
    if 200 <= status < 300:
        return TapeResult(Verdict.ACCEPT, status, f"POST returned {status}", evidence)
    if status in (401, 403):
        return TapeResult(Verdict.REJECT, status, f"POST returned {status}", evidence)
    raise RequestError(f"POST {url} returned {status}: {response.text[:200]!r}")


def stage(http: httpx.Client, endpoint: str, token: str, path: str) -> TapeResult:
    """Ask the storage to bring ``path`` online."""
    return _post(http, f"{endpoint}/stage", token, {"files": [{"path": path}]})


def poll(http: httpx.Client, endpoint: str, token: str, path: str) -> TapeResult:
    """Ask the storage where ``path`` is (online, nearline or both)."""
    return _post(http, f"{endpoint}/archiveinfo", token, [{"path": path}])

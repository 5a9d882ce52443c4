"""HTTP third-party copy (TPC): cases, the plain ``COPY`` driver and its verdict.

In pull mode the client sends ``COPY`` to the destination with a ``Source`` header;
in push mode it sends ``COPY`` to the source with a ``Destination`` header. The
``Authorization`` header carries the token for the endpoint that receives the
request, and ``TransferHeaderAuthorization`` the token that endpoint forwards to
the other side. While the copy runs, the server streams performance markers and
ends the body with a ``success:`` or ``failure:`` line.

A copy counts as ``accept`` only when the destination holds the source's bytes
afterwards, verified by SHA-256, whatever the status line says.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from testbed.cases import Case
from testbed.errors import RequestError
from testbed.tokens import redact_authorization

__all__ = [
    "NEGATIVE_KINDS",
    "TPC_DRIVERS",
    "TPC_MODES",
    "CopyResult",
    "TpcCase",
    "http_copy",
    "parse_markers",
    "tpc_cases",
]

logger = logging.getLogger(__name__)

TPC_MODES = ("pull", "push")
TPC_DRIVERS = ("http-copy", "gfal2")
# Seconds without a new line from the server before a copy counts as stalled, and
# for a whole copy.
STALL_TIMEOUT = 30.0
COPY_TIMEOUT = 120.0
BODY_EXCERPT = 500
WLCG_SCOPE = "WLCG 1.0, Capability based Authorization: scope"

# Negative cases: what is wrong with the tokens, and the grants that make it so.
NEGATIVE_KINDS: dict[str, dict[str, str]] = {
    "source-without-read": {
        "source_grant": "create",
        "summary": "the source token grants storage.create but not storage.read",
    },
    "destination-without-create": {
        "destination_grant": "read",
        "summary": "the destination token grants storage.read but not storage.create",
    },
    "destination-outside-scope": {
        "destination_scope": "/granted",
        "summary": "the destination token grants storage.create on another directory",
    },
}


@dataclass(frozen=True)
class TpcCase(Case):
    """One copy: mode, driver and the grants of the source and destination tokens."""

    mode: str = "pull"
    driver: str = "http-copy"
    source_grant: str = "read"
    destination_grant: str = "create"
    # Directory, relative to the cell's destination directory, that the
    # destination token's scope names; empty for the directory of the target.
    destination_scope: str = ""
    negative: str | None = None


def tpc_cases(profiles: list[str]) -> list[TpcCase]:
    """Return the copy cases; they use WLCG tokens, whose storage scopes they test."""
    if "wlcg-1.0" not in profiles:
        return []
    cases = []
    for driver in TPC_DRIVERS:
        for mode in TPC_MODES:
            cases.append(
                TpcCase(
                    scenario="tpc",
                    name=f"{mode}-{driver}",
                    profile="wlcg-1.0",
                    expected="accept",
                    requirement="MUST",
                    section=f"{WLCG_SCOPE}: read on source, create on destination",
                    summary=f"{mode} copy with {driver}, tokens scoped to the file",
                    mode=mode,
                    driver=driver,
                )
            )
            for kind, settings in NEGATIVE_KINDS.items():
                cases.append(
                    TpcCase(
                        scenario="tpc",
                        name=f"{mode}-{driver}-{kind}",
                        profile="wlcg-1.0",
                        expected="reject",
                        requirement="MUST",
                        section=WLCG_SCOPE,
                        summary=settings["summary"],
                        mode=mode,
                        driver=driver,
                        source_grant=settings.get("source_grant", "read"),
                        destination_grant=settings.get("destination_grant", "create"),
                        destination_scope=settings.get("destination_scope", ""),
                        negative=kind,
                    )
                )
    return cases


@dataclass
class CopyResult:
    """The response to a copy request: status, markers and the final line."""

    status: int | None
    final_line: str
    markers: list[dict[str, str]] = field(default_factory=list)
    body_excerpt: str = ""
    duration: float = 0.0
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def claims_success(self) -> bool:
        return (
            self.status is not None
            and self.status < 300
            and (self.final_line.startswith("success"))
        )


def parse_markers(lines: list[str]) -> list[dict[str, str]]:
    """Parse ``Perf Marker`` ... ``End`` blocks into dictionaries."""
    markers: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for raw in lines:
        line = raw.strip()
        if line == "Perf Marker":
            current = {}
        elif line == "End" and current is not None:
            markers.append(current)
            current = None
        elif current is not None and ":" in line:
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    return markers


def http_copy(
    http: httpx.Client,
    mode: str,
    source_url: str,
    destination_url: str,
    source_token: str,
    destination_token: str,
    timeout: float = COPY_TIMEOUT,
) -> CopyResult:
    """Send one ``COPY`` request and read the streamed body until it ends.

    Raises RequestError when the connection fails or the copy stalls, with the
    last performance marker in the message.
    """
    if mode == "pull":
        url, own, other = destination_url, destination_token, source_token
        headers = {"Source": source_url}
    elif mode == "push":
        url, own, other = source_url, source_token, destination_token
        headers = {"Destination": destination_url}
    else:
        raise ValueError(f"unknown copy mode {mode!r}; use pull or push")
    headers["Authorization"] = f"Bearer {own}"
    headers["TransferHeaderAuthorization"] = f"Bearer {other}"
    evidence = {
        "method": "COPY",
        "url": url,
        "headers": {
            key: redact_authorization(value) if "Authorization" in key else value
            for key, value in headers.items()
        },
    }

    started = time.monotonic()
    lines: list[str] = []
    limits = httpx.Timeout(10.0, read=STALL_TIMEOUT)
    try:
        with http.stream("COPY", url, headers=headers, timeout=limits) as response:
            for line in response.iter_lines():
                lines.append(line)
                if time.monotonic() - started > timeout:
                    raise RequestError(
                        f"COPY {url} did not finish within {timeout:.0f} s; "
                        f"last performance marker: {_last_marker(lines)}"
                    )
            status = response.status_code
    except httpx.ReadTimeout as exc:
        raise RequestError(
            f"COPY {url} stalled: no data for {STALL_TIMEOUT:.0f} s; "
            f"last performance marker: {_last_marker(lines)}"
        ) from exc
    except httpx.HTTPError as exc:
        raise RequestError(f"COPY {url} failed: {type(exc).__name__}: {exc}") from exc

    final = next((line.strip() for line in reversed(lines) if line.strip()), "")
    logger.info("COPY %s (%s) -> %d %s", url, mode, status, final[:80])
    return CopyResult(
        status=status,
        final_line=final[:300],
        markers=parse_markers(lines),
        body_excerpt="\n".join(lines)[-BODY_EXCERPT:],
        duration=round(time.monotonic() - started, 3),
        request=evidence,
    )


def _last_marker(lines: list[str]) -> str:
    markers = parse_markers(lines)
    return str(markers[-1]) if markers else "none received"


def sha256(content: bytes | None) -> str:
    """Return the hex SHA-256 of ``content``, or ``absent``."""
    return "absent" if content is None else hashlib.sha256(content).hexdigest()

"""HTTP third-party copy between every ordered pair of storage endpoints.

The source token grants read on the source file and the destination token create
on the destination directory, each for its own endpoint's audience. A copy passes
only when the destination then contains the source's bytes (SHA-256); negative cases
break one grant and expect no copy.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest

from testbed.profiles import get_profile
from testbed.results import Verdict
from testbed.storage_ops import new_cell_directory
from testbed.tokens import decode_unverified
from testbed.tpc import CopyResult, TpcCase, http_copy, sha256

# Large enough that servers send performance markers during the copy.
FILE_SIZE = 4 * 1024 * 1024
CAPABILITY = {"pull": "http-tpc", "push": "http-tpc"}


def _token_evidence(token: str) -> dict[str, Any]:
    header, claims = decode_unverified(token)
    return {"header": header, "claims": claims}


@pytest.mark.scenario("tpc")
def test_tpc(
    source: Any,
    destination: Any,
    case: TpcCase,
    issuer: Any,
    admin_for: Any,
    testbed_stack: Any,
    cell: Any,
) -> None:
    for service in (source, destination):
        if CAPABILITY[case.mode] not in service.implementation.capabilities:
            pytest.skip(f"{service.key} does not support HTTP-TPC {case.mode} mode")
    if case.driver != "http-copy" and case.driver not in testbed_stack.clients:
        pytest.skip(f"the client {case.driver} is not among the implementations")
    started = datetime.datetime.now(datetime.UTC)
    profile = get_profile(case.profile)
    source_admin, destination_admin = admin_for(source), admin_for(destination)

    directory = new_cell_directory()
    content = os.urandom(FILE_SIZE)
    source_path = f"{directory}/source-file"
    destination_path = f"{directory}/copies/file"
    source_admin.put(source_path, content)
    destination_admin.mkdirs(f"{directory}/copies")
    scope_dir = f"{directory}{case.destination_scope or '/copies'}"
    destination_admin.mkdirs(scope_dir)

    source_token = issuer.token(
        case.profile,
        profile.scope(case.source_grant, source_path),
        audience=source.endpoints["audience"],
    )
    destination_token = issuer.token(
        case.profile,
        profile.scope(case.destination_grant, scope_dir),
        audience=destination.endpoints["audience"],
    )
    source_url = source_admin.url(source_path)
    destination_url = destination_admin.url(destination_path)

    if case.driver == "http-copy":
        receiver = destination if case.mode == "pull" else source
        result = http_copy(
            receiver.http,
            case.mode,
            source_url,
            destination_url,
            source_token,
            destination_token,
        )
    else:
        result = testbed_stack.client_copy(
            case.driver,
            case.mode,
            source_url,
            destination_url,
            source_token,
            destination_token,
        )

    stored = destination_admin.read(destination_path)
    verified = sha256(stored) == sha256(content)
    observed = Verdict.ACCEPT if verified else Verdict.REJECT
    reason = _reason(result, verified)
    evidence = {
        "request": result.request,
        "response": {"status": result.status, "body": result.body_excerpt},
        "copy": {
            "final_line": result.final_line,
            "duration": result.duration,
            "performance_markers": len(result.markers),
            "last_marker": result.markers[-1] if result.markers else None,
            "source_sha256": sha256(content),
            "destination_sha256": sha256(stored),
        },
        "token": _token_evidence(source_token),
        "destination_token": _token_evidence(destination_token),
        "log": "\n".join(
            f"--- {service.key} ---\n{service.container.logs_since(started)}"
            for service in {source.key: source, destination.key: destination}.values()
        ),
    }
    cell.observe(observed, reason, evidence)
    cell.verify()


def _reason(result: CopyResult, verified: bool) -> str:
    status = "no status" if result.status is None else f"status {result.status}"
    text = f"{status}, final line {result.final_line[:120]!r}"
    if verified:
        return f"copy verified by SHA-256; {text}"
    if result.claims_success:
        return f"the server reported success but the destination differs; {text}"
    return f"no copy; {text}"

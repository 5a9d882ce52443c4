"""Tests of the tape REST API requests against an httpx mock storage."""

from __future__ import annotations

import json

import httpx
import pytest

from testbed.errors import RequestError
from testbed.results import Verdict
from testbed.tape import discover_endpoint, poll, stage

BASE = "https://storage.test:8443"
ENDPOINT = f"{BASE}/api/v1"


def _handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/.well-known/wlcg-tape-rest-api":
        return httpx.Response(
            200, json={"endpoints": [{"uri": ENDPOINT, "version": "v1"}]}
        )
    token = request.headers.get("Authorization", "")
    if token == "Bearer broken":
        return httpx.Response(500, text="internal error")
    if token != "Bearer good":
        return httpx.Response(403, text="forbidden")
    if request.url.path == "/api/v1/stage":
        assert json.loads(request.content) == {"files": [{"path": "/d/file"}]}
        return httpx.Response(201, json={"requestId": "r1"})
    if request.url.path == "/api/v1/archiveinfo":
        assert json.loads(request.content) == [{"path": "/d/file"}]
        return httpx.Response(200, json=[{"path": "/d/file", "locality": "DISK"}])
    return httpx.Response(404)


@pytest.fixture
def http() -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(_handler))


def test_discover_endpoint_reads_v1(http: httpx.Client) -> None:
    assert discover_endpoint(http, BASE) == ENDPOINT


def test_discover_endpoint_missing_api() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(RequestError, match="no version 1 tape REST API"):
        discover_endpoint(client, BASE)


def test_stage_accepted(http: httpx.Client) -> None:
    result = stage(http, ENDPOINT, "good", "/d/file")
    assert result.verdict is Verdict.ACCEPT
    assert result.status == 201


def test_poll_rejected(http: httpx.Client) -> None:
    result = poll(http, ENDPOINT, "other", "/d/file")
    assert result.verdict is Verdict.REJECT
    assert result.status == 403
    assert "other" not in json.dumps(result.evidence)


def test_server_error_is_request_error(http: httpx.Client) -> None:
    with pytest.raises(RequestError, match="500"):
        stage(http, ENDPOINT, "broken", "/d/file")

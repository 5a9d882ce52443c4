"""Tests of testbed.storage_ops against a small in-memory WebDAV store.

The store runs behind httpx.MockTransport. Requests that carry the admin token get
the responses of a correct server. Other requests follow the store's ``mode``, which
emulates a correct server or one of the misbehaviours that the admin checks catch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from testbed.errors import RequestError
from testbed.results import Verdict
from testbed.storage_ops import (
    INITIAL_CONTENT,
    AdminSession,
    new_cell_directory,
    perform,
    prepare,
    verdict_for_status,
)

BASE_PATH = "/data"
STORAGE_URL = "https://localhost:1094"
ADMIN_TOKEN = "eyJhZG1pbiI6MX0.eyJzdWIiOiJhZG1pbiJ9.ADMIN-SIGNATURE"
USER_TOKEN = "eyJ1c2VyIjoxfQ.eyJzdWIiOiJ1c2VyIn0.USER-SIGNATURE-SECRET"
OPERATIONS = ("download", "upload", "overwrite", "delete", "mkdir")
TARGETS = {
    "download": "/cells/c1/file",
    "upload": "/cells/c1/new-file",
    "overwrite": "/cells/c1/file",
    "delete": "/cells/c1/file",
    "mkdir": "/cells/c1/new-dir",
}


class FakeWebDav:
    """A WebDAV namespace in memory: GET, PUT, DELETE, MKCOL and PROPFIND.

    ``mode`` decides what happens to requests without the admin token:

    - ``deny``: 403 and no change.
    - ``allow``: the change and a 2xx.
    - ``deny-but-apply``: the change and a 403.
    - ``deny-but-truncate``: a PUT stores an empty file and returns 403.
    - ``allow-without-effect``: a 2xx and no change.
    - ``fail``: 500.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {BASE_PATH}
        self.mode = "deny"
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.rstrip("/")
        if request.headers.get("Authorization") == f"Bearer {ADMIN_TOKEN}":
            return self._apply(request.method, path, request.content)
        if self.mode == "deny":
            return httpx.Response(403, text="permission denied")
        if self.mode == "allow":
            return self._apply(request.method, path, request.content)
        if self.mode == "deny-but-apply":
            self._apply(request.method, path, request.content)
            return httpx.Response(403, text="permission denied")
        if self.mode == "deny-but-truncate":
            self._apply(request.method, path, b"")
            return httpx.Response(403, text="permission denied")
        if self.mode == "allow-without-effect":
            return httpx.Response(201 if request.method in ("PUT", "MKCOL") else 200)
        return httpx.Response(500, text="internal error")

    def _apply(self, method: str, path: str, body: bytes) -> httpx.Response:
        parent = path.rsplit("/", 1)[0]
        if method == "GET":
            if path in self.files:
                return httpx.Response(200, content=self.files[path])
            return httpx.Response(404)
        if method == "PUT":
            if parent not in self.dirs:
                return httpx.Response(409)
            existed = path in self.files
            self.files[path] = body
            return httpx.Response(204 if existed else 201)
        if method == "DELETE":
            if self.files.pop(path, None) is not None:
                return httpx.Response(204)
            return httpx.Response(404)
        if method == "MKCOL":
            if path in self.dirs or path in self.files:
                return httpx.Response(405)
            if parent not in self.dirs:
                return httpx.Response(409)
            self.dirs.add(path)
            return httpx.Response(201)
        if method == "PROPFIND":
            if path in self.files or path in self.dirs:
                return httpx.Response(207, text="<multistatus/>")
            return httpx.Response(404)
        return httpx.Response(405)


class RecordingIssuer:
    """An IssuerClient stand-in whose mint() returns the admin token."""

    def __init__(self) -> None:
        self.minted: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def mint(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        self.minted.append((header, claims))
        return ADMIN_TOKEN


@pytest.fixture
def store() -> FakeWebDav:
    return FakeWebDav()


@pytest.fixture
def service(store: FakeWebDav) -> Iterator[SimpleNamespace]:
    http = httpx.Client(transport=httpx.MockTransport(store))
    yield SimpleNamespace(
        key="xrootd@test",
        url=STORAGE_URL,
        endpoints={"url": STORAGE_URL, "audience": STORAGE_URL, "base_path": BASE_PATH},
        http=http,
    )
    http.close()


@pytest.fixture
def issuer() -> RecordingIssuer:
    return RecordingIssuer()


@pytest.fixture
def admin(service: SimpleNamespace, issuer: RecordingIssuer) -> AdminSession:
    run = SimpleNamespace(
        issuer_url="https://localhost:8443", kids={"rs256": "kid-rs256"}
    )
    return AdminSession(service, issuer, run)


def _perform(
    service: SimpleNamespace,
    admin: AdminSession,
    store: FakeWebDav,
    operation: str,
    mode: str,
    token: str | None = USER_TOKEN,
) -> Any:
    target = TARGETS[operation]
    prepare(admin, operation, target)
    store.mode = mode
    return perform(service, admin, operation, target, token)


@pytest.mark.parametrize("status", [200, 201, 204, 207, 299])
def test_verdict_for_2xx_is_accept(status: int) -> None:
    assert verdict_for_status(status) is Verdict.ACCEPT


@pytest.mark.parametrize("status", [401, 403])
def test_verdict_for_401_403_is_reject(status: int) -> None:
    assert verdict_for_status(status) is Verdict.REJECT


@pytest.mark.parametrize("status", [100, 199, 300, 302, 400, 404, 405, 409, 500, 503])
def test_verdict_for_other_is_none(status: int) -> None:
    assert verdict_for_status(status) is None


def test_new_cell_directory_is_fresh() -> None:
    first, second = new_cell_directory(), new_cell_directory()
    assert first.startswith("/cells/")
    assert first != second


def test_admin_token_minted_once(admin: AdminSession, issuer: RecordingIssuer) -> None:
    assert admin.token() == ADMIN_TOKEN
    assert admin.token() == ADMIN_TOKEN
    assert len(issuer.minted) == 1


def test_admin_token_claims(admin: AdminSession, issuer: RecordingIssuer) -> None:
    admin.token()
    header, claims = issuer.minted[0]
    assert header == {"alg": "RS256", "kid": "kid-rs256"}
    assert claims["aud"] == STORAGE_URL
    assert claims["sub"] == "testbed-admin"
    assert claims["iss"] == "https://localhost:8443"
    assert set(claims["scope"].split()) == {
        "storage.read:/",
        "storage.create:/",
        "storage.modify:/",
    }


def test_admin_url_joins_base_path(admin: AdminSession) -> None:
    assert admin.url("/cells/x") == f"{STORAGE_URL}{BASE_PATH}/cells/x"


def test_admin_mkdirs_creates_parents(admin: AdminSession, store: FakeWebDav) -> None:
    admin.mkdirs("/a/b/c")
    assert {"/data/a", "/data/a/b", "/data/a/b/c"} <= store.dirs


def test_admin_mkdirs_tolerates_existing(
    admin: AdminSession, store: FakeWebDav
) -> None:
    admin.mkdirs("/a")
    admin.mkdirs("/a/b")
    assert "/data/a/b" in store.dirs


def test_admin_put_and_read(admin: AdminSession, store: FakeWebDav) -> None:
    admin.put("/cells/x/file", b"content")
    assert store.files["/data/cells/x/file"] == b"content"
    assert admin.read("/cells/x/file") == b"content"


def test_admin_read_missing_is_none(admin: AdminSession) -> None:
    assert admin.read("/absent") is None


def test_admin_exists(admin: AdminSession) -> None:
    admin.put("/cells/x/file", b"content")
    assert admin.exists("/cells/x/file") is True
    assert admin.exists("/cells/x") is True
    assert admin.exists("/cells/y") is False


def test_admin_propfind_depth_zero(admin: AdminSession, store: FakeWebDav) -> None:
    admin.exists("/cells")
    assert store.requests[-1].headers["Depth"] == "0"


def test_admin_read_error_raises(admin: AdminSession, service: SimpleNamespace) -> None:
    service.http = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(500))
    )
    with pytest.raises(RequestError, match="GET returned 500"):
        admin.read("/file")
    service.http.close()


def test_admin_mkdirs_error_raises(
    admin: AdminSession, service: SimpleNamespace
) -> None:
    service.http = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(403))
    )
    with pytest.raises(RequestError, match="MKCOL returned 403"):
        admin.mkdirs("/a")
    service.http.close()


@pytest.mark.parametrize("operation", ["download", "overwrite", "delete"])
def test_prepare_creates_file(
    admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    prepare(admin, operation, TARGETS[operation])
    assert store.files[BASE_PATH + TARGETS[operation]] == INITIAL_CONTENT


@pytest.mark.parametrize("operation", ["upload", "mkdir"])
def test_prepare_creates_parent_only(
    admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    prepare(admin, operation, TARGETS[operation])
    assert f"{BASE_PATH}/cells/c1" in store.dirs
    assert BASE_PATH + TARGETS[operation] not in store.files
    assert BASE_PATH + TARGETS[operation] not in store.dirs


@pytest.mark.parametrize("operation", OPERATIONS)
def test_perform_denied_is_reject(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    observation = _perform(service, admin, store, operation, "deny")
    assert observation.verdict is Verdict.REJECT
    assert observation.status == 403
    assert "but" not in observation.reason


@pytest.mark.parametrize("operation", OPERATIONS)
def test_perform_allowed_is_accept(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    observation = _perform(service, admin, store, operation, "allow")
    assert observation.verdict is Verdict.ACCEPT
    assert "but" not in observation.reason


def test_perform_upload_stores_content(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    _perform(service, admin, store, "upload", "allow")
    stored = store.files[BASE_PATH + TARGETS["upload"]]
    assert stored.startswith(b"testbed upload ")


@pytest.mark.parametrize("operation", ["upload", "overwrite", "delete", "mkdir"])
def test_perform_403_with_change_is_accept(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    observation = _perform(service, admin, store, operation, "deny-but-apply")
    assert observation.status == 403
    assert observation.verdict is Verdict.ACCEPT
    assert "but the storage changed anyway" in observation.reason


@pytest.mark.parametrize("operation", ["upload", "overwrite"])
def test_perform_403_with_truncation_is_caught(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    observation = _perform(service, admin, store, operation, "deny-but-truncate")
    assert store.files[BASE_PATH + TARGETS[operation]] == b""
    assert "changed anyway" in observation.reason


@pytest.mark.parametrize("operation", OPERATIONS)
def test_perform_2xx_without_change_is_reject(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, operation: str
) -> None:
    observation = _perform(service, admin, store, operation, "allow-without-effect")
    assert 200 <= observation.status < 300
    assert observation.verdict is Verdict.REJECT
    assert "but the operation had no effect" in observation.reason


def test_perform_records_effect(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    observation = _perform(service, admin, store, "delete", "allow")
    assert observation.evidence["effect"] == "file removed"
    assert observation.evidence["response"]["status"] == 204


def test_perform_500_raises(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    with pytest.raises(RequestError, match="returned 500, which is neither"):
        _perform(service, admin, store, "download", "fail")


def test_perform_404_raises(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    store.mode = "allow"
    with pytest.raises(RequestError, match="returned 404"):
        perform(service, admin, "download", "/cells/absent/file", USER_TOKEN)


def test_perform_transport_error_raises(
    service: SimpleNamespace, admin: AdminSession
) -> None:
    def fail_to_connect(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    service.http = httpx.Client(transport=httpx.MockTransport(fail_to_connect))
    with pytest.raises(RequestError, match="ConnectError: connection refused"):
        perform(service, admin, "download", "/file", USER_TOKEN)
    service.http.close()


def test_perform_retries_closed_connection(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    prepare(admin, "download", TARGETS["download"])
    store.mode = "allow"
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return store(request)

    service.http = httpx.Client(transport=httpx.MockTransport(flaky))
    observation = perform(service, admin, "download", TARGETS["download"], USER_TOKEN)
    service.http.close()
    assert observation.verdict is Verdict.ACCEPT
    assert "retried" in observation.evidence["request"]


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_evidence_never_contains_token(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav, mode: str
) -> None:
    observation = _perform(service, admin, store, "upload", mode)
    text = json.dumps(observation.evidence)
    assert USER_TOKEN not in text
    assert "USER-SIGNATURE-SECRET" not in text
    assert ADMIN_TOKEN not in text


def test_evidence_keeps_redacted_header(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    observation = _perform(service, admin, store, "download", "deny")
    header = observation.evidence["request"]["headers"]["Authorization"]
    head, claims, _ = USER_TOKEN.split(".")
    assert header == f"Bearer {head}.{claims}.<signature stripped>"


def test_request_carries_token(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    _perform(service, admin, store, "download", "deny")
    assert store.requests[-1].headers["Authorization"] == f"Bearer {USER_TOKEN}"


def test_perform_without_token(
    service: SimpleNamespace, admin: AdminSession, store: FakeWebDav
) -> None:
    observation = _perform(service, admin, store, "download", "deny", token=None)
    user_request = next(r for r in store.requests if r.method == "GET")
    assert "Authorization" not in user_request.headers
    assert observation.evidence["request"]["headers"] == {}
    assert observation.verdict is Verdict.REJECT

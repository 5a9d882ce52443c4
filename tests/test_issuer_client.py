"""Tests of testbed.issuer_client against an httpx.MockTransport issuer."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from testbed.ca import CertificateAuthority
from testbed.errors import TokenError
from testbed.issuer_client import IssuerClient

ISSUER_URL = "https://localhost:8443"
MINT_CREDENTIAL = "mint-credential-value"
CLIENTS = {"wlcg-1.0": ("wlcg-1.0-client", "client-secret")}
ISSUED = jwt.encode(
    {"aud": "https://storage.test", "scope": "storage.read:/"},
    "hmac-key-for-tests-only-0123456789",
    algorithm="HS256",
)

Handler = Callable[[httpx.Request], httpx.Response]
MakeIssuer = Callable[[Handler], IssuerClient]


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca")).cert_path


class RecordingIssuer:
    """A handler that records requests and returns a fixed response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response


@pytest.fixture
def make_issuer(ca_file: Path) -> Iterator[MakeIssuer]:
    clients: list[IssuerClient] = []

    def make(handler: Handler) -> IssuerClient:
        client = IssuerClient(
            ISSUER_URL,
            ca_file,
            MINT_CREDENTIAL,
            CLIENTS,
            transport=httpx.MockTransport(handler),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def _token_issuer() -> RecordingIssuer:
    return RecordingIssuer(httpx.Response(200, json={"access_token": ISSUED}))


def test_token_returns_access_token(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    assert make_issuer(recorder).token("wlcg-1.0", "storage.read:/") == ISSUED


def test_token_posts_to_token_endpoint(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "storage.read:/")
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{ISSUER_URL}/token"


def test_token_sends_grant_and_scope(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "storage.read:/ storage.create:/x")
    form = _form(recorder.requests[0])
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["storage.read:/ storage.create:/x"]


def test_token_repeats_audience(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token(
        "wlcg-1.0", "storage.read:/", audience=["https://a.test", "https://b.test"]
    )
    assert _form(recorder.requests[0])["audience"] == [
        "https://a.test",
        "https://b.test",
    ]


def test_token_single_audience(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "s", audience="https://a.test")
    assert _form(recorder.requests[0])["audience"] == ["https://a.test"]


def test_token_without_audience_or_lifetime(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "s")
    form = _form(recorder.requests[0])
    assert "audience" not in form
    assert "lifetime" not in form


def test_token_sends_lifetime(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "s", lifetime=300)
    assert _form(recorder.requests[0])["lifetime"] == ["300"]


def test_token_uses_basic_auth(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    make_issuer(recorder).token("wlcg-1.0", "s")
    expected = base64.b64encode(b"wlcg-1.0-client:client-secret").decode()
    assert recorder.requests[0].headers["Authorization"] == f"Basic {expected}"


def test_token_error_names_status(make_issuer: MakeIssuer) -> None:
    recorder = RecordingIssuer(httpx.Response(401, text="invalid_client"))
    with pytest.raises(TokenError, match="returned 401: invalid_client") as info:
        make_issuer(recorder).token("wlcg-1.0", "s")
    assert "wlcg-1.0-client" in str(info.value)
    assert "client-secret" not in str(info.value)


def test_token_unknown_profile(make_issuer: MakeIssuer) -> None:
    recorder = _token_issuer()
    with pytest.raises(TokenError, match="no client for profile 'nosuch'") as info:
        make_issuer(recorder).token("nosuch", "s")
    assert "wlcg-1.0" in str(info.value)
    assert recorder.requests == []


def test_token_transport_error(make_issuer: MakeIssuer) -> None:
    def fail_to_connect(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TokenError, match=r"token request to .* failed"):
        make_issuer(fail_to_connect).token("wlcg-1.0", "s")


def test_token_rejects_non_jwt(make_issuer: MakeIssuer) -> None:
    recorder = RecordingIssuer(httpx.Response(200, json={"access_token": "opaque"}))
    with pytest.raises(TokenError, match="not a compact JWT"):
        make_issuer(recorder).token("wlcg-1.0", "s")


def test_token_missing_access_token(make_issuer: MakeIssuer) -> None:
    recorder = RecordingIssuer(httpx.Response(200, json={"error": "none"}))
    with pytest.raises(TokenError):
        make_issuer(recorder).token("wlcg-1.0", "s")


def _mint_issuer() -> RecordingIssuer:
    return RecordingIssuer(httpx.Response(200, json={"token": "minted.token.sig"}))


def test_mint_returns_token(make_issuer: MakeIssuer) -> None:
    recorder = _mint_issuer()
    assert make_issuer(recorder).mint({"alg": "RS256"}, {}) == "minted.token.sig"


def test_mint_posts_to_mint_endpoint(make_issuer: MakeIssuer) -> None:
    recorder = _mint_issuer()
    make_issuer(recorder).mint({"alg": "RS256"}, {})
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{ISSUER_URL}/testbed/mint"


def test_mint_sends_bearer_credential(make_issuer: MakeIssuer) -> None:
    recorder = _mint_issuer()
    make_issuer(recorder).mint({"alg": "RS256"}, {})
    headers = recorder.requests[0].headers
    assert headers["Authorization"] == f"Bearer {MINT_CREDENTIAL}"


def test_mint_sends_body(make_issuer: MakeIssuer) -> None:
    recorder = _mint_issuer()
    header = {"alg": "none", "kid": "kid-1"}
    claims = {"sub": "alice", "exp": 123}
    make_issuer(recorder).mint(header, claims, key="kid-1", signature="none")
    assert json.loads(recorder.requests[0].content) == {
        "header": header,
        "claims": claims,
        "signature": "none",
        "key": "kid-1",
    }


def test_mint_omits_absent_key(make_issuer: MakeIssuer) -> None:
    recorder = _mint_issuer()
    make_issuer(recorder).mint({"alg": "RS256"}, {})
    body = json.loads(recorder.requests[0].content)
    assert "key" not in body
    assert body["signature"] == "valid"


def test_mint_error_names_status(make_issuer: MakeIssuer) -> None:
    recorder = RecordingIssuer(httpx.Response(403, text="forbidden"))
    with pytest.raises(TokenError, match="returned 403: forbidden") as info:
        make_issuer(recorder).mint({}, {})
    assert MINT_CREDENTIAL not in str(info.value)


def test_mint_missing_token(make_issuer: MakeIssuer) -> None:
    recorder = RecordingIssuer(httpx.Response(200, json={}))
    with pytest.raises(TokenError):
        make_issuer(recorder).mint({}, {})


def test_discovery_returns_document(make_issuer: MakeIssuer) -> None:
    document = {"issuer": ISSUER_URL, "jwks_uri": f"{ISSUER_URL}/jwks"}
    recorder = RecordingIssuer(httpx.Response(200, json=document))
    assert make_issuer(recorder).discovery() == document
    assert recorder.requests[0].url.path == "/.well-known/openid-configuration"


def test_context_manager_closes(ca_file: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with IssuerClient(ISSUER_URL, ca_file, "c", CLIENTS, transport=transport) as client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        client.discovery()

"""Tests of testbed.conformance against a fake issuer on httpx.MockTransport.

The last test runs ``testbed conformance`` against the real reference issuer and
needs a Docker engine: it is skipped without one, except with ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import docker
import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from testbed import conformance, engine
from testbed.cli import cli
from testbed.conformance import (
    DEFAULT_AUDIENCE,
    ClientCredentials,
    Report,
    Status,
    check_issuer,
    metadata_urls,
    render_report,
    validate_issuer_url,
)
from testbed.errors import UsageError
from testbed.profiles import get_profile

ISSUER = "https://issuer.test"
CLIENT = ClientCredentials("conformance-client", "client-secret-value")
KID = "rs256-test"
REPO = Path(__file__).resolve().parent.parent
# A compact JWS with a non-empty signature: the report must never contain one.
WHOLE_TOKEN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{16,}")


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"kid": kid, "alg": "RS256", "use": "sig", **jwk}


class FakeIssuer:
    """An httpx.MockTransport handler that serves a conforming issuer.

    Tests change its attributes to break one rule at a time.
    """

    def __init__(self, key: rsa.RSAPrivateKey, profile_name: str) -> None:
        self.key = key
        self.profile = get_profile(profile_name)
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        self.serve_openid_configuration = True
        self.serve_oauth_metadata = True
        self.jwks: dict[str, Any] = {"keys": [_public_jwk(key, KID)]}
        self.jwks_headers = {"Cache-Control": "max-age=3600"}
        self.token_headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        self.lifetime: int | None = None
        self.scope: str | None = None
        self.extra_claims: dict[str, Any] = {}
        self.header: dict[str, Any] = {"kid": KID}
        self.issued: list[str] = []
        self.token_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            if not self.serve_openid_configuration:
                return httpx.Response(404, json={"error": "not_found"})
            return httpx.Response(200, json=self.discovery)
        if path == "/.well-known/oauth-authorization-server":
            if not self.serve_oauth_metadata:
                return httpx.Response(404, json={"error": "not_found"})
            return httpx.Response(200, json=self.discovery)
        if path == "/jwks":
            return httpx.Response(200, json=self.jwks, headers=self.jwks_headers)
        if path == "/token" and request.method == "POST":
            return self._token(request)
        return httpx.Response(404, json={"error": "not_found"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        expected = "Basic " + base64.b64encode(
            f"{CLIENT.client_id}:{CLIENT.secret}".encode()
        ).decode("ascii")
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401, json={"error": "invalid_client"})
        form = {
            key: values[0] for key, values in parse_qs(request.content.decode()).items()
        }
        claims = self.profile.baseline_claims(
            ISSUER,
            form["audience"],
            self.scope or form["scope"],
            lifetime=self.lifetime,
        )
        claims.update(self.extra_claims)
        token = jwt.encode(claims, self.key, algorithm="RS256", headers=self.header)
        self.issued.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 600}
        return httpx.Response(200, json=body, headers=self.token_headers)


@pytest.fixture
def make_issuer(signing_key: rsa.RSAPrivateKey) -> Callable[[str], FakeIssuer]:
    def make(profile_name: str = "wlcg-1.0") -> FakeIssuer:
        return FakeIssuer(signing_key, profile_name)

    return make


def _run(issuer: FakeIssuer, **options: Any) -> Report:
    with httpx.Client(transport=httpx.MockTransport(issuer)) as http:
        return check_issuer(http, ISSUER, CLIENT, issuer.profile, **options)


def _find(report: Report, check: str) -> conformance.CheckResult:
    matches = [result for result in report.checks if result.check == check]
    assert len(matches) == 1, f"{check!r} appears {len(matches)} times"
    return matches[0]


def _statuses(report: Report) -> dict[str, Status]:
    return {result.check: result.status for result in report.checks}


# --- a conforming issuer --------------------------------------------------------


def test_conforming_issuer_passes_every_check(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    report = _run(make_issuer("wlcg-1.0"))

    problems = [r for r in report.checks if r.status is not Status.PASS]
    assert problems == []
    assert not report.failed
    assert report.summary() == {
        "passed": len(report.checks),
        "failed": 0,
        "warnings": 0,
    }


def test_conforming_issuer_covers_every_area(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    report = _run(make_issuer("wlcg-1.0"))
    checks = _statuses(report)

    for name in (
        "metadata lookup",
        "openid-configuration: issuer equals the URL",
        "oauth-authorization-server: required fields",
        "jwks_uri is https",
        "token_endpoint is https",
        "JWKS served",
        "every key has a kid",
        "kids are unique",
        "key algorithms",
        "RSA keys have at least 2048 bits",
        "EC keys use the algorithm's curve",
        "use is sig",
        "no private key members",
        "key lifetime advertised (Cache-Control max-age)",
        "tokens: jti differs",
    ):
        assert name in checks
    for number in (1, 2):
        for rule in (
            "token response",
            "token response is not cached",
            "header alg",
            "required header fields",
            "required claims",
            "version claim",
            "lifetime at most 21600 s",
            "lifetime at most the recommended 1200 s",
            "iss equals the issuer",
            "aud contains the requested audience",
            "scope grants the request",
            "scope no wider than requested",
            "scope response parameter",
            "storage scopes carry absolute paths",
            "signature verifies with a JWKS key",
        ):
            assert f"token {number}: {rule}" in checks
    assert {r.area for r in report.checks} == {"discovery", "jwks", "token"}
    assert all(r.section for r in report.checks)


def test_token_request_sends_defaults(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    _run(issuer)

    assert len(issuer.token_requests) == 2
    form = parse_qs(issuer.token_requests[0].content.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["storage.read:/"]
    assert form["audience"] == [DEFAULT_AUDIENCE]


def test_scitokens_default_scope_is_read(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-2.0")
    report = _run(issuer)

    form = parse_qs(issuer.token_requests[0].content.decode())
    assert form["scope"] == ["read:/"]
    assert not report.failed


def test_requested_scope_and_audience_are_sent(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    report = _run(
        issuer, scope="storage.create:/data storage.read:/", audience="https://se.test"
    )

    form = parse_qs(issuer.token_requests[0].content.decode())
    assert form["scope"] == ["storage.create:/data storage.read:/"]
    assert form["audience"] == ["https://se.test"]
    assert not report.failed


# --- one broken rule at a time --------------------------------------------------


def test_key_without_kid_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    del issuer.jwks["keys"][0]["kid"]
    report = _run(issuer)

    assert _find(report, "every key has a kid").status is Status.FAIL
    assert "#1" in _find(report, "every key has a kid").detail
    assert _find(report, "token 1: signature verifies with a JWKS key").status is (
        Status.FAIL
    )
    assert report.failed


def test_key_without_kid_warns_for_rfc9068(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("rfc9068")
    del issuer.jwks["keys"][0]["kid"]
    report = _run(issuer)

    assert _find(report, "every key has a kid").status is Status.WARN


def test_repeated_kid_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    other = rsa.generate_private_key(65537, 2048)
    issuer.jwks["keys"].append(_public_jwk(other, KID))
    report = _run(issuer)

    assert _find(report, "kids are unique").status is Status.FAIL
    assert repr(KID) in _find(report, "kids are unique").detail


def test_1024_bit_rsa_key_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    small = rsa.generate_private_key(65537, 1024)
    issuer.jwks["keys"].append(_public_jwk(small, "small"))
    report = _run(issuer)

    result = _find(report, "RSA keys have at least 2048 bits")
    assert result.status is Status.FAIL
    assert "'small' 1024 bits" in result.detail
    assert result.section.startswith("RFC 7518 section 3.3")


def test_private_key_member_fails(
    make_issuer: Callable[[str], FakeIssuer], signing_key: rsa.RSAPrivateKey
) -> None:
    issuer = make_issuer("wlcg-1.0")
    private: dict[str, Any] = RSAAlgorithm.to_jwk(signing_key, as_dict=True)
    issuer.jwks["keys"] = [{"kid": KID, "alg": "RS256", "use": "sig", **private}]
    report = _run(issuer)

    result = _find(report, "no private key members")
    assert result.status is Status.FAIL
    assert "d, p, q, dp, dq, qi" in result.detail
    # The key still verifies, so only the leak fails.
    assert _find(report, "token 1: signature verifies with a JWKS key").status is (
        Status.PASS
    )


def test_symmetric_key_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.jwks["keys"].append({"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"})
    report = _run(issuer)

    assert _find(report, "key algorithms").status is Status.FAIL
    assert _find(report, "no private key members").status is Status.FAIL


def test_encryption_key_fails_use_check(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.jwks["keys"][0]["use"] = "enc"
    report = _run(issuer)

    assert _find(report, "use is sig").status is Status.FAIL


def test_missing_cache_control_warns(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.jwks_headers = {}
    report = _run(issuer)

    result = _find(report, "key lifetime advertised (Cache-Control max-age)")
    assert result.status is Status.WARN
    assert "SHOULD" in result.section
    assert not report.failed


def test_week_long_key_cache_warns_for_wlcg(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.jwks_headers = {"Cache-Control": f"max-age={8 * 86400}"}
    report = _run(issuer)

    result = _find(report, "key lifetime advertised (Cache-Control max-age)")
    assert result.status is Status.WARN
    assert "7 days" in result.section


def test_lifetime_over_6_hours_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.lifetime = 6 * 3600 + 1
    report = _run(issuer)

    result = _find(report, "token 1: lifetime at most 21600 s")
    assert result.status is Status.FAIL
    assert "21601 s" in result.detail
    recommended = _find(report, "token 1: lifetime at most the recommended 1200 s")
    assert recommended.status is Status.WARN


def test_lifetime_over_20_minutes_warns(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.lifetime = 3600
    report = _run(issuer)

    assert _find(report, "token 1: lifetime at most 21600 s").status is Status.PASS
    recommended = _find(report, "token 1: lifetime at most the recommended 1200 s")
    assert recommended.status is Status.WARN
    assert not report.failed


def test_wider_scope_fails_for_scitokens(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-2.0")
    issuer.scope = "read:/ write:/"
    report = _run(issuer, scope="read:/data")

    result = _find(report, "token 1: scope no wider than requested")
    assert result.status is Status.FAIL
    assert "read:/" in result.detail
    assert "write:/" in result.detail
    assert "MUST NOT" in result.section
    # RFC 6749 section 5.1: a changed scope must be reported in the response.
    response = _find(report, "token 1: scope response parameter")
    assert response.status is Status.FAIL


def test_wider_scope_warns_for_wlcg(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.scope = "storage.read:/ storage.modify:/"
    report = _run(issuer)

    result = _find(report, "token 1: scope no wider than requested")
    assert result.status is Status.WARN
    assert "storage.modify:/" in result.detail


def test_narrower_scope_is_no_widening(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-2.0")
    issuer.scope = "read:/data/sub"
    report = _run(issuer, scope="read:/data")

    assert _find(report, "token 1: scope no wider than requested").status is (
        Status.PASS
    )
    assert _find(report, "token 1: scope grants the request").status is Status.WARN


def test_sibling_prefix_scope_is_wider(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-2.0")
    issuer.scope = "read:/database"
    report = _run(issuer, scope="read:/data")

    assert _find(report, "token 1: scope no wider than requested").status is (
        Status.FAIL
    )


def test_relative_scope_path_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.scope = "storage.read:data"
    report = _run(issuer)

    result = _find(report, "token 1: storage scopes carry absolute paths")
    assert result.status is Status.FAIL
    assert "relative path" in result.detail


def test_unnormalised_scope_path_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.scope = "storage.read:/a/../b"
    report = _run(issuer, scope="storage.read:/b")

    result = _find(report, "token 1: storage scopes carry absolute paths")
    assert result.status is Status.FAIL
    assert "normalised" in result.detail


def test_wrong_issuer_in_discovery_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.discovery["issuer"] = "https://other.test"
    report = _run(issuer)

    for document in ("openid-configuration", "oauth-authorization-server"):
        result = _find(report, f"{document}: issuer equals the URL")
        assert result.status is Status.FAIL
        assert "RFC 8414 section 3.3" in result.section
        assert "'https://other.test'" in result.detail


def test_wrong_iss_claim_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.extra_claims = {"iss": "https://issuer.test/"}
    report = _run(issuer)

    assert _find(report, "token 1: iss equals the issuer").status is Status.FAIL


def test_missing_audience_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.extra_claims = {"aud": "https://elsewhere.test"}
    report = _run(issuer)

    result = _find(report, "token 1: aud contains the requested audience")
    assert result.status is Status.FAIL


def test_repeated_jti_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.extra_claims = {"jti": "always-the-same"}
    report = _run(issuer)

    assert _find(report, "tokens: jti differs").status is Status.FAIL


def test_unsupported_version_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.extra_claims = {"wlcg.ver": "2.0"}
    report = _run(issuer)

    result = _find(report, "token 1: version claim")
    assert result.status is Status.FAIL
    assert "'2.0'" in result.detail


def test_missing_kid_header_fails(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.header = {}
    report = _run(issuer)

    result = _find(report, "token 1: required header fields")
    assert result.status is Status.FAIL
    assert "kid" in result.detail


def test_rfc9068_needs_typ_at_jwt(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("rfc9068")
    report = _run(issuer)

    # PyJWT sets typ JWT by default.
    assert _find(report, "token 1: header typ").status is Status.FAIL
    issuer.header = {"kid": KID, "typ": "at+jwt"}
    assert _find(_run(issuer), "token 1: header typ").status is Status.PASS


def test_unknown_claim_fails_for_scitokens_1_0(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-1.0")
    issuer.extra_claims = {"client_id": "conformance-client"}
    report = _run(issuer)

    result = _find(report, "token 1: known claims only")
    assert result.status is Status.FAIL
    assert "client_id" in result.detail


def test_signature_from_unpublished_key_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.key = rsa.generate_private_key(65537, 2048)
    report = _run(issuer)

    result = _find(report, "token 1: signature verifies with a JWKS key")
    assert result.status is Status.FAIL
    assert "no RS256 key" in result.detail


def test_cacheable_token_response_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.token_headers = {}
    report = _run(issuer)

    assert _find(report, "token 1: token response is not cached").status is (
        Status.FAIL
    )


def test_rejected_token_request_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    with httpx.Client(transport=httpx.MockTransport(issuer)) as http:
        wrong = ClientCredentials(CLIENT.client_id, "wrong-secret")
        report = check_issuer(http, ISSUER, wrong, issuer.profile)

    result = _find(report, "token 1: token response")
    assert result.status is Status.FAIL
    assert "HTTP 401 with error 'invalid_client'" in result.detail
    assert "tokens: jti differs" not in _statuses(report)
    assert "wrong-secret" not in render_report(report)


def test_http_jwks_uri_is_not_fetched(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.discovery["jwks_uri"] = "http://issuer.test/jwks"
    report = _run(issuer)

    assert _find(report, "jwks_uri is https").status is Status.FAIL
    assert _find(report, "JWKS served").status is Status.FAIL
    assert "not fetched" in _find(report, "JWKS served").detail
    signature = _find(report, "token 1: signature verifies with a JWKS key")
    assert signature.status is Status.FAIL


def test_only_rfc8414_metadata_fails_wlcg(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.serve_openid_configuration = False
    report = _run(issuer)

    result = _find(report, "metadata lookup")
    assert result.status is Status.FAIL
    assert "openid-configuration: returned HTTP 404" in result.detail
    # The RFC 8414 document still leads to the JWKS and the token endpoint.
    assert _find(report, "JWKS served").status is Status.PASS


def test_only_rfc8414_metadata_passes_scitokens(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("scitokens-2.0")
    issuer.serve_openid_configuration = False
    report = _run(issuer)

    assert _find(report, "metadata lookup").status is Status.PASS
    assert not report.failed


def test_missing_authorization_endpoint_warns(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    del issuer.discovery["authorization_endpoint"]
    report = _run(issuer)

    statuses = _statuses(report)
    assert statuses["openid-configuration: authorization_endpoint"] is Status.WARN
    assert statuses["oauth-authorization-server: authorization_endpoint"] is (
        Status.PASS
    )


def test_authorization_endpoint_needed_for_code_grant(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    del issuer.discovery["authorization_endpoint"]
    issuer.discovery["grant_types_supported"] = ["authorization_code"]
    report = _run(issuer)

    result = _find(report, "oauth-authorization-server: authorization_endpoint")
    assert result.status is Status.FAIL


def test_missing_required_metadata_field_fails(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    del issuer.discovery["subject_types_supported"]
    report = _run(issuer)

    result = _find(report, "openid-configuration: required fields")
    assert result.status is Status.FAIL
    assert result.detail == "missing: subject_types_supported"
    # RFC 8414 does not require subject_types_supported.
    assert _find(report, "oauth-authorization-server: required fields").status is (
        Status.PASS
    )


def test_malformed_metadata_and_keys_fail(
    make_issuer: Callable[[str], FakeIssuer],
) -> None:
    issuer = make_issuer("wlcg-1.0")
    del issuer.discovery["authorization_endpoint"]
    issuer.discovery["grant_types_supported"] = [{"grant": "x"}]
    issuer.jwks["keys"].append({"kid": ["x"], "kty": "EC", "alg": {}, "crv": []})
    report = _run(issuer)

    assert _find(report, "key algorithms").status is Status.FAIL
    assert _find(report, "EC keys use the algorithm's curve").status is Status.FAIL
    result = _find(report, "openid-configuration: authorization_endpoint")
    assert result.status is Status.WARN


def test_unreachable_issuer_reports_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    profile = get_profile("wlcg-1.0")
    with httpx.Client(transport=httpx.MockTransport(refuse)) as http:
        report = check_issuer(http, ISSUER, CLIENT, profile)

    lookup = _find(report, "metadata lookup")
    assert lookup.status is Status.FAIL
    assert "ConnectError: connection refused" in lookup.detail
    assert _find(report, "JWKS served").status is Status.FAIL
    assert _find(report, "token request").status is Status.FAIL
    assert report.summary()["passed"] == 0


def test_timeout_reports_failure(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")

    def slow_jwks(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jwks":
            raise httpx.ReadTimeout("timed out", request=request)
        return issuer(request)

    with httpx.Client(transport=httpx.MockTransport(slow_jwks)) as http:
        report = check_issuer(http, ISSUER, CLIENT, issuer.profile)

    result = _find(report, "JWKS served")
    assert result.status is Status.FAIL
    assert "ReadTimeout" in result.detail


# --- input validation and output -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.test",
        "https://",
        "https://issuer.test/?tenant=a",
        "https://issuer.test/#top",
        "https://user:pass@issuer.test",
        "https://issuer.test:99999",
        "issuer.test",
    ],
)
def test_invalid_issuer_url_raises(url: str) -> None:
    with pytest.raises(UsageError, match="invalid issuer URL"):
        validate_issuer_url(url)


def test_metadata_urls_for_issuer_with_path() -> None:
    urls = metadata_urls("https://issuer.test/tenant/")

    assert urls["openid-configuration"] == (
        "https://issuer.test/tenant/.well-known/openid-configuration"
    )
    assert urls["oauth-authorization-server"] == (
        "https://issuer.test/.well-known/oauth-authorization-server/tenant"
    )


@pytest.mark.parametrize("scope", ["", " storage.read:/", "a  b", 'quote"d'])
def test_invalid_scope_raises(
    make_issuer: Callable[[str], FakeIssuer], scope: str
) -> None:
    with pytest.raises(UsageError, match="invalid scope"):
        _run(make_issuer("wlcg-1.0"), scope=scope)


def test_text_report_groups_by_area(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    issuer.jwks_headers = {}
    text = render_report(_run(issuer))
    lines = text.splitlines()

    assert lines[0] == f"issuer {ISSUER}, profile wlcg-1.0"
    headings = [line for line in lines if line in ("discovery", "jwks", "token")]
    assert headings == ["discovery", "jwks", "token"]
    assert re.search(r"^  WARN  key lifetime advertised .*\[WLCG 1\.0", text, re.M)
    assert re.fullmatch(r"\d+ passed, 0 failed, 1 warning", lines[-1])


def test_json_report_fields(make_issuer: Callable[[str], FakeIssuer]) -> None:
    document = json.loads(render_report(_run(make_issuer("wlcg-1.0")), "json"))

    assert document["issuer"] == ISSUER
    assert document["profile"] == "wlcg-1.0"
    assert set(document["summary"]) == {"passed", "failed", "warnings"}
    assert document["summary"]["passed"] == len(document["checks"])
    for check in document["checks"]:
        assert set(check) == {"area", "check", "status", "section", "detail"}
        assert check["status"] in ("PASS", "FAIL", "WARN")


def test_report_never_contains_token(make_issuer: Callable[[str], FakeIssuer]) -> None:
    issuer = make_issuer("wlcg-1.0")
    report = _run(issuer)
    output = render_report(report) + render_report(report, "json")

    assert len(issuer.issued) == 2
    for token in issuer.issued:
        assert token not in output
        assert token.rsplit(".", 1)[1] not in output
    assert not WHOLE_TOKEN.search(output)
    assert CLIENT.secret not in output


# --- the CLI --------------------------------------------------------------------


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(CLIENT.secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["conformance", *args])


@pytest.fixture
def mock_network(
    monkeypatch: pytest.MonkeyPatch, make_issuer: Callable[[str], FakeIssuer]
) -> FakeIssuer:
    issuer = make_issuer("wlcg-1.0")

    def open_mock_client(ca_file: Path | None) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(issuer))

    monkeypatch.setattr(conformance, "open_client", open_mock_client)
    return issuer


def _external(secret: Path, *args: str) -> list[str]:
    return [
        "--issuer",
        ISSUER,
        "--client-id",
        CLIENT.client_id,
        "--client-secret-file",
        str(secret),
        "--profile",
        "wlcg-1.0",
        *args,
    ]


def test_cli_external_issuer_json(mock_network: FakeIssuer, secret_file: Path) -> None:
    result = _invoke(*_external(secret_file, "--format", "json"))

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["summary"]["failed"] == 0
    assert document["issuer"] == ISSUER


def test_cli_exits_1_on_failed_check(
    mock_network: FakeIssuer, secret_file: Path
) -> None:
    mock_network.lifetime = 7 * 3600
    result = _invoke(*_external(secret_file))

    assert result.exit_code == 1, result.output
    assert "FAIL  token 1: lifetime at most 21600 s" in result.output
    assert re.search(r"\d+ passed, 2 failed, 2 warnings$", result.output.strip())


def test_cli_secret_comes_from_the_file(
    mock_network: FakeIssuer, secret_file: Path
) -> None:
    _invoke(*_external(secret_file))

    authorization = mock_network.token_requests[0].headers["Authorization"]
    decoded = base64.b64decode(authorization.split(" ")[1]).decode()
    assert decoded == f"{CLIENT.client_id}:{CLIENT.secret}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "wlcg-9"], "unknown profile 'wlcg-9'"),
        (
            ["--profile", "wlcg-1.0", "--issuer", "http://issuer.test"],
            "it must use https",
        ),
        (
            ["--profile", "wlcg-1.0", "--issuer", ISSUER],
            "--issuer needs --client-id and --client-secret-file",
        ),
        (
            ["--profile", "wlcg-1.0", "--client-id", "x"],
            "--client-id needs --issuer",
        ),
        (
            [
                "--profile",
                "wlcg-1.0",
                "--issuer",
                ISSUER,
                "--client-id",
                "x",
                "--client-secret-file",
                "/nonexistent/secret",
            ],
            "client secret file /nonexistent/secret not found",
        ),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = _invoke(*args)

    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_missing_ca_file_exits_2(secret_file: Path) -> None:
    result = _invoke(*_external(secret_file, "--ca-file", "/nonexistent/ca.pem"))

    assert result.exit_code == 2
    assert "CA file /nonexistent/ca.pem not found" in result.output


def test_cli_empty_secret_file_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    result = _invoke(*_external(empty))

    assert result.exit_code == 2
    assert "is empty" in result.output


def _closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_cli_unreachable_loopback_issuer(secret_file: Path) -> None:
    issuer = f"https://127.0.0.1:{_closed_loopback_port()}"
    args = _external(secret_file)
    args[1] = issuer
    started = time.monotonic()
    result = _invoke(*args)

    assert result.exit_code == 1, result.output
    assert "FAIL  metadata lookup" in result.output
    assert "ConnectError" in result.output
    assert "Traceback" not in result.output
    assert time.monotonic() - started < conformance.REQUEST_TIMEOUT


# --- against the real reference issuer -------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize("profile", ["wlcg-1.0", "scitokens-2.0"])
def test_reference_issuer_conforms(
    docker_client: docker.DockerClient, tmp_path: Path, profile: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "testbed", "conformance", "--profile", profile,
         "--format", "json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TESTBED_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=900)

    assert process.returncode == 0, stderr[-3000:] + stdout[-3000:]
    document = json.loads(stdout)
    assert document["profile"] == profile
    assert document["issuer"].startswith("https://localhost:")
    assert document["summary"]["failed"] == 0
    statuses = {check["check"]: check["status"] for check in document["checks"]}
    assert statuses["token 1: signature verifies with a JWKS key"] == "PASS"
    assert statuses["token 2: signature verifies with a JWKS key"] == "PASS"
    assert statuses["tokens: jti differs"] == "PASS"
    assert statuses["metadata lookup"] == "PASS"
    assert not WHOLE_TOKEN.search(stdout + stderr)
    leftovers = docker_client.containers.list(
        all=True,
        filters={
            "label": [
                f"{engine.LABEL_MANAGED}=true",
                f"{engine.LABEL_PID}={process.pid}",
            ]
        },
    )
    assert leftovers == []

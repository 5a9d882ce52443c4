"""Tests of testbed.tokens: decoding without verification and redaction."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.errors import TokenError
from testbed.tokens import decode_unverified, redact_authorization, strip_signature

CLAIMS = {"iss": "https://issuer.test", "sub": "alice", "scope": "storage.read:/"}


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def token() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(CLAIMS, key, algorithm="ES256", headers={"kid": "kid-1"})


def test_decode_unverified_header(token: str) -> None:
    header, _ = decode_unverified(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == "kid-1"


def test_decode_unverified_claims(token: str) -> None:
    _, claims = decode_unverified(token)
    assert claims == CLAIMS


def test_decode_unverified_unsigned() -> None:
    header = _segment(b'{"alg": "none"}')
    claims = _segment(b'{"sub": "x"}')
    unsigned = f"{header}.{claims}."
    assert decode_unverified(unsigned) == ({"alg": "none"}, {"sub": "x"})


@pytest.mark.parametrize("value", ["a.b", "abc", "a.b.c.d"])
def test_decode_unverified_rejects_part_count(value: str) -> None:
    with pytest.raises(TokenError, match="expected 3 dot-separated parts"):
        decode_unverified(value)


def test_decode_unverified_rejects_non_json() -> None:
    value = f"{_segment(b'not json')}.{_segment(b'{}')}.sig"
    with pytest.raises(TokenError, match="cannot decode header or claims"):
        decode_unverified(value)


def test_decode_unverified_rejects_bad_base64() -> None:
    with pytest.raises(TokenError, match="cannot decode header or claims"):
        decode_unverified("a.e30.sig")


def test_decode_unverified_rejects_json_array() -> None:
    value = f"{_segment(json.dumps([1]).encode())}.{_segment(b'{}')}.sig"
    with pytest.raises(TokenError, match="must be JSON objects"):
        decode_unverified(value)


def test_strip_signature_removes_signature(token: str) -> None:
    head, claims, signature = token.split(".")
    stripped = strip_signature(token)
    assert stripped == f"{head}.{claims}."
    assert signature not in stripped


def test_strip_signature_still_decodes(token: str) -> None:
    assert decode_unverified(strip_signature(token))[1] == CLAIMS


def test_redact_authorization_bearer(token: str) -> None:
    signature = token.rsplit(".", 1)[1]
    redacted = redact_authorization(f"Bearer {token}")
    assert signature not in redacted
    assert token not in redacted
    assert redacted.startswith("Bearer ")
    assert redacted.endswith("<signature stripped>")


def test_redact_authorization_lowercase_scheme(token: str) -> None:
    signature = token.rsplit(".", 1)[1]
    assert signature not in redact_authorization(f"bearer {token}")


def test_redact_authorization_basic() -> None:
    assert redact_authorization("Basic dXNlcjpzZWNyZXQ=") == "Basic <redacted>"


def test_redact_authorization_bare_scheme() -> None:
    assert redact_authorization("Bearer") == "Bearer"


def test_redact_authorization_opaque_token() -> None:
    credential = "opaque-secret-credential"
    assert credential not in redact_authorization(f"Bearer {credential}")

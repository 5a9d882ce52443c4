"""Helpers for JWTs that never expose a whole token.

Evidence and logs keep a token's header and claims only; the signature is stripped.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from testbed.errors import TokenError

__all__ = ["decode_unverified", "redact_authorization", "strip_signature"]


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the header and claims of a compact JWS without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(
            f"not a compact JWT: expected 3 dot-separated parts, found {len(parts)}"
        )
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (binascii.Error, ValueError) as exc:
        raise TokenError(
            f"not a compact JWT: cannot decode header or claims: {exc}"
        ) from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("not a compact JWT: header and claims must be JSON objects")
    return header, claims


def strip_signature(token: str) -> str:
    """Return ``header.claims.`` so that the result can no longer be used as a token."""
    head, _, rest = token.partition(".")
    claims = rest.partition(".")[0]
    return f"{head}.{claims}."


def redact_authorization(value: str) -> str:
    """Redact a bearer token in an Authorization header value."""
    scheme, _, credential = value.partition(" ")
    if not credential:
        return value
    if scheme.lower() != "bearer" or credential.count(".") != 2:
        return f"{scheme} <redacted>"
    return f"Bearer {strip_signature(credential)}<signature stripped>"

"""The testbed's strict reference validator, driven by the profile data.

It judges a token as the token's profile requires of a relying party, and
where the profile leaves a choice it takes the strict one: padded base64, relative
scope paths, malformed scope lists and unknown critical headers are rejected. It
fetches the issuer's discovery document and JWKS over HTTPS like any other
validator, and trusts only the issuers it is given.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import posixpath
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import jwt

from testbed.httpclient import make_client
from testbed.profiles import Profile, get_profile
from testbed.results import Verdict
from testbed.validators.base import Check, ValidationResult

__all__ = ["ReferenceValidator", "TokenRejected", "scope_grants"]

logger = logging.getLogger(__name__)

# Seconds the validator keeps an issuer's keys before fetching them again.
KEY_CACHE_SECONDS = 300
FETCH_TIMEOUT = 5.0
OPERATIONS = ("read", "create", "modify")


class TokenRejected(Exception):
    """The token fails one rule; the message names the rule."""


def _b64decode(segment: str, what: str) -> bytes:
    if "=" in segment:
        raise TokenRejected(f"the {what} segment carries base64 padding")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected(f"the {what} segment is not base64url: {exc}") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise TokenRejected(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenRejected(f"the {what} is not a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalise_path(path: str) -> str:
    """Decode percent-escapes and remove dot-segments (RFC 3986 section 6)."""
    decoded = urllib.parse.unquote(path)
    normalised = posixpath.normpath(decoded)
    # normpath keeps a leading "//"; paths in scopes have one leading slash.
    return "/" + normalised.lstrip("/") if normalised != "." else "/"


def _covers(granted: str, requested: str) -> bool:
    """Tell whether scope path ``granted`` covers ``requested``, by whole components."""
    base = normalise_path(granted).rstrip("/")
    target = normalise_path(requested)
    return base == "" or target == base or target.startswith(base + "/")


def scope_grants(profile: Profile, scope: str, operation: str, path: str) -> str | None:
    """Return the scope entry that grants ``operation`` on ``path``, or None.

    Raises TokenRejected for a malformed scope list or, where the profile requires
    one, a storage scope without an absolute path.
    """
    if scope != scope.strip() or "  " in scope:
        raise TokenRejected("the scope list is not separated by single spaces")
    names = profile.scope_names
    allowed = {names[operation]}
    if operation == "create":
        allowed.add(names["modify"])
    if operation == "read" and profile.stage_implies_read and "stage" in names:
        allowed.add(names["stage"])
    storage_names = set(names.values())
    for entry in scope.split(" "):
        name, separator, scope_path = entry.partition(":")
        if name not in storage_names:
            continue
        if not separator or not scope_path:
            if profile.path_required:
                raise TokenRejected(f"the scope {entry!r} carries no path")
            scope_path = "/"
        if not scope_path.startswith("/"):
            raise TokenRejected(f"the scope {entry!r} has a relative path")
        if name in allowed and _covers(scope_path, path):
            return entry
    return None


class ReferenceValidator:
    """Validates tokens in the testbed's process against the token's profile."""

    def __init__(
        self,
        key: str,
        ca_file: Path,
        trusted_issuers: list[str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key = key
        self.trusted_issuers = list(trusted_issuers)
        self._http = make_client(ca_file, timeout=FETCH_TIMEOUT, transport=transport)
        self._keys: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def validate(self, check: Check) -> ValidationResult:
        """Judge ``check.token`` for the check's operation, path and audience."""
        if check.token is None:
            return ValidationResult(Verdict.REJECT, "no token")
        profile = get_profile(check.profile)
        try:
            granted = self._judge(check, profile, check.token)
        except TokenRejected as exc:
            return ValidationResult(
                Verdict.REJECT, str(exc), evidence={"rule": str(exc)}
            )
        return ValidationResult(
            Verdict.ACCEPT, f"authorised by {granted!r}", evidence={"scope": granted}
        )

    def _judge(self, check: Check, profile: Profile, token: str) -> str:
        segments = token.split(".")
        if len(segments) != 3:
            raise TokenRejected(
                f"a compact JWS has 3 segments, this one {len(segments)}"
            )
        header = _json_object(_b64decode(segments[0], "header"), "header")
        claims = _json_object(_b64decode(segments[1], "claims"), "claims set")
        _b64decode(segments[2], "signature")

        self._check_header(profile, header)
        self._check_signature(profile, header, claims, token)
        self._check_claims(profile, claims, check.audience)
        scope = claims.get("scope")
        if not isinstance(scope, str):
            raise TokenRejected("the scope claim is missing or not a string")
        granted = scope_grants(profile, scope, check.operation, check.path)
        if granted is None:
            raise TokenRejected(
                f"no scope grants {check.operation} on {check.path}: {scope!r}"
            )
        return granted

    def _check_header(self, profile: Profile, header: dict[str, Any]) -> None:
        alg = header.get("alg")
        if alg not in profile.algorithms:
            raise TokenRejected(
                f"alg {alg!r} is not one of the profile's {list(profile.algorithms)}"
            )
        for name in profile.required_header:
            if name not in header:
                raise TokenRejected(f"the header has no {name}")
        if profile.typ_values and header.get("typ") not in profile.typ_values:
            raise TokenRejected(
                f"typ {header.get('typ')!r} is not one of {list(profile.typ_values)}"
            )
        if "crit" in header:
            raise TokenRejected(f"critical header extensions {header['crit']!r}")

    def _check_signature(
        self,
        profile: Profile,
        header: dict[str, Any],
        claims: dict[str, Any],
        token: str,
    ) -> None:
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in self.trusted_issuers:
            raise TokenRejected(f"the issuer {issuer!r} is not trusted")
        keys = self._issuer_keys(issuer)
        kid = header.get("kid")
        if kid is not None:
            keys = [k for k in keys if k.get("kid") == kid]
            if not keys:
                raise TokenRejected(f"the issuer's JWKS has no key {kid!r}")
        alg = header["alg"]
        candidates = [k for k in keys if k.get("alg", alg) == alg]
        for jwk in candidates:
            try:
                key = jwt.PyJWK.from_dict(jwk, algorithm=alg)
                jwt.api_jws.PyJWS().decode_complete(token, key=key, algorithms=[alg])
            except jwt.PyJWTError:
                continue
            return
        raise TokenRejected("the signature does not verify with the issuer's keys")

    def _issuer_keys(self, issuer: str) -> list[dict[str, Any]]:
        with self._lock:
            cached = self._keys.get(issuer)
            if cached and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
                return cached[1]
        try:
            discovery = self._http.get(f"{issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            jwks_uri = discovery.json()["jwks_uri"]
            response = self._http.get(jwks_uri)
            response.raise_for_status()
            keys = list(response.json()["keys"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise TokenRejected(f"cannot fetch the keys of {issuer}: {exc}") from None
        with self._lock:
            self._keys[issuer] = (time.monotonic(), keys)
        logger.debug("fetched %d keys of %s", len(keys), issuer)
        return keys

    def _check_claims(
        self, profile: Profile, claims: dict[str, Any], audience: str
    ) -> None:
        for name in profile.required_claims:
            if name not in claims:
                raise TokenRejected(f"the required claim {name} is missing")
        if profile.known_claims:
            unknown = sorted(set(claims) - set(profile.known_claims))
            if unknown:
                raise TokenRejected(
                    f"claims {unknown} are unknown, and all are critical"
                )
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_number(claims[name]):
                raise TokenRejected(f"{name} is not a number")
        if "exp" not in claims:
            raise TokenRejected("the token has no exp")
        if profile.version_claim and not profile.version_supported(
            claims.get(profile.version_claim)
        ):
            raise TokenRejected(
                f"{profile.version_claim} {claims.get(profile.version_claim)!r} is not "
                "a supported version"
            )

        now = time.time()
        leeway = profile.expiry_leeway
        if now >= claims["exp"] + leeway:
            raise TokenRejected("the token has expired")
        if "nbf" in claims and now + leeway < claims["nbf"]:
            raise TokenRejected("the token is not valid yet (nbf)")
        start = claims.get("nbf", claims.get("iat"))
        if start is not None and claims["exp"] - start > profile.maximum_lifetime:
            raise TokenRejected(
                f"the token is valid for {claims['exp'] - start:.0f} s, longer than "
                f"the profile's maximum of {profile.maximum_lifetime} s"
            )

        if "aud" not in claims:
            if profile.audience_required:
                raise TokenRejected("the token has no aud")
            return
        values = claims["aud"]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TokenRejected("aud is neither a string nor an array of strings")
        accepted = {audience} | (
            {profile.any_audience} if profile.any_audience else set()
        )
        if not accepted & set(values):
            raise TokenRejected(f"aud {claims['aud']!r} does not name {audience!r}")

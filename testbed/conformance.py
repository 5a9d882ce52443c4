"""Conformance checks of a token issuer: discovery metadata, JWKS and issued tokens.

Each check returns CheckResult lines. PASS means the rule is met, FAIL that a MUST is
broken, and WARN a finding that breaks no MUST: a SHOULD, or a rule that one
specification states and another waives. Every line names the specification
section behind it. The checks take an ``httpx.Client``, so tests can drive them
with ``httpx.MockTransport``.

Where a rule comes from the token profile (algorithms, required header fields and
claims, version claim, maximum lifetime, scope names), the check reads
``testbed.profiles.Profile``. Section names for the six profiles of
``testbed/data/profiles`` are in ``PROFILE_RULES``. Other profiles get generic
RFC sections.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import posixpath
import re
import shutil
import ssl
import time
import urllib.parse
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import jwt

from testbed.errors import TokenError, UsageError
from testbed.httpclient import make_client
from testbed.profiles import Profile
from testbed.tokens import decode_unverified

__all__ = [
    "DEFAULT_AUDIENCE",
    "CheckResult",
    "ClientCredentials",
    "Report",
    "Status",
    "check_issuer",
    "check_jwks",
    "check_metadata_document",
    "check_metadata_endpoints",
    "check_metadata_lookup",
    "check_reference_issuer",
    "check_token",
    "check_token_ids",
    "check_token_response",
    "load_client_secret",
    "metadata_urls",
    "open_client",
    "render_report",
    "validate_issuer_url",
]

logger = logging.getLogger(__name__)

# Seconds for one request to the issuer under test.
REQUEST_TIMEOUT = 10.0
# Audience requested when the user names none. The .example domain is reserved
# (RFC 2606), so the value names no real service.
DEFAULT_AUDIENCE = "https://conformance.testbed.example"
# Number of tokens requested, so that their jti values can be compared.
TOKEN_COUNT = 2

OPENID_CONFIGURATION = "openid-configuration"
OAUTH_AUTHORIZATION_SERVER = "oauth-authorization-server"
DISCOVERY, JWKS, TOKEN = "discovery", "jwks", "token"
AREAS = (DISCOVERY, JWKS, TOKEN)

MINUTE, HOUR, DAY = 60, 3600, 86400
# RFC 7518 section 3.3: RSA keys for RS256 are at least 2048 bits long.
MINIMUM_RSA_BITS = 2048
# RFC 7518 section 3.4: the curve that each ECDSA algorithm uses.
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# RFC 7518 sections 6.2.2, 6.3.2 and 6.4.1: members that hold private key material.
PRIVATE_KEY_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# Metadata fields that OpenID Connect Discovery 1.0 section 3 marks REQUIRED.
# authorization_endpoint is checked on its own line: RFC 8414 waives it.
OPENID_REQUIRED_FIELDS = (
    "issuer",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)
# RFC 8414 section 2: REQUIRED fields, apart from authorization_endpoint.
OAUTH_REQUIRED_FIELDS = ("issuer", "token_endpoint", "response_types_supported")
# RFC 8414 section 2: grant types that use the authorization endpoint, and the
# default of grant_types_supported.
AUTHORIZATION_ENDPOINT_GRANTS = ("authorization_code", "implicit")
# RFC 6749 appendix A.4: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class Status(enum.StrEnum):
    """Outcome of one check."""

    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: a rule, its outcome and the section that states it."""

    area: str
    check: str
    status: Status
    section: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "area": self.area,
            "check": self.check,
            "status": str(self.status),
            "section": self.section,
            "detail": self.detail,
        }


def _line(
    area: str,
    check: str,
    passed: bool,
    section: str,
    detail: str = "",
    level: Status = Status.FAIL,
) -> CheckResult:
    """Build a PASS line when the check ``passed``, else a line at ``level``."""
    return CheckResult(area, check, Status.PASS if passed else level, section, detail)


@dataclass
class Report:
    """The results of one conformance run against one issuer and profile."""

    issuer: str
    profile: str
    checks: list[CheckResult] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        statuses = [check.status for check in self.checks]
        return {
            "passed": statuses.count(Status.PASS),
            "failed": statuses.count(Status.FAIL),
            "warnings": statuses.count(Status.WARN),
        }

    @property
    def failed(self) -> bool:
        return any(check.status is Status.FAIL for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "profile": self.profile,
            "checks": [check.as_dict() for check in self.checks],
            "summary": self.summary(),
        }


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth client of the issuer under test (RFC 6749 section 2.3.1)."""

    client_id: str
    secret: str = field(repr=False)


# --- specification sections ---------------------------------------------------


@dataclass(frozen=True)
class SpecificationRules:
    """Sections of one profile's specification for each issuer rule, and rule levels.

    The defaults are generic RFC sections, for profiles without an entry in
    ``PROFILE_RULES``.
    """

    metadata: str = (
        "OpenID Connect Discovery 1.0 section 4 or RFC 8414 section 3: "
        "either metadata document"
    )
    # True when the profile requires .well-known/openid-configuration even if
    # the RFC 8414 document is served.
    openid_configuration_required: bool = False
    jwks_uri_https: str = (
        "RFC 7517 section 9.1: a key is no more trustworthy than the way it was "
        "obtained"
    )
    key_lookup: str = "RFC 7517 section 4.5: kid selects a key of the JWK Set"
    key_lifetime: str = (
        "RFC 9111 section 5.2.2.1: max-age tells clients how long to cache the keys"
    )
    # Seconds of Cache-Control max-age above which the key lifetime gets a WARN.
    key_cache_maximum: int | None = None
    key_cache_maximum_section: str = ""
    algorithms: str = "RFC 7515 section 4.1.1 and the profile's header.algorithms"
    header: str = "the profile's header.required"
    typ: str = "RFC 9068 section 2.1: typ at+jwt marks a JWT access token"
    claims: str = "the profile's claims.required"
    version: str = "the profile's version claim"
    known_claims: str = "the profile's claims.known: every claim is critical"
    lifetime: str = "the profile's lifetime.maximum"
    # Seconds of token lifetime above which the lifetime gets a WARN.
    recommended_lifetime: int | None = None
    recommended_lifetime_section: str = ""
    scope_paths: str = "the profile's scopes.path_required"
    scope_wider: str = (
        "RFC 6749 section 3.3: the issuer may change the requested scope; a wider "
        "scope grants more than the client asked for"
    )
    scope_wider_level: Status = Status.WARN
    signature: str = (
        "RFC 7515 section 5.2: the signature verifies with the issuer's key"
    )


_WLCG_1_0 = SpecificationRules(
    metadata=(
        "WLCG 1.0, Metadata lookup: issuers MUST serve "
        ".well-known/openid-configuration, which MUST name the JWKS URI"
    ),
    openid_configuration_required=True,
    jwks_uri_https=(
        "WLCG 1.0, Token Verification: communication with the issuer MUST use HTTPS"
    ),
    key_lookup=(
        "WLCG 1.0, Token Verification: the key MUST be identified by matching "
        "the token's kid"
    ),
    key_lifetime=(
        "WLCG 1.0, Token Verification: the issuer SHOULD advertise the public key "
        "lifetime in HTTP caching headers"
    ),
    key_cache_maximum=7 * DAY,
    key_cache_maximum_section=(
        "WLCG 1.0, Token Verification: the key cache lifetime SHOULD be less than "
        "7 days"
    ),
    algorithms=(
        "WLCG 1.0, Token Verification and Metadata lookup: an asymmetric "
        "algorithm, ES256 or RS256"
    ),
    header="WLCG 1.0, Token Verification: the token MUST contain a kid",
    claims="WLCG 1.0, Common Claims and Access Token Claims",
    version=(
        "WLCG 1.0, Claim and Token validation: each token MUST provide a wlcg.ver "
        "that relying parties support"
    ),
    lifetime=(
        "WLCG 1.0, Token Lifetime Guidance: issuers MUST issue access tokens valid "
        "for less than 6 hours"
    ),
    recommended_lifetime=20 * MINUTE,
    recommended_lifetime_section=(
        "WLCG 1.0, Token Lifetime Guidance: issuers SHOULD aim for 20 minutes"
    ),
    scope_paths=(
        "WLCG 1.0, Capability based Authorization: scope: storage.* scopes MUST "
        "carry a path, and issuers MUST use absolute, normalised paths"
    ),
    scope_wider=(
        "WLCG 1.0, Scope-Based Capability Selection and RFC 6749 section 3.3: the "
        "issuer may change the requested scope, and clients should verify it"
    ),
    signature=(
        "WLCG 1.0, Token Verification: the signature verifies with the JWKS key "
        "that the kid names"
    ),
)

_WLCG_1_3 = replace(
    _WLCG_1_0,
    metadata=(
        "WLCG 1.3, 4.2.1 Metadata lookup: issuers MUST serve "
        ".well-known/openid-configuration, which MUST name the JWKS URI"
    ),
    jwks_uri_https=(
        "WLCG 1.3, 4.2 Token Verification: communication with the issuer MUST use HTTPS"
    ),
    key_lookup=(
        "WLCG 1.3, 4.2 Token Verification: the key MUST be identified by matching "
        "the token's kid"
    ),
    key_lifetime=(
        "WLCG 1.3, 4.2 Token Verification: the issuer SHOULD advertise the public "
        "key lifetime in HTTP caching headers"
    ),
    key_cache_maximum=None,
    key_cache_maximum_section="",
    algorithms=(
        "WLCG 1.3, 4.2 Token Verification and 4.2.1 Metadata lookup: an "
        "asymmetric algorithm, ES256 or RS256"
    ),
    header="WLCG 1.3, 4.2 Token Verification: the token MUST contain a kid",
    claims="WLCG 1.3, 2.1 WLCG Token Claims",
    version="WLCG 1.3, 4.3.3 Claim and Token validation",
    lifetime=(
        "WLCG 1.3, 4.3.1 Token Lifetime Guidance: default maximum of 6 hours for "
        "access tokens"
    ),
    recommended_lifetime=HOUR,
    recommended_lifetime_section=(
        "WLCG 1.3, 4.3.1 Token Lifetime Guidance: default recommended lifetime of "
        "1 hour"
    ),
    scope_paths=(
        "WLCG 1.3, 2.2.1 Capability-based Authorization: scope: storage.* scopes "
        "MUST carry a path, and issuers MUST use absolute, normalised paths"
    ),
    scope_wider=(
        "WLCG 1.3, 3.2 Scope-Based Capability Selection and RFC 6749 section 3.3: "
        "the issuer may change the requested scope, and clients should verify it"
    ),
    signature=(
        "WLCG 1.3, 4.2 Token Verification: the signature verifies with the JWKS "
        "key that the kid names"
    ),
)

_SCITOKENS_2_0 = SpecificationRules(
    metadata=(
        "SciTokens Verification: the JWKS URI comes from the issuer's "
        "authorization server metadata (RFC 8414)"
    ),
    key_lookup="SciTokens Verification: the key ID selects the issuer's public key",
    algorithms=(
        "SciTokens Verification: signed with an asymmetric key; version 2.0 "
        "validators MUST support RS256 and ES256"
    ),
    header="SciTokens Verification: the key ID selects the issuer's public key",
    claims="SciTokens Verification, Version 2.0: required claims",
    version="SciTokens Verification: ver names the claims language, scitoken:2.0",
    lifetime=(
        "SciTokens Claims, Standard Claims: nbf and exp are critical so that "
        "resources can enforce a maximum lifetime (the testbed profile sets it)"
    ),
    scope_paths=(
        "SciTokens Claims, scope: read and write scopes carry a path, normalised "
        "as in RFC 3986 section 6"
    ),
    scope_wider=(
        "SciTokens Claims, SciTokens Scopes: a server MUST NOT return tokens with "
        "more authorization granted than requested"
    ),
    scope_wider_level=Status.FAIL,
    signature=(
        "SciTokens Verification: the signature verifies with the issuer's public key"
    ),
)

_SCITOKENS_1_0 = replace(
    _SCITOKENS_2_0,
    algorithms="SciTokens Verification: signed with an asymmetric key",
    claims="SciTokens Claims, version 1.0: required claims",
    known_claims=(
        "SciTokens Verification, Version 1.0: a token with unknown claims is invalid"
    ),
)

_RFC_9068 = SpecificationRules(
    algorithms=(
        "RFC 9068 section 2.1: JWT access tokens MUST be signed and MUST NOT use none"
    ),
    header="RFC 9068 section 2.1: the header carries typ",
    typ="RFC 9068 section 2.1: typ at+jwt (application/at+jwt is equivalent)",
    claims=(
        "RFC 9068 section 2.2: iss, exp, aud, sub, client_id, iat and jti are REQUIRED"
    ),
    lifetime="the testbed profile's lifetime.maximum (RFC 9068 sets no maximum)",
    scope_paths=(
        "WLCG 1.0, Capability based Authorization: scope (the profile uses the "
        "WLCG storage scopes)"
    ),
    signature="RFC 9068 section 4: the signature verifies with the issuer's keys",
)

PROFILE_RULES: dict[str, SpecificationRules] = {
    "wlcg-1.0": _WLCG_1_0,
    "wlcg-1.3": _WLCG_1_3,
    "wlcg-2.0-draft": replace(
        _WLCG_1_3,
        header=(
            "draft: kid as in WLCG 1.3 section 4.2, typ as in RFC 9068 section 2.1"
        ),
        typ="draft: typ at+jwt as in RFC 9068 section 2.1",
        claims="draft: WLCG 1.3 claims and client_id as in RFC 9068 section 2.2",
    ),
    "scitokens-1.0": _SCITOKENS_1_0,
    "scitokens-2.0": _SCITOKENS_2_0,
    "rfc9068": _RFC_9068,
}


def rules_for(profile: Profile) -> SpecificationRules:
    """Return the sections of ``profile``, or generic ones for an unlisted profile."""
    return PROFILE_RULES.get(profile.name, SpecificationRules())


# --- input validation ----------------------------------------------------------


def validate_issuer_url(url: str) -> str:
    """Return ``url`` unchanged, or raise UsageError unless it is an issuer URL.

    RFC 8414 section 2: an issuer identifier is an https URL with no query or
    fragment component.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError as exc:
        raise UsageError(f"invalid issuer URL {url!r}: {exc}") from None
    problem = ""
    if parts.scheme != "https":
        problem = "it must use https"
    elif not parts.hostname:
        problem = "it has no host"
    elif parts.query or parts.fragment:
        problem = "it must not have a query or fragment"
    elif parts.username is not None or parts.password is not None:
        problem = "it must not contain user information"
    if problem:
        raise UsageError(
            f"invalid issuer URL {url!r}: {problem} (RFC 8414 section 2); "
            "give it as https://host[:port][/path]"
        )
    return url


def load_client_secret(path: Path) -> str:
    """Read a client secret from the first line of ``path``; raise UsageError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"client secret file {path} not found; give --client-secret-file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the client secret file {path}: {exc}") from exc
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise UsageError(f"the client secret file {path} is empty")
    if path.stat().st_mode & 0o077:
        logger.warning(
            "the client secret file %s is readable by other users; chmod 600 it", path
        )
    return secret


def validate_scope(scope: str) -> str:
    """Return ``scope``, or raise UsageError unless it is an RFC 6749 scope list."""
    tokens = scope.split(" ")
    if not scope or not all(SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise UsageError(
            f"invalid scope {scope!r}: give scope tokens separated by single spaces "
            "(RFC 6749 section 3.3), e.g. 'storage.read:/'"
        )
    return scope


def validate_audience(audience: str) -> str:
    """Return ``audience``, or raise UsageError if it is empty or has spaces."""
    if not audience or audience != audience.strip() or " " in audience:
        raise UsageError(
            f"invalid audience {audience!r}: give one value without spaces, "
            "e.g. https://storage.example.org"
        )
    return audience


def open_client(
    ca_file: Path | None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """Return an HTTPS client that trusts ``ca_file``, or the system trust store."""
    try:
        if ca_file is not None:
            return make_client(ca_file, timeout=REQUEST_TIMEOUT, transport=transport)
        context = ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot load the CA file {ca_file}: {exc}; give a PEM file"
        ) from exc
    return httpx.Client(verify=context, timeout=REQUEST_TIMEOUT, transport=transport)


# --- HTTP ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """The outcome of one request: status, headers and JSON body, or why it failed."""

    url: str
    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: Any = None
    # Why the response is unusable; empty when ``body`` is the parsed JSON.
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> Fetched:
    """Send a request and parse a 200 response as JSON.

    Transport errors, invalid URLs and other statuses become ``Fetched.error``.
    """
    try:
        response = http.request(method, url, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.warning("%s %s failed: %s: %s", method, url, type(exc).__name__, exc)
        return Fetched(url, error=f"request failed: {type(exc).__name__}: {exc}")
    status, headers = response.status_code, response.headers
    if status != 200:
        return Fetched(url, status, headers, error=_error_text(response))
    try:
        body = response.json()
    except ValueError:
        return Fetched(url, status, headers, error="the response body is not JSON")
    return Fetched(url, status, headers, body)


def _error_text(response: httpx.Response) -> str:
    """Describe an error response by status and, for OAuth errors, its error fields."""
    text = f"returned HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = str(body.get("error_description", ""))[:200]
        text += f" with error {body['error']!r}"
        if description:
            text += f": {description}"
    return text


def metadata_urls(issuer: str) -> dict[str, str]:
    """Return the URLs of both metadata documents of ``issuer``.

    OpenID Connect Discovery 1.0 section 4 appends the well-known path to the
    issuer. RFC 8414 section 3.1 inserts it between the host and the path.
    """
    parts = urllib.parse.urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    return {
        OPENID_CONFIGURATION: f"{base}{path}/.well-known/openid-configuration",
        OAUTH_AUTHORIZATION_SERVER: (
            f"{base}/.well-known/oauth-authorization-server{path}"
        ),
    }


# --- discovery -------------------------------------------------------------------


def _served(fetched: Fetched) -> bool:
    return fetched.ok and isinstance(fetched.body, dict)


def _describe(fetched: Fetched) -> str:
    if _served(fetched):
        return "served"
    if fetched.ok:
        return "not a JSON object"
    return fetched.error


def check_metadata_lookup(
    profile: Profile, documents: dict[str, Fetched]
) -> list[CheckResult]:
    """Check that the issuer serves the metadata document that the profile needs."""
    rules = rules_for(profile)
    openid = documents[OPENID_CONFIGURATION]
    oauth = documents[OAUTH_AUTHORIZATION_SERVER]
    detail = (
        f"{OPENID_CONFIGURATION}: {_describe(openid)}; "
        f"{OAUTH_AUTHORIZATION_SERVER}: {_describe(oauth)}"
    )
    if rules.openid_configuration_required:
        passed = _served(openid)
    else:
        passed = _served(openid) or _served(oauth)
    return [_line(DISCOVERY, "metadata lookup", passed, rules.metadata, detail)]


def check_metadata_document(
    name: str, fetched: Fetched, issuer: str
) -> list[CheckResult]:
    """Check one metadata document that the issuer returned with status 200.

    A document that is missing is reported by check_metadata_lookup, so this
    returns no lines for a response other than 200.
    """
    if fetched.status != 200:
        return []
    openid = name == OPENID_CONFIGURATION
    results: list[CheckResult] = []
    media_type = fetched.headers.get("content-type", "").split(";")[0].strip()
    served_section = (
        "OpenID Connect Discovery 1.0 section 4.2" if openid else "RFC 8414 section 3.2"
    )
    served_section += ": a JSON object with content type application/json"
    if not _served(fetched):
        detail = _describe(fetched)
    else:
        detail = f"content type {media_type or 'missing'}"
    results.append(
        _line(
            DISCOVERY,
            f"{name}: served",
            _served(fetched) and media_type.lower() == "application/json",
            served_section,
            detail,
        )
    )
    if not _served(fetched):
        return results
    document: dict[str, Any] = fetched.body

    required = OPENID_REQUIRED_FIELDS if openid else OAUTH_REQUIRED_FIELDS
    missing = [key for key in required if key not in document]
    results.append(
        _line(
            DISCOVERY,
            f"{name}: required fields",
            not missing,
            "OpenID Connect Discovery 1.0 section 3"
            if openid
            else "RFC 8414 section 2",
            f"missing: {', '.join(missing)}" if missing else "all present",
        )
    )
    results.append(_check_authorization_endpoint(name, document))
    issuer_section = "RFC 8414 section 3.3"
    if openid:
        issuer_section = (
            "OpenID Connect Discovery 1.0 section 4.3 and " + issuer_section
        )
    results.append(
        _line(
            DISCOVERY,
            f"{name}: issuer equals the URL",
            document.get("issuer") == issuer,
            issuer_section + ": the issuer value MUST be identical to the issuer URL",
            f"issuer {document.get('issuer')!r}, URL {issuer!r}",
        )
    )
    return results


def _check_authorization_endpoint(name: str, document: dict[str, Any]) -> CheckResult:
    """Check authorization_endpoint, which the two specifications require differently.

    OpenID Connect Discovery 1.0 section 3 requires it. RFC 8414 section 2 requires
    it unless no supported grant type uses it, which is the case for an issuer of
    only the client-credentials grant. Without it the OpenID document gets a WARN,
    because the RFC 8414 rule lets such an issuer leave it out.
    """
    check = f"{name}: authorization_endpoint"
    if "authorization_endpoint" in document:
        return _line(DISCOVERY, check, True, "RFC 8414 section 2", "present")
    grants = document.get("grant_types_supported", list(AUTHORIZATION_ENDPOINT_GRANTS))
    if not isinstance(grants, list):
        grants = list(AUTHORIZATION_ENDPOINT_GRANTS)
    names = {grant for grant in grants if isinstance(grant, str)}
    using = sorted(names & set(AUTHORIZATION_ENDPOINT_GRANTS))
    if using:
        return _line(
            DISCOVERY,
            check,
            False,
            "RFC 8414 section 2: REQUIRED when a grant type uses it",
            f"missing, but grant types {', '.join(using)} use it",
        )
    detail = f"missing; grant types {grants} do not use it"
    if name == OPENID_CONFIGURATION:
        return _line(
            DISCOVERY,
            check,
            False,
            "OpenID Connect Discovery 1.0 section 3 requires it; RFC 8414 section 2 "
            "waives it when no grant type uses it",
            detail,
            level=Status.WARN,
        )
    return _line(DISCOVERY, check, True, "RFC 8414 section 2", detail)


def select_metadata(documents: dict[str, Fetched]) -> dict[str, Any] | None:
    """Return the metadata to use: the OpenID document, else the RFC 8414 one."""
    for name in (OPENID_CONFIGURATION, OAUTH_AUTHORIZATION_SERVER):
        if _served(documents[name]):
            document: dict[str, Any] = documents[name].body
            return document
    return None


def _https_url(value: Any) -> str | None:
    """Return ``value`` if it is an https URL with a host, else None."""
    if not isinstance(value, str):
        return None
    parts = urllib.parse.urlsplit(value)
    return value if parts.scheme == "https" and parts.netloc else None


def check_metadata_endpoints(
    metadata: dict[str, Any], profile: Profile
) -> list[CheckResult]:
    """Check that jwks_uri and token_endpoint are present and use https."""
    rules = rules_for(profile)
    jwks_uri, token_endpoint = metadata.get("jwks_uri"), metadata.get("token_endpoint")
    return [
        _line(
            DISCOVERY,
            "jwks_uri is https",
            _https_url(jwks_uri) is not None,
            rules.jwks_uri_https,
            f"jwks_uri {jwks_uri!r}",
        ),
        _line(
            DISCOVERY,
            "token_endpoint is https",
            _https_url(token_endpoint) is not None,
            "RFC 6749 section 3.2: the token endpoint MUST require TLS",
            f"token_endpoint {token_endpoint!r}",
        ),
    ]


# --- JWKS ------------------------------------------------------------------------


def _key_label(index: int, key: dict[str, Any]) -> str:
    kid = key.get("kid")
    return repr(kid) if isinstance(kid, str) else f"#{index + 1}"


def _rsa_bits(key: dict[str, Any]) -> int | None:
    modulus = key.get("n")
    if not isinstance(modulus, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw, "big").bit_length()


def check_jwks(fetched: Fetched, profile: Profile) -> list[CheckResult]:
    """Check the issuer's JWK Set against RFC 7517 and the profile's algorithms."""
    rules = rules_for(profile)
    keys = fetched.body.get("keys") if isinstance(fetched.body, dict) else None
    problem = ""
    if not fetched.ok:
        problem = fetched.error
    elif not isinstance(keys, list) or not keys:
        problem = "has no non-empty keys array"
    elif not all(isinstance(key, dict) for key in keys):
        problem = "has a member of keys that is not a JSON object"
    section = "RFC 7517 section 5: a JWK Set is a JSON object with a keys array"
    if problem or not isinstance(keys, list):
        return [_line(JWKS, "JWKS served", False, section, f"{fetched.url} {problem}")]
    detail = f"{len(keys)} keys at {fetched.url}"
    results = [_line(JWKS, "JWKS served", True, section, detail)]
    results += _check_kids(keys, profile, rules)
    results += _check_key_types(keys, profile, rules)
    results += _check_key_use(keys)
    results += _check_private_members(keys)
    results.append(_check_key_lifetime(fetched.headers, rules))
    return results


def _check_kids(
    keys: list[dict[str, Any]], profile: Profile, rules: SpecificationRules
) -> list[CheckResult]:
    # A profile whose tokens must name their key by kid needs a kid on every key,
    # and needs it unique. RFC 7517 alone makes kid optional and uniqueness a SHOULD.
    level = Status.FAIL if "kid" in profile.required_header else Status.WARN
    without = [f"#{i + 1}" for i, key in enumerate(keys) if not key.get("kid")]
    kids = [key["kid"] for key in keys if key.get("kid")]
    duplicates = sorted({repr(kid) for kid in kids if kids.count(kid) > 1})
    return [
        _line(
            JWKS,
            "every key has a kid",
            not without,
            rules.key_lookup,
            f"keys without kid: {', '.join(without)}" if without else f"kids {kids}",
            level,
        ),
        _line(
            JWKS,
            "kids are unique",
            not duplicates,
            rules.key_lookup + "; RFC 7517 section 4.5: distinct kid values",
            f"repeated: {', '.join(duplicates)}" if duplicates else "no kid repeats",
            level,
        ),
    ]


def _check_key_types(
    keys: list[dict[str, Any]], profile: Profile, rules: SpecificationRules
) -> list[CheckResult]:
    """Check alg, RSA modulus size and EC curve of every key."""
    allowed = list(profile.algorithms)
    bad_alg, small, wrong_curve = [], [], []
    for index, key in enumerate(keys):
        label = _key_label(index, key)
        kty, alg = key.get("kty"), key.get("alg")
        if alg is not None and alg not in allowed:
            bad_alg.append(f"{label} alg {alg!r}")
        elif kty not in ("RSA", "EC"):
            bad_alg.append(f"{label} kty {kty!r} is not an asymmetric key type")
        if kty == "RSA":
            bits = _rsa_bits(key)
            if bits is None or bits < MINIMUM_RSA_BITS:
                small.append(f"{label} {bits or 'unreadable'} bits")
        if kty == "EC":
            # A key without alg must fit one of the profile's EC algorithms.
            names = [alg] if isinstance(alg, str) and alg in EC_CURVES else allowed
            curves = [EC_CURVES[name] for name in names if name in EC_CURVES]
            if key.get("crv") not in curves:
                wrong_curve.append(f"{label} crv {key.get('crv')!r}")
    return [
        _line(
            JWKS,
            "key algorithms",
            not bad_alg,
            rules.algorithms,
            "; ".join(bad_alg) or f"every key fits {', '.join(allowed)}",
        ),
        _line(
            JWKS,
            "RSA keys have at least 2048 bits",
            not small,
            "RFC 7518 section 3.3: RSA keys of 2048 bits or larger MUST be used",
            "; ".join(small) or "no smaller key",
        ),
        _line(
            JWKS,
            "EC keys use the algorithm's curve",
            not wrong_curve,
            "RFC 7518 section 3.4: ES256 uses P-256",
            "; ".join(wrong_curve) or "no EC key on another curve",
        ),
    ]


def _check_key_use(keys: list[dict[str, Any]]) -> list[CheckResult]:
    other = [
        f"{_key_label(i, key)} use {key['use']!r}"
        for i, key in enumerate(keys)
        if "use" in key and key["use"] != "sig"
    ]
    return [
        _line(
            JWKS,
            "use is sig",
            not other,
            "RFC 7517 section 4.2: use sig marks a key that verifies signatures",
            "; ".join(other) or "no key has a use other than sig",
        )
    ]


def _check_private_members(keys: list[dict[str, Any]]) -> list[CheckResult]:
    leaked = []
    for index, key in enumerate(keys):
        members = [member for member in PRIVATE_KEY_MEMBERS if member in key]
        if members:
            leaked.append(f"{_key_label(index, key)} has {', '.join(members)}")
    return [
        _line(
            JWKS,
            "no private key members",
            not leaked,
            "RFC 7517 section 9.2: private and symmetric keys MUST be protected from "
            "disclosure",
            "; ".join(leaked) or "public members only",
        )
    ]


def _cache_directives(headers: httpx.Headers) -> dict[str, str]:
    directives = {}
    for item in headers.get("cache-control", "").split(","):
        name, _, value = item.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip('"')
    return directives


def _check_key_lifetime(
    headers: httpx.Headers, rules: SpecificationRules
) -> CheckResult:
    directives = _cache_directives(headers)
    check = "key lifetime advertised (Cache-Control max-age)"
    header = headers.get("cache-control")
    if "no-store" in directives or "no-cache" in directives:
        detail = f"Cache-Control {header!r} forbids caching the keys"
        return _line(JWKS, check, False, rules.key_lifetime, detail, Status.WARN)
    max_age = directives.get("max-age", "")
    if not max_age.isdigit() or int(max_age) == 0:
        detail = f"Cache-Control {header!r}" if header else "no Cache-Control header"
        return _line(JWKS, check, False, rules.key_lifetime, detail, Status.WARN)
    seconds = int(max_age)
    if rules.key_cache_maximum is not None and seconds >= rules.key_cache_maximum:
        return _line(
            JWKS,
            check,
            False,
            rules.key_cache_maximum_section,
            f"max-age {seconds} s",
            Status.WARN,
        )
    return _line(JWKS, check, True, rules.key_lifetime, f"max-age {seconds} s")


def jwks_keys(fetched: Fetched | None) -> list[dict[str, Any]] | None:
    """Return the key objects of a JWK Set response, or None if it has none."""
    if fetched is None or not isinstance(fetched.body, dict):
        return None
    keys = fetched.body.get("keys")
    if not isinstance(keys, list):
        return None
    return [key for key in keys if isinstance(key, dict)]


# --- tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenExpectations:
    """The request and the issuer's keys that the issued tokens are checked against."""

    profile: Profile
    issuer: str
    scope: str
    audience: str
    # None when the JWKS could not be fetched.
    keys: list[dict[str, Any]] | None


def request_token(
    http: httpx.Client,
    token_endpoint: str,
    credentials: ClientCredentials,
    scope: str,
    audience: str,
    auth_methods: Iterable[str] = ("client_secret_basic",),
) -> Fetched:
    """Request a token with the client-credentials grant (RFC 6749 section 4.4)."""
    form = {"grant_type": "client_credentials", "scope": scope, "audience": audience}
    methods = list(auth_methods)
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        form["client_id"] = credentials.client_id
        form["client_secret"] = credentials.secret
        return _send(http, "POST", token_endpoint, data=form)
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    auth = httpx.BasicAuth(
        urllib.parse.quote_plus(credentials.client_id),
        urllib.parse.quote_plus(credentials.secret),
    )
    return _send(http, "POST", token_endpoint, data=form, auth=auth)


def check_token_response(
    number: int, response: Fetched
) -> tuple[list[CheckResult], str]:
    """Check a token endpoint response; return the lines and the access token.

    The access token is empty when the response carries none.
    """
    prefix = f"token {number}"
    body = response.body if isinstance(response.body, dict) else {}
    token = body.get("access_token")
    token_type = body.get("token_type")
    passed = False
    if not response.ok:
        detail = f"{response.url} {response.error}"
    elif not isinstance(token, str) or not token:
        detail = "the response has no access_token string"
    elif not isinstance(token_type, str) or token_type.lower() != "bearer":
        detail = f"token_type {token_type!r} is not Bearer"
    else:
        passed = True
        detail = "access_token and token_type Bearer"
    results = [
        _line(
            TOKEN,
            f"{prefix}: token response",
            passed,
            "RFC 6749 section 5.1: access_token and token_type are REQUIRED",
            detail,
        )
    ]
    if not response.ok:
        return results, ""
    directives = _cache_directives(response.headers)
    results.append(
        _line(
            TOKEN,
            f"{prefix}: token response is not cached",
            "no-store" in directives,
            "RFC 6749 section 5.1: responses with tokens MUST carry Cache-Control "
            "no-store",
            f"Cache-Control {response.headers.get('cache-control')!r}",
        )
    )
    return results, token if passed and isinstance(token, str) else ""


def check_token(
    number: int,
    token: str,
    response_body: dict[str, Any],
    expected: TokenExpectations,
    now: float | None = None,
) -> tuple[list[CheckResult], dict[str, Any]]:
    """Check one access token against the profile; return the lines and its claims."""
    prefix = f"token {number}"
    try:
        header, claims = decode_unverified(token)
    except TokenError as exc:
        section = "RFC 7515 section 7.1: the JWS compact serialization"
        return [_line(TOKEN, f"{prefix}: compact JWS", False, section, str(exc))], {}
    profile, rules = expected.profile, rules_for(expected.profile)
    results = _check_header(prefix, header, profile, rules)
    results += _check_claims(prefix, claims, profile, rules)
    results += _check_lifetime(prefix, claims, profile, rules, now)
    results += _check_issuer_audience(prefix, claims, expected)
    results += _check_scope(prefix, claims, response_body, expected, rules)
    results.append(_check_signature(prefix, token, header, expected, rules))
    return results, claims


def _check_header(
    prefix: str, header: dict[str, Any], profile: Profile, rules: SpecificationRules
) -> list[CheckResult]:
    alg = header.get("alg")
    missing = [name for name in profile.required_header if name not in header]
    results = [
        _line(
            TOKEN,
            f"{prefix}: header alg",
            alg in profile.algorithms,
            rules.algorithms,
            f"alg {alg!r}; the profile allows {', '.join(profile.algorithms)}",
        ),
        _line(
            TOKEN,
            f"{prefix}: required header fields",
            not missing,
            rules.header,
            f"missing: {', '.join(missing)}" if missing else
            f"{', '.join(profile.required_header)} present",
        ),
    ]  # fmt: skip
    if profile.typ_values:
        typ = header.get("typ")
        results.append(
            _line(
                TOKEN,
                f"{prefix}: header typ",
                typ in profile.typ_values,
                rules.typ,
                f"typ {typ!r}; the profile allows {', '.join(profile.typ_values)}",
            )
        )
    return results


def _check_claims(
    prefix: str, claims: dict[str, Any], profile: Profile, rules: SpecificationRules
) -> list[CheckResult]:
    missing = [name for name in profile.required_claims if name not in claims]
    results = [
        _line(
            TOKEN,
            f"{prefix}: required claims",
            not missing,
            rules.claims,
            f"missing: {', '.join(missing)}" if missing else
            f"{', '.join(profile.required_claims)} present",
        )
    ]  # fmt: skip
    if profile.version_claim:
        value = claims.get(profile.version_claim)
        results.append(
            _line(
                TOKEN,
                f"{prefix}: version claim",
                profile.version_supported(value),
                rules.version,
                f"{profile.version_claim} {value!r}",
            )
        )
    if profile.known_claims:
        unknown = sorted(set(claims) - set(profile.known_claims))
        results.append(
            _line(
                TOKEN,
                f"{prefix}: known claims only",
                not unknown,
                rules.known_claims,
                f"unknown: {', '.join(unknown)}" if unknown else "no unknown claim",
            )
        )
    return results


def _number(value: Any) -> float | None:
    """Return a JSON number as float; None for anything else, booleans included."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _check_lifetime(
    prefix: str,
    claims: dict[str, Any],
    profile: Profile,
    rules: SpecificationRules,
    now: float | None,
) -> list[CheckResult]:
    current = time.time() if now is None else now
    expiry = _number(claims.get("exp"))
    start = _number(claims.get("nbf", claims.get("iat")))
    check = f"{prefix}: lifetime at most {profile.maximum_lifetime} s"

    if expiry is None or start is None:
        detail = (
            f"exp {claims.get('exp')!r} and nbf or iat "
            f"{claims.get('nbf', claims.get('iat'))!r} must be numbers"
        )
        return [_line(TOKEN, check, False, rules.lifetime, detail)]

    lifetime = expiry - start
    detail = f"valid for {lifetime:.0f} s"
    if expiry <= current:
        detail += ", but already expired"
    # NOTE: WLCG 1.0 requires less than 6 hours. Like the profile's maximum, this
    # check accepts exactly 6 hours.
    passed = lifetime <= profile.maximum_lifetime and expiry > current
    results = [_line(TOKEN, check, passed, rules.lifetime, detail)]

    recommended = rules.recommended_lifetime
    if recommended is not None:
        results.append(
            _line(
                TOKEN,
                f"{prefix}: lifetime at most the recommended {recommended} s",
                lifetime <= recommended,
                rules.recommended_lifetime_section,
                f"valid for {lifetime:.0f} s",
                Status.WARN,
            )
        )
    return results


def _check_issuer_audience(
    prefix: str, claims: dict[str, Any], expected: TokenExpectations
) -> list[CheckResult]:
    audience = claims.get("aud")
    values = [audience] if isinstance(audience, str) else audience
    names_audience = isinstance(values, list) and expected.audience in values
    return [
        _line(
            TOKEN,
            f"{prefix}: iss equals the issuer",
            claims.get("iss") == expected.issuer,
            "RFC 7519 section 4.1.1 and RFC 9068 section 4: iss is the issuer "
            "identifier, compared exactly",
            f"iss {claims.get('iss')!r}, issuer {expected.issuer!r}",
        ),
        _line(
            TOKEN,
            f"{prefix}: aud contains the requested audience",
            names_audience,
            "RFC 7519 section 4.1.3: aud names the recipients the token is for",
            f"aud {audience!r}, requested {expected.audience!r}",
        ),
    ]


def _absolute_path(path: str) -> str:
    # posixpath.normpath keeps a leading "//"; scope paths have one leading slash.
    return "/" + posixpath.normpath(path).lstrip("/")


def _path_covers(granted: str, requested: str) -> bool:
    """Tell whether scope path ``granted`` covers ``requested``, by whole segments."""
    if not granted.startswith("/") or not requested.startswith("/"):
        return False
    base = _absolute_path(granted).rstrip("/")
    target = _absolute_path(requested)
    return base == "" or target == base or target.startswith(base + "/")


def _scope_covers(granted: str, requested: str, storage_names: set[str]) -> bool:
    """Tell whether scope entry ``granted`` authorises all of ``requested``.

    Storage scopes cover paths below their own; any other scope covers only an
    identical entry. A scope name never covers another (storage.modify does not
    count as covering storage.create).
    """
    if granted == requested:
        return True
    granted_name, granted_separator, granted_path = granted.partition(":")
    requested_name, requested_separator, requested_path = requested.partition(":")
    if granted_name != requested_name or granted_name not in storage_names:
        return False
    if not granted_separator or not requested_separator:
        return False
    return _path_covers(granted_path, requested_path)


def _check_scope(
    prefix: str,
    claims: dict[str, Any],
    response_body: dict[str, Any],
    expected: TokenExpectations,
    rules: SpecificationRules,
) -> list[CheckResult]:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        section = "RFC 8693 section 4.2: scope is a space-separated string"
        detail = f"scope is a {type(scope).__name__}"
        return [_line(TOKEN, f"{prefix}: scope claim", False, section, detail)]
    granted = [entry for entry in scope.split(" ") if entry]
    requested = expected.scope.split(" ")
    storage_names = set(expected.profile.scope_names.values())
    not_granted = [
        entry
        for entry in requested
        if not any(_scope_covers(g, entry, storage_names) for g in granted)
    ]
    wider = [
        entry
        for entry in granted
        if not any(_scope_covers(r, entry, storage_names) for r in requested)
    ]
    differs = set(granted) != set(requested)
    results = [
        _line(
            TOKEN,
            f"{prefix}: scope grants the request",
            not not_granted,
            "RFC 6749 section 3.3: the issuer MAY issue less than requested, and "
            "then the token does not authorise the request",
            f"not granted: {', '.join(not_granted)}" if not_granted
            else f"scope {scope!r}",
            Status.WARN,
        ),
        _line(
            TOKEN,
            f"{prefix}: scope no wider than requested",
            not wider,
            rules.scope_wider,
            f"beyond the request: {', '.join(wider)}" if wider
            else f"requested {expected.scope!r}",
            rules.scope_wider_level,
        ),
        _line(
            TOKEN,
            f"{prefix}: scope response parameter",
            not differs or "scope" in response_body,
            "RFC 6749 section 5.1: scope is REQUIRED in the response when it differs "
            "from the request",
            "the token's scope differs from the request" if differs
            else "the token's scope equals the request",
        ),
    ]  # fmt: skip
    results.append(_check_scope_paths(prefix, granted, expected.profile, rules))
    return results


def _check_scope_paths(
    prefix: str, granted: list[str], profile: Profile, rules: SpecificationRules
) -> CheckResult:
    storage_names = set(profile.scope_names.values())
    problems = []
    for entry in granted:
        name, separator, path = entry.partition(":")
        if name not in storage_names:
            continue
        if not separator or not path:
            if profile.path_required:
                problems.append(f"{entry!r} has no path")
        elif not path.startswith("/"):
            problems.append(f"{entry!r} has a relative path")
        elif _absolute_path(path) != (path.rstrip("/") or "/"):
            problems.append(f"{entry!r} is not normalised (RFC 3986 section 6)")
    return _line(
        TOKEN,
        f"{prefix}: storage scopes carry absolute paths",
        not problems,
        rules.scope_paths,
        "; ".join(problems) or "every storage scope has an absolute, normalised path",
    )


def _check_signature(
    prefix: str,
    token: str,
    header: dict[str, Any],
    expected: TokenExpectations,
    rules: SpecificationRules,
) -> CheckResult:
    check = f"{prefix}: signature verifies with a JWKS key"
    if expected.keys is None:
        return _line(
            TOKEN, check, False, rules.signature, "not checked: no JWKS was fetched"
        )
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in expected.profile.algorithms or not isinstance(alg, str):
        return _line(TOKEN, check, False, rules.signature, f"not checked: alg {alg!r}")
    candidates = expected.keys
    if kid is not None:
        candidates = [key for key in candidates if key.get("kid") == kid]
        if not candidates:
            return _line(
                TOKEN, check, False, rules.key_lookup, f"the JWKS has no key {kid!r}"
            )
    for key in candidates:
        if key.get("alg", alg) != alg:
            continue
        try:
            with warnings.catch_warnings():
                # The JWKS check reports short RSA keys on its own line.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                # PyJWT 2.15 builds a private key from private members, and then
                # verify() raises AttributeError. The leak has its own check.
                public = {
                    name: value
                    for name, value in key.items()
                    if name not in PRIVATE_KEY_MEMBERS
                }
                jwk = jwt.PyJWK.from_dict(public, algorithm=alg)
                jwt.api_jws.PyJWS().decode_complete(token, key=jwk, algorithms=[alg])
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            logger.debug("key %r does not verify %s: %s", key.get("kid"), prefix, exc)
            continue
        return _line(
            TOKEN, check, True, rules.signature, f"{alg} key {key.get('kid')!r}"
        )
    detail = f"no {alg} key" + (f" with kid {kid!r}" if kid is not None else "")
    return _line(TOKEN, check, False, rules.signature, detail + " verifies it")


def check_token_ids(
    claims: list[dict[str, Any]], profile: Profile
) -> list[CheckResult]:
    """Check that the jti values of the issued tokens differ."""
    check = "tokens: jti differs"
    section = "RFC 7519 section 4.1.7: jti values must not collide"
    ids = [item.get("jti") for item in claims]
    if len(claims) < 2:
        # The token response lines already report the tokens that were not issued.
        return []
    if any(value is None for value in ids) and "jti" not in profile.required_claims:
        detail = f"not applicable: {profile.name} does not require jti"
        return [_line(TOKEN, check, True, section, detail)]
    unique = None not in ids and len(set(map(json.dumps, ids))) == len(ids)
    return [_line(TOKEN, check, unique, section, f"jti values {ids}")]


# --- orchestration ---------------------------------------------------------------


def check_issuer(
    http: httpx.Client,
    issuer: str,
    credentials: ClientCredentials,
    profile: Profile,
    scope: str | None = None,
    audience: str | None = None,
) -> Report:
    """Run every check against ``issuer`` and return the report.

    Network failures become FAIL lines. Checks that need an earlier result which
    failed (the JWKS needs jwks_uri, tokens need token_endpoint) become a single
    FAIL line that states why they did not run.
    """
    validate_issuer_url(issuer)
    scope = validate_scope(profile.scope("read", "/") if scope is None else scope)
    audience = validate_audience(DEFAULT_AUDIENCE if audience is None else audience)
    logger.info(
        "checking issuer %s against profile %s (scope %r, audience %r)",
        issuer,
        profile.name,
        scope,
        audience,
    )
    report = Report(issuer, profile.name)

    urls = metadata_urls(issuer)
    documents = {name: _send(http, "GET", url) for name, url in urls.items()}
    report.checks += check_metadata_lookup(profile, documents)
    for name, fetched in documents.items():
        report.checks += check_metadata_document(name, fetched, issuer)
    metadata = select_metadata(documents)
    if metadata is None:
        reason = "not checked: no metadata document was served"
        report.checks.append(
            _line(JWKS, "JWKS served", False, rules_for(profile).metadata, reason)
        )
        report.checks.append(
            _line(TOKEN, "token request", False, rules_for(profile).metadata, reason)
        )
        return report
    report.checks += check_metadata_endpoints(metadata, profile)

    jwks: Fetched | None = None
    jwks_uri = _https_url(metadata.get("jwks_uri"))
    if jwks_uri is not None:
        jwks = _send(http, "GET", jwks_uri)
        report.checks += check_jwks(jwks, profile)
    else:
        report.checks.append(
            _line(
                JWKS,
                "JWKS served",
                False,
                rules_for(profile).jwks_uri_https,
                f"not fetched: jwks_uri {metadata.get('jwks_uri')!r} is not an "
                "https URL",
            )
        )
    expected = TokenExpectations(profile, issuer, scope, audience, jwks_keys(jwks))
    report.checks += _check_tokens(http, metadata, credentials, expected)
    return report


def _check_tokens(
    http: httpx.Client,
    metadata: dict[str, Any],
    credentials: ClientCredentials,
    expected: TokenExpectations,
) -> list[CheckResult]:
    endpoint = _https_url(metadata.get("token_endpoint"))
    if endpoint is None:
        detail = (
            f"not requested: token_endpoint {metadata.get('token_endpoint')!r} is "
            "not an https URL"
        )
        section = "RFC 6749 section 3.2: the token endpoint MUST require TLS"
        return [_line(TOKEN, "token request", False, section, detail)]
    methods = metadata.get("token_endpoint_auth_methods_supported")
    if not isinstance(methods, list):
        # RFC 8414 section 2: the default is client_secret_basic.
        methods = ["client_secret_basic"]
    results: list[CheckResult] = []
    issued: list[dict[str, Any]] = []
    for number in range(1, TOKEN_COUNT + 1):
        response = request_token(
            http, endpoint, credentials, expected.scope, expected.audience, methods
        )
        lines, token = check_token_response(number, response)
        results += lines
        if not token:
            continue
        lines, claims = check_token(number, token, response.body, expected)
        results += lines
        if claims:
            issued.append(claims)
    results += check_token_ids(issued, expected.profile)
    return results


def check_reference_issuer(
    profile: Profile, scope: str | None = None, audience: str | None = None
) -> Report:
    """Start a stack with only the reference issuer, check it and remove the stack.

    The run's CA, keys and client secrets stay in a private run folder, which is
    deleted at the end. A later ``testbed run`` removes it if this process is
    killed before.
    """
    from testbed import engine
    from testbed.implementations import resolve_implementations
    from testbed.run_context import RunContext, new_run_dir, new_run_id
    from testbed.stack import Stack

    # Reject invalid options before the stack starts, which takes seconds.
    if scope is not None:
        validate_scope(scope)
    if audience is not None:
        validate_audience(audience)
    client = engine.connect()
    run_id = new_run_id()
    directory = new_run_dir(run_id)
    try:
        run = RunContext.create(directory, run_id)
        implementations = resolve_implementations(["reference-issuer"])
        with Stack(client, run, implementations) as stack:
            failure = stack.failures.get(stack.issuer_impl.key)
            if failure is not None:
                raise failure
            client_id, secret = run.clients[profile.name]
            with open_client(run.ca_file) as http:
                return check_issuer(
                    http,
                    run.issuer_url,
                    ClientCredentials(client_id, secret),
                    profile,
                    scope,
                    audience,
                )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        client.close()


# --- output ----------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render_report(report: Report, output_format: str = "text") -> str:
    """Render ``report`` as text grouped by area, or as a JSON document."""
    if output_format == "json":
        return json.dumps(report.as_dict(), indent=2)
    if output_format != "text":
        raise UsageError(f"unknown format {output_format!r}; use text or json")
    lines = [f"issuer {report.issuer}, profile {report.profile}"]
    areas = [*AREAS, *sorted({c.area for c in report.checks} - set(AREAS))]
    for area in areas:
        checks = [check for check in report.checks if check.area == area]
        if not checks:
            continue
        lines += ["", area]
        for check in checks:
            text = f"  {check.status}  {check.check}"
            if check.detail:
                text += f": {check.detail}"
            lines.append(f"{text}  [{check.section}]")
    summary = report.summary()
    lines += [
        "",
        f"{summary['passed']} passed, {summary['failed']} failed, "
        + _plural(summary["warnings"], "warning"),
    ]
    return "\n".join(lines)

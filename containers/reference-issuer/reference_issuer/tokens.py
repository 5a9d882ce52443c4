"""Endpoint logic of the issuer, independent of the HTTP server.

Issuer turns request data into a Response for the discovery metadata, the JWKS, the
client-credentials token endpoint and the testbed minting interface.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from .config import SCOPE_PATTERN, Client, Config
from .jws import encode_jws

# An unsigned decimal integer: a requested lifetime or a Content-Length value.
DIGITS_PATTERN = re.compile(r"[0-9]{1,12}")

MINT_SIGNATURE_MODES = ("valid", "corrupt", "none")
MINT_BODY_FIELDS = ("header", "claims", "key", "signature")

# Digest compared against when the client_id is unknown, so that an unknown client
# costs the same comparison as a known one with a wrong secret.
UNKNOWN_CLIENT_DIGEST = hashlib.sha256(b"unknown client").digest()


@dataclass
class Response:
    """A JSON response with extra headers and the request details for the log line."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    log_details: dict[str, Any] = field(default_factory=dict)


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error response."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parse_form(content_type: str | None, body: bytes) -> dict[str, list[str]]:
    if _media_type(content_type) != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request",
            "the request body must be application/x-www-form-urlencoded",
        )
    try:
        text = body.decode("utf-8")
        return parse_qs(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=100
        )
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the request body is not UTF-8") from None
    except ValueError as exc:
        raise OAuthError("invalid_request", f"invalid form body: {exc}") from None


def _form_values(form: dict[str, list[str]], name: str) -> list[str]:
    # RFC 6749 section 3.2: a parameter sent without a value counts as omitted.
    return [value for value in form.get(name, []) if value]


def _single_parameter(form: dict[str, list[str]], name: str) -> str | None:
    values = _form_values(form, name)
    if not values:
        return None
    # RFC 6749 section 3.2: parameters must not be included more than once.
    if len(values) > 1:
        raise OAuthError("invalid_request", f"parameter {name} is repeated")
    return values[0]


def _parse_basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            "invalid_client",
            f"unsupported authorization scheme {scheme[:20]!r}; use Basic",
            status=401,
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(
            "invalid_client", "invalid Basic credentials encoding", status=401
        ) from None
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise OAuthError(
            "invalid_client", "Basic credentials lack the ':' separator", status=401
        )
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


class Issuer:
    """The issuer's endpoints as functions from request data to a Response."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.base_url = config.issuer.rstrip("/")
        self.mint_credential_digest = hashlib.sha256(
            config.mint_credential.encode("utf-8")
        ).digest()
        self.realm = config.issuer

    # Metadata --------------------------------------------------------------------

    def metadata(self) -> Response:
        """Build the OpenID Connect Discovery 1.0 and RFC 8414 metadata document."""
        scopes: list[str] = []
        for profile in self.config.profiles.values():
            scopes += [scope for scope in profile.scopes if scope not in scopes]
        algorithms = sorted({key.alg for key in self.config.keys if key.published})
        document = {
            "issuer": self.config.issuer,
            "jwks_uri": f"{self.base_url}/jwks",
            "token_endpoint": f"{self.base_url}/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            # NOTE: both specifications require response_types_supported. The issuer
            # has no authorization endpoint, so clients cannot use the listed type.
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algorithms,
            "scopes_supported": scopes,
        }
        return Response(200, document)

    def jwks(self) -> Response:
        """Build the RFC 7517 JWK set of the published keys."""
        keys = [key.public_jwk() for key in self.config.keys if key.published]
        headers = {"Cache-Control": f"max-age={self.config.jwks_max_age}"}
        return Response(200, {"keys": keys}, headers)

    # Token endpoint --------------------------------------------------------------

    def token(
        self, content_type: str | None, body: bytes, authorization: str | None
    ) -> Response:
        """Issue an access token for an RFC 6749 section 4.4 client-credentials request.

        Every response, errors included, carries ``Cache-Control: no-store``.
        """
        # Keys in log-line order. Values that stay None are left out of the line.
        details: dict[str, Any] = {"client_id": None, "scope": None, "audience": None}
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            form = _parse_form(content_type, body)
            scopes = form.get("scope")
            details["scope"] = scopes[0] if scopes and len(scopes) == 1 else scopes
            details["audience"] = form.get("audience")
            body_out = self._issue_token(form, authorization, details)
        except OAuthError as exc:
            error_body = {"error": exc.error, "error_description": exc.description}
            headers = dict(no_store)
            if exc.error == "invalid_client":
                headers["WWW-Authenticate"] = f'Basic realm="{self.realm}"'
            return Response(exc.status, error_body, headers, details)
        return Response(200, body_out, no_store, details)

    def _authenticate_client(
        self,
        form: dict[str, list[str]],
        authorization: str | None,
        details: dict[str, Any],
    ) -> Client:
        form_client_id = _single_parameter(form, "client_id")
        form_secret = _single_parameter(form, "client_secret")
        if authorization is not None:
            if form_secret is not None:
                # RFC 6749 section 2.3: a client must not use more than one method.
                raise OAuthError(
                    "invalid_request",
                    "use either HTTP Basic or client_secret in the body, not both",
                )
            client_id, secret = _parse_basic_credentials(authorization)
            if form_client_id is not None and form_client_id != client_id:
                raise OAuthError(
                    "invalid_request",
                    "client_id in the body differs from the HTTP Basic user name",
                )
        elif form_client_id is not None and form_secret is not None:
            client_id, secret = form_client_id, form_secret
        else:
            raise OAuthError(
                "invalid_client",
                "client authentication required: send HTTP Basic credentials "
                "or client_id and client_secret",
                status=401,
            )
        details["client_id"] = client_id

        client = self.config.clients.get(client_id)
        expected = client.secret_sha256 if client else UNKNOWN_CLIENT_DIGEST
        presented = hashlib.sha256(secret.encode("utf-8")).digest()
        secret_matches = hmac.compare_digest(presented, expected)
        if client is None or not secret_matches:
            raise OAuthError(
                "invalid_client", "unknown client or wrong client secret", status=401
            )
        return client

    def _issue_token(
        self,
        form: dict[str, list[str]],
        authorization: str | None,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        client = self._authenticate_client(form, authorization, details)
        profile = self.config.profiles[client.profile]

        grant_type = _single_parameter(form, "grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "missing grant_type")
        if grant_type != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type {grant_type[:40]!r} is not supported; "
                "use client_credentials",
            )

        scope = _single_parameter(form, "scope")
        if scope is None:
            raise OAuthError("invalid_scope", "missing or empty scope")
        if not SCOPE_PATTERN.fullmatch(scope):
            raise OAuthError(
                "invalid_scope",
                "scope must be scope tokens separated by single spaces (RFC 6749 "
                "section 3.3)",
            )

        audiences = _form_values(form, "audience")
        audience: str | list[str]
        if not audiences:
            default = profile.default_audience
            audience = list(default) if isinstance(default, list) else default
        elif len(audiences) == 1:
            audience = audiences[0]
        else:
            audience = audiences

        lifetime = profile.lifetime
        requested_lifetime = _single_parameter(form, "lifetime")
        if requested_lifetime is not None:
            in_range = False
            if DIGITS_PATTERN.fullmatch(requested_lifetime):
                lifetime = int(requested_lifetime)
                in_range = 1 <= lifetime <= profile.max_lifetime
            if not in_range:
                raise OAuthError(
                    "invalid_request",
                    f"lifetime must be an integer number of seconds from 1 to "
                    f"{profile.max_lifetime}, got {requested_lifetime[:20]!r}",
                )

        now = int(time.time())
        claims = dict(profile.claims)
        claims.update(
            iss=self.config.issuer,
            sub=client.subject,
            aud=audience,
            iat=now,
            nbf=now,
            exp=now + lifetime,
            jti=str(uuid.uuid4()),
            scope=scope,
        )
        if profile.client_id_claim:
            claims["client_id"] = client.client_id
        header = {"alg": profile.key.alg, "kid": profile.key.kid, **profile.header}
        token = encode_jws(header, claims, profile.key)
        details["kid"] = profile.key.kid
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }

    # Testbed minting -------------------------------------------------------------

    def _check_mint_credential(self, authorization: str | None) -> Response | None:
        challenge = 'Bearer realm="testbed-mint"'
        if authorization is None:
            body = {
                "error": "unauthorized",
                "error_description": "missing bearer credential",
            }
            return Response(401, body, {"WWW-Authenticate": challenge})
        scheme, _, credential = authorization.strip().partition(" ")
        presented = hashlib.sha256(credential.strip().encode("utf-8")).digest()
        matches = hmac.compare_digest(presented, self.mint_credential_digest)
        if scheme.lower() != "bearer" or not matches:
            body = {
                "error": "invalid_token",
                "error_description": "wrong mint credential",
            }
            headers = {"WWW-Authenticate": f'{challenge}, error="invalid_token"'}
            return Response(401, body, headers)
        return None

    def mint(self, body: bytes, authorization: str | None) -> Response:
        """Sign the header and claims of a JSON mint request exactly as given."""
        rejection = self._check_mint_credential(authorization)
        if rejection is not None:
            return rejection
        details: dict[str, Any] = {}
        try:
            token = self._mint_token(body, details)
        except OAuthError as exc:
            error_body = {"error": exc.error, "error_description": exc.description}
            return Response(
                exc.status, error_body, {"Cache-Control": "no-store"}, details
            )
        return Response(200, {"token": token}, {"Cache-Control": "no-store"}, details)

    def _mint_token(self, body: bytes, details: dict[str, Any]) -> str:
        def reject_constant(name: str) -> None:
            raise ValueError(f"{name} is not valid JSON")

        try:
            request = json.loads(body.decode("utf-8"), parse_constant=reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise OAuthError(
                "invalid_request", f"request body is not valid JSON: {exc}"
            ) from None
        if not isinstance(request, dict):
            raise OAuthError("invalid_request", "request body must be a JSON object")
        unknown = sorted(set(request) - set(MINT_BODY_FIELDS))
        if unknown:
            raise OAuthError(
                "invalid_request",
                f"unknown field {unknown[0]!r}; "
                f"allowed are {', '.join(MINT_BODY_FIELDS)}",
            )
        for name in ("header", "claims"):
            if name not in request:
                raise OAuthError("invalid_request", f"missing field {name!r}")
            if not isinstance(request[name], dict):
                raise OAuthError("invalid_request", f"{name} must be a JSON object")

        kid = request.get("key")
        if kid is None:
            key = next((key for key in self.config.keys if key.alg == "RS256"), None)
            if key is None:
                raise OAuthError(
                    "invalid_request", "no RS256 key is configured; name a key"
                )
        elif not isinstance(kid, str):
            raise OAuthError("invalid_request", "key must be a string kid")
        else:
            key = self.config.key_by_kid(kid)
            if key is None:
                known = ", ".join(key.kid for key in self.config.keys)
                raise OAuthError(
                    "invalid_request",
                    f"unknown key {kid[:80]!r}; configured are {known}",
                )

        mode = request.get("signature", "valid")
        if mode not in MINT_SIGNATURE_MODES:
            raise OAuthError(
                "invalid_request",
                f"signature must be one of {', '.join(MINT_SIGNATURE_MODES)}",
            )
        details["key"] = key.kid
        details["signature"] = mode
        return encode_jws(request["header"], request["claims"], key, mode)

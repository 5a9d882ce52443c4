"""Host-side client of the reference issuer: token endpoint and minting interface."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx

from testbed.errors import TokenError
from testbed.httpclient import REQUEST_TIMEOUT, make_client
from testbed.tokens import decode_unverified

__all__ = ["REQUEST_TIMEOUT", "IssuerClient"]

logger = logging.getLogger(__name__)


class IssuerClient:
    """Fetches and mints tokens from one reference issuer over one HTTP client."""

    def __init__(
        self,
        issuer_url: str,
        ca_file: Path,
        mint_credential: str,
        clients: dict[str, tuple[str, str]],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.issuer_url = issuer_url
        self._mint_credential = mint_credential
        self._clients = clients
        self._http = make_client(ca_file, base_url=issuer_url, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IssuerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(
        self,
        profile: str,
        scope: str,
        audience: str | list[str] | None = None,
        lifetime: int | None = None,
    ) -> str:
        """Request an access token with the client-credentials grant (RFC 6749 4.4)."""
        if profile not in self._clients:
            valid = ", ".join(self._clients)
            raise TokenError(
                f"the issuer has no client for profile {profile!r}; use {valid}"
            )
        client_id, secret = self._clients[profile]
        form: dict[str, str | list[str]] = {
            "grant_type": "client_credentials",
            "scope": scope,
        }
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if audiences:
            form["audience"] = audiences
        if lifetime is not None:
            form["lifetime"] = str(lifetime)
        try:
            response = self._http.post("/token", data=form, auth=(client_id, secret))
        except httpx.HTTPError as exc:
            raise TokenError(
                f"token request to {self.issuer_url} failed: {exc}"
            ) from exc
        if response.status_code != 200:
            raise TokenError(
                f"token request to {self.issuer_url} for {client_id} returned "
                f"{response.status_code}: {response.text[:300]}"
            )
        token = _field(response, "access_token", self.issuer_url)
        _, claims = decode_unverified(token)
        logger.info(
            "token issued for audience %s, scope %r (%s)",
            claims.get("aud"),
            claims.get("scope"),
            profile,
        )
        return token

    def mint(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        key: str | None = None,
        signature: str = "valid",
    ) -> str:
        """Sign exactly ``header`` and ``claims`` through the minting interface."""
        body: dict[str, Any] = {
            "header": header,
            "claims": claims,
            "signature": signature,
        }
        if key is not None:
            body["key"] = key
        try:
            response = self._http.post(
                "/testbed/mint",
                json=body,
                headers={"Authorization": f"Bearer {self._mint_credential}"},
            )
        except httpx.HTTPError as exc:
            raise TokenError(
                f"mint request to {self.issuer_url} failed: {exc}"
            ) from exc
        if response.status_code != 200:
            raise TokenError(
                f"mint request to {self.issuer_url} returned {response.status_code}: "
                f"{response.text[:300]}"
            )
        logger.debug("minted token for audience %s", claims.get("aud"))
        return _field(response, "token", self.issuer_url)

    def discovery(self) -> dict[str, Any]:
        """Fetch the OpenID Connect discovery document."""
        response = self._http.get("/.well-known/openid-configuration")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


def _field(response: httpx.Response, name: str, issuer_url: str) -> str:
    """Return the string ``name`` of a JSON response, or raise TokenError."""
    try:
        value = response.json()[name]
    except (ValueError, KeyError, TypeError):
        raise TokenError(
            f"{response.request.url} at {issuer_url} returned no {name!r} in its "
            f"response: {response.text[:200]!r}"
        ) from None
    if not isinstance(value, str):
        raise TokenError(f"{response.request.url} returned a non-string {name!r}")
    return value

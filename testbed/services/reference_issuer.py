"""Driver of the reference issuer container (``containers/reference-issuer``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from testbed.ca import write_private_file
from testbed.httpclient import make_client
from testbed.profiles import load_profiles
from testbed.run_context import RunContext
from testbed.services.base import ServiceContainer

__all__ = ["ReferenceIssuerDriver"]

logger = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


def _pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ReferenceIssuerDriver:
    """Writes the issuer's configuration and waits for its discovery document."""

    def configure(self, run: RunContext, config_dir: Path) -> dict[str, Any]:
        """Write keys, TLS files and ``issuer.json`` into ``config_dir``."""
        keys_dir = config_dir / "keys"
        write_private_file(
            keys_dir / "rs256.pem", _pem(rsa.generate_private_key(65537, 2048))
        )
        write_private_file(
            keys_dir / "es256.pem", _pem(ec.generate_private_key(ec.SECP256R1()))
        )
        write_private_file(
            keys_dir / "unpublished.pem", _pem(rsa.generate_private_key(65537, 2048))
        )
        write_private_file(config_dir / "mint.secret", run.mint_credential.encode())

        profiles = load_profiles()
        config = {
            "issuer": run.issuer_url,
            "listen": {"host": "127.0.0.1", "port": run.issuer_port},
            "tls": {"cert": "tls/cert.pem", "key": "tls/key.pem"},
            "signing_keys": [
                {"kid": run.kids["rs256"], "alg": "RS256", "file": "keys/rs256.pem",
                 "published": True},
                {"kid": run.kids["es256"], "alg": "ES256", "file": "keys/es256.pem",
                 "published": True},
                {"kid": run.kids["unpublished"], "alg": "RS256",
                 "file": "keys/unpublished.pem", "published": False},
            ],
            "mint_credential_file": "mint.secret",
            "clients": [
                {
                    "client_id": client_id,
                    "client_secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
                    "profile": profile,
                    "subject": f"testbed-{client_id}",
                }
                for profile, (client_id, secret) in run.clients.items()
            ],
            "profiles": {name: p.issuer_settings() for name, p in profiles.items()},
        }  # fmt: skip
        write_private_file(
            config_dir / "issuer.json", json.dumps(config, indent=2).encode()
        )
        return {"url": run.issuer_url, "port": run.issuer_port}

    def wait_ready(self, container: ServiceContainer, run: RunContext) -> None:
        """Wait until the discovery document names this issuer."""
        with make_client(run.ca_file, timeout=2.0) as http:

            def probe() -> str | None:
                try:
                    response = http.get(
                        f"{run.issuer_url}/.well-known/openid-configuration"
                    )
                except httpx.HTTPError as exc:
                    return f"{type(exc).__name__}: {exc}"
                if response.status_code != 200:
                    return f"discovery returned {response.status_code}"
                if response.json().get("issuer") != run.issuer_url:
                    return "discovery names another issuer"
                return None

            container.wait(
                probe,
                READY_TIMEOUT,
                f"reference issuer discovery at {run.issuer_url}",
            )

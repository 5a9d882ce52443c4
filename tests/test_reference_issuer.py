"""Tests of the reference issuer in containers/reference-issuer/.

Most tests run the reference_issuer package (``python -m reference_issuer``) as a
subprocess on the host, on a free 127.0.0.1 port, with keys, certificates and a
configuration written into a temporary directory. The test marked ``docker`` builds
the image and runs it with host networking.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from testbed.ca import CertificateAuthority, write_private_file

ISSUER_DIR = Path(__file__).resolve().parents[1] / "containers" / "reference-issuer"
# ``python -m`` puts the working directory first on sys.path, so run it in ISSUER_DIR.
ISSUER_COMMAND = (sys.executable, "-m", "reference_issuer")

HTTP_TIMEOUT = httpx.Timeout(10.0)
STARTUP_DEADLINE = 20.0
POLL_INTERVAL = 0.1
PROCESS_EXIT_TIMEOUT = 10.0

WLCG_DEFAULT_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
MAX_LIFETIME = 21600

DOCKER_BASE_IMAGE = "testbed-base:bookworm"
DOCKER_IMAGE_TAG = "testbed-reference-issuer:pytest"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --------------------------------------------------------------------------------
# Helpers


@dataclass
class IssuerFiles:
    """An issuer's service directory, laid out as the container expects /testbed."""

    directory: Path
    config_path: Path
    ca_path: Path
    config: dict[str, Any]
    base_url: str
    client_secrets: dict[str, str]
    mint_credential: str
    kids: dict[str, str]
    private_keys: dict[str, PrivateKey] = field(default_factory=dict)

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=2))


def client_tls_context(ca_path: Path) -> ssl.SSLContext:
    """Create a client TLS context that trusts only the testbed CA."""
    return ssl.create_default_context(cafile=str(ca_path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_issuer_files(
    directory: Path, ca_directory: Path, port: int, issuer_path: str = ""
) -> IssuerFiles:
    """Write keys, a TLS certificate, secrets and issuer.json into ``directory``.

    The CA key stays in ``ca_directory``, and only the CA certificate is copied into
    the service directory, as the testbed does.
    """
    authority = CertificateAuthority.create(ca_directory)
    server_certificate = authority.issue_server_certificate(directory / "tls")
    ca_path = directory / "ca.pem"
    shutil.copyfile(authority.cert_path, ca_path)

    suffix = secrets.token_hex(4)
    kids = {
        "rs256": f"rs256-{suffix}",
        "es256": f"es256-{suffix}",
        "unpublished": f"unpublished-{suffix}",
    }
    private_keys: dict[str, PrivateKey] = {
        kids["rs256"]: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        kids["es256"]: ec.generate_private_key(ec.SECP256R1()),
        kids["unpublished"]: rsa.generate_private_key(
            public_exponent=65537, key_size=2048
        ),
    }
    for role, kid in kids.items():
        write_private_file(directory / "keys" / f"{role}.pem", _pem(private_keys[kid]))

    mint_credential = secrets.token_urlsafe(32)
    write_private_file(directory / "mint.secret", f"{mint_credential}\n".encode())
    client_secrets = {
        "wlcg-client": secrets.token_urlsafe(24),
        "scitokens-client": secrets.token_urlsafe(24),
        "scitokens1-client": secrets.token_urlsafe(24),
    }

    def client_entry(client_id: str, profile: str) -> dict[str, str]:
        digest = hashlib.sha256(client_secrets[client_id].encode()).hexdigest()
        return {
            "client_id": client_id,
            "client_secret_sha256": digest,
            "profile": profile,
            "subject": f"testbed-{client_id}",
        }

    base_url = f"https://localhost:{port}{issuer_path}"
    config: dict[str, Any] = {
        "issuer": base_url,
        "listen": {"host": "127.0.0.1", "port": port},
        "tls": {
            "cert": str(server_certificate.cert_path.relative_to(directory)),
            "key": str(server_certificate.key_path.relative_to(directory)),
        },
        "signing_keys": [
            {
                "kid": kids["rs256"],
                "alg": "RS256",
                "file": "keys/rs256.pem",
                "published": True,
            },
            {
                "kid": kids["es256"],
                "alg": "ES256",
                "file": "keys/es256.pem",
                "published": True,
            },
            {
                "kid": kids["unpublished"],
                "alg": "RS256",
                "file": "keys/unpublished.pem",
                "published": False,
            },
        ],
        "mint_credential_file": "mint.secret",
        "clients": [
            client_entry("wlcg-client", "wlcg-1.0"),
            client_entry("scitokens-client", "scitokens-2.0"),
            client_entry("scitokens1-client", "scitokens-1.0"),
        ],
        "profiles": {
            "wlcg-1.0": {
                "header": {"typ": "JWT"},
                "claims": {"wlcg.ver": "1.0"},
                "lifetime": 1200,
                "max_lifetime": MAX_LIFETIME,
                "default_audience": WLCG_DEFAULT_AUDIENCE,
                "alg": "RS256",
            },
            "scitokens-2.0": {
                "header": {},
                "claims": {"ver": "scitokens:2.0"},
                "lifetime": 600,
                "max_lifetime": MAX_LIFETIME,
                "default_audience": "ANY",
                "alg": "ES256",
            },
            "scitokens-1.0": {
                "header": {},
                "claims": {},
                "lifetime": 600,
                "max_lifetime": MAX_LIFETIME,
                "default_audience": "ANY",
                "alg": "RS256",
                "client_id_claim": False,
            },
        },
    }
    files = IssuerFiles(
        directory=directory,
        config_path=directory / "issuer.json",
        ca_path=ca_path,
        config=config,
        base_url=base_url,
        client_secrets=client_secrets,
        mint_credential=mint_credential,
        kids=kids,
        private_keys=private_keys,
    )
    files.write_config()
    return files


def start_issuer(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*ISSUER_COMMAND, str(config_path)],
            cwd=ISSUER_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_until_healthy(
    health_url: str, ca_path: Path, failure: Callable[[], str | None]
) -> None:
    """Poll ``health_url`` until it returns 200, or fail the test.

    ``failure`` returns a message once the server has died, else None. A message
    fails the test at once, without waiting for the deadline.
    """
    deadline = time.monotonic() + STARTUP_DEADLINE
    last_error = "no response yet"
    while time.monotonic() < deadline:
        message = failure()
        if message is not None:
            pytest.fail(message)
        try:
            response = httpx.get(
                health_url, verify=client_tls_context(ca_path), timeout=1.0
            )
            if response.status_code == 200:
                return
            last_error = f"status {response.status_code}"
        except httpx.TransportError as exc:
            last_error = repr(exc)
        time.sleep(POLL_INTERVAL)
    pytest.fail(f"{health_url} not healthy after {STARTUP_DEADLINE} s: {last_error}")


def process_failure(
    process: subprocess.Popen[bytes], log_path: Path
) -> Callable[[], str | None]:
    def check() -> str | None:
        if process.poll() is None:
            return None
        log = log_path.read_text(errors="replace")
        return f"issuer exited with status {process.returncode}:\n{log}"

    return check


def stop_process(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    try:
        return process.wait(timeout=PROCESS_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=PROCESS_EXIT_TIMEOUT)
        raise


def b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def b64url_bytes(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_signature(token: str, key: PrivateKey) -> bool:
    """Check a JWS signature against ``key`` with the key's own algorithm.

    Unlike jwt.decode, this ignores the alg in the header, so it also checks tokens
    whose header names another algorithm.
    """
    header_segment, claims_segment, signature_segment = token.split(".")
    signing_input = f"{header_segment}.{claims_segment}".encode()
    signature = b64url_bytes(signature_segment)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAAlgorithm(hashes.SHA256).verify(
            signing_input, key.public_key(), signature
        )
    return ECAlgorithm(hashes.SHA256).verify(signing_input, key.public_key(), signature)


# --------------------------------------------------------------------------------
# Fixtures


@dataclass
class RunningIssuer:
    """An issuer subprocess and the files and client it was started with."""

    files: IssuerFiles
    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.files.base_url

    def jwks_key(self, kid: str) -> Any:
        keys = self.client.get(f"{self.url}/jwks").json()["keys"]
        (jwk,) = [key for key in keys if key["kid"] == kid]
        return jwt.PyJWK(jwk).key

    def token(
        self,
        client_id: str = "wlcg-client",
        data: Mapping[str, str | list[str]] | None = None,
    ) -> httpx.Response:
        form = data if data is not None else {"grant_type": "client_credentials"}
        auth = (client_id, self.files.client_secrets[client_id])
        return self.client.post(f"{self.url}/token", data=form, auth=auth)

    def mint(self, body: Any, credential: str | None = None) -> httpx.Response:
        token = self.files.mint_credential if credential is None else credential
        headers = {"Authorization": f"Bearer {token}"}
        return self.client.post(f"{self.url}/testbed/mint", json=body, headers=headers)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIssuer]:
    root = tmp_path_factory.mktemp("reference-issuer")
    files = write_issuer_files(root / "service", root / "ca", free_port())
    log_path = root / "issuer.log"
    process = start_issuer(files.config_path, log_path)
    try:
        wait_until_healthy(
            f"{files.base_url}/healthz",
            files.ca_path,
            process_failure(process, log_path),
        )
        with httpx.Client(
            verify=client_tls_context(files.ca_path), timeout=HTTP_TIMEOUT
        ) as client:
            yield RunningIssuer(files, process, log_path, client)
    finally:
        stop_process(process)


# --------------------------------------------------------------------------------
# Metadata


def test_healthz(issuer: RunningIssuer) -> None:
    response = issuer.client.get(f"{issuer.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "path",
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"],
)
def test_discovery_document(issuer: RunningIssuer, path: str) -> None:
    response = issuer.client.get(f"{issuer.url}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["issuer"] == issuer.url
    assert document["jwks_uri"] == f"{issuer.url}/jwks"
    assert document["token_endpoint"] == f"{issuer.url}/token"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert document["response_types_supported"]
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    for scope in ("storage.read", "storage.create", "storage.modify", "storage.stage"):
        assert scope in document["scopes_supported"]
    for scope in ("read", "write"):
        assert scope in document["scopes_supported"]


def test_jwks_lists_published_keys(issuer: RunningIssuer) -> None:
    response = issuer.client.get(f"{issuer.url}/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=300"
    keys = {key["kid"]: key for key in response.json()["keys"]}
    kids = issuer.files.kids
    assert set(keys) == {kids["rs256"], kids["es256"]}
    assert kids["unpublished"] not in keys

    rsa_key = keys[kids["rs256"]]
    assert rsa_key["kty"] == "RSA"
    assert rsa_key["alg"] == "RS256"
    assert rsa_key["use"] == "sig"
    assert {"n", "e"} <= set(rsa_key)
    ec_key = keys[kids["es256"]]
    assert ec_key["kty"] == "EC"
    assert ec_key["alg"] == "ES256"
    assert ec_key["use"] == "sig"
    assert ec_key["crv"] == "P-256"
    assert {"x", "y"} <= set(ec_key)
    for key in keys.values():
        assert "d" not in key, "private key parameter published"
        assert "p" not in key, "private key parameter published"


def test_jwks_keys_match_private_keys(issuer: RunningIssuer) -> None:
    for role in ("rs256", "es256"):
        kid = issuer.files.kids[role]
        published = issuer.jwks_key(kid)
        expected = issuer.files.private_keys[kid].public_key()
        assert published.public_numbers() == expected.public_numbers()


# --------------------------------------------------------------------------------
# Token endpoint


def test_token_wlcg_profile(issuer: RunningIssuer) -> None:
    scope = "storage.read:/ storage.create:/data"
    audience = "https://localhost:1094"
    before = int(time.time())
    response = issuer.token(
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "audience": audience,
        }
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1200
    assert body["scope"] == scope

    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": issuer.files.kids["rs256"], "typ": "JWT"}
    claims = jwt.decode(
        token,
        issuer.jwks_key(header["kid"]),
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer.url,
    )
    assert claims["sub"] == "testbed-wlcg-client"
    assert claims["aud"] == audience
    assert claims["scope"] == scope
    assert claims["client_id"] == "wlcg-client"
    assert claims["wlcg.ver"] == "1.0"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 1200
    assert uuid.UUID(claims["jti"]).version == 4


def test_token_scitokens_client_secret_post(issuer: RunningIssuer) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "read:/ write:/store",
        "client_id": "scitokens-client",
        "client_secret": issuer.files.client_secrets["scitokens-client"],
    }
    response = issuer.client.post(f"{issuer.url}/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 600

    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": issuer.files.kids["es256"]}
    claims = jwt.decode(
        token,
        issuer.jwks_key(header["kid"]),
        algorithms=["ES256"],
        audience="ANY",
        issuer=issuer.url,
    )
    assert claims["ver"] == "scitokens:2.0"
    assert "wlcg.ver" not in claims
    assert claims["aud"] == "ANY"
    assert claims["sub"] == "testbed-scitokens-client"
    assert claims["scope"] == "read:/ write:/store"
    assert claims["exp"] - claims["iat"] == 600


def test_token_without_client_id_claim(issuer: RunningIssuer) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "read:/",
        "client_id": "scitokens1-client",
        "client_secret": issuer.files.client_secrets["scitokens1-client"],
    }
    response = issuer.client.post(f"{issuer.url}/token", data=form)
    assert response.status_code == 200, response.text
    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert "client_id" not in claims
    assert claims["scope"] == "read:/"


@pytest.mark.parametrize(
    ("audiences", "expected"),
    [
        ([], WLCG_DEFAULT_AUDIENCE),
        ([""], WLCG_DEFAULT_AUDIENCE),
        (["https://a.example:1094"], "https://a.example:1094"),
        (
            ["https://a.example:1094", "https://b.example:8443"],
            ["https://a.example:1094", "https://b.example:8443"],
        ),
    ],
    ids=["default", "empty", "one", "two"],
)
def test_token_audience_forms(
    issuer: RunningIssuer, audiences: list[str], expected: str | list[str]
) -> None:
    form: dict[str, str | list[str]] = {
        "grant_type": "client_credentials",
        "scope": "storage.read:/",
    }
    if audiences:
        form["audience"] = audiences
    response = issuer.token(data=form)
    assert response.status_code == 200, response.text
    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert claims["aud"] == expected


def test_token_requested_lifetime(issuer: RunningIssuer) -> None:
    form = {"grant_type": "client_credentials", "scope": "storage.read:/"}
    response = issuer.token(data={**form, "lifetime": "60"})
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 60
    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert claims["exp"] - claims["iat"] == 60

    response = issuer.token(data={**form, "lifetime": str(MAX_LIFETIME)})
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == MAX_LIFETIME


@pytest.mark.parametrize("lifetime", [str(MAX_LIFETIME + 1), "0", "-5", "abc", "1e3"])
def test_token_lifetime_out_of_range(issuer: RunningIssuer, lifetime: str) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "storage.read:/",
        "lifetime": lifetime,
    }
    response = issuer.token(data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert str(MAX_LIFETIME) in response.json()["error_description"]


def test_token_wrong_client_secret(issuer: RunningIssuer) -> None:
    form = {"grant_type": "client_credentials", "scope": "storage.read:/"}
    response = issuer.client.post(
        f"{issuer.url}/token", data=form, auth=("wlcg-client", "wrong-secret")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert response.headers["cache-control"] == "no-store"


def test_token_unknown_client(issuer: RunningIssuer) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "storage.read:/",
        "client_id": "no-such-client",
        "client_secret": "anything",
    }
    response = issuer.client.post(f"{issuer.url}/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "www-authenticate" in response.headers


def test_token_without_client_credentials(issuer: RunningIssuer) -> None:
    form = {"grant_type": "client_credentials", "scope": "storage.read:/"}
    response = issuer.client.post(f"{issuer.url}/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_token_two_authentication_methods(issuer: RunningIssuer) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "storage.read:/",
        "client_secret": issuer.files.client_secrets["wlcg-client"],
    }
    response = issuer.token(data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant_type", ["password", "authorization_code"])
def test_token_unsupported_grant_type(issuer: RunningIssuer, grant_type: str) -> None:
    response = issuer.token(data={"grant_type": grant_type, "scope": "storage.read:/"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(
    "form",
    [{"scope": "storage.read:/"}, {"grant_type": "", "scope": "storage.read:/"}],
    ids=["absent", "empty"],
)
def test_token_missing_grant_type(issuer: RunningIssuer, form: dict[str, str]) -> None:
    response = issuer.token(data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials"},
        {"grant_type": "client_credentials", "scope": ""},
        {"grant_type": "client_credentials", "scope": "storage.read:/  double-space"},
    ],
    ids=["missing", "empty", "bad-syntax"],
)
def test_token_invalid_scope(issuer: RunningIssuer, form: dict[str, str]) -> None:
    response = issuer.token(data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_token_repeated_parameter(issuer: RunningIssuer) -> None:
    form: dict[str, str | list[str]] = {
        "grant_type": "client_credentials",
        "scope": ["storage.read:/", "storage.modify:/"],
    }
    response = issuer.token(data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "scope" in response.json()["error_description"]


def test_token_json_body_rejected(issuer: RunningIssuer) -> None:
    auth = ("wlcg-client", issuer.files.client_secrets["wlcg-client"])
    response = issuer.client.post(
        f"{issuer.url}/token",
        json={"grant_type": "client_credentials", "scope": "storage.read:/"},
        auth=auth,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --------------------------------------------------------------------------------
# Testbed minting


def test_mint_valid_signature(issuer: RunningIssuer) -> None:
    kid = issuer.files.kids["rs256"]
    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    claims = {"iss": issuer.url, "sub": "minted", "aud": "ANY", "custom": [1, 2]}
    response = issuer.mint({"header": header, "claims": claims, "key": kid})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()["token"]

    header_segment, claims_segment, _ = token.split(".")
    assert list(b64url_json(header_segment).items()) == list(header.items())
    assert b64url_json(claims_segment) == claims
    decoded = jwt.decode(
        token, issuer.jwks_key(kid), algorithms=["RS256"], audience="ANY"
    )
    assert decoded == claims


def test_mint_es256_key(issuer: RunningIssuer) -> None:
    kid = issuer.files.kids["es256"]
    header = {"alg": "ES256", "kid": kid}
    response = issuer.mint({"header": header, "claims": {"sub": "x"}, "key": kid})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    decoded = jwt.decode(token, issuer.jwks_key(kid), algorithms=["ES256"])
    assert decoded == {"sub": "x"}


def test_mint_default_key_is_first_rs256(issuer: RunningIssuer) -> None:
    response = issuer.mint({"header": {"alg": "RS256"}, "claims": {"sub": "x"}})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    rs256_key = issuer.files.private_keys[issuer.files.kids["rs256"]]
    assert verify_signature(token, rs256_key)


def test_mint_corrupt_signature(issuer: RunningIssuer) -> None:
    kid = issuer.files.kids["rs256"]
    body = {"header": {"alg": "RS256", "kid": kid}, "claims": {"sub": "x"}, "key": kid}
    valid = issuer.mint(body).json()["token"]
    corrupt_response = issuer.mint({**body, "signature": "corrupt"})
    assert corrupt_response.status_code == 200, corrupt_response.text
    corrupt = corrupt_response.json()["token"]

    assert corrupt.rsplit(".", 1)[0] == valid.rsplit(".", 1)[0]
    valid_signature = b64url_bytes(valid.rsplit(".", 1)[1])
    corrupt_signature = b64url_bytes(corrupt.rsplit(".", 1)[1])
    assert len(corrupt_signature) == len(valid_signature)
    assert corrupt_signature != valid_signature
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(corrupt, issuer.jwks_key(kid), algorithms=["RS256"])


def test_mint_corrupt_es256_signature(issuer: RunningIssuer) -> None:
    kid = issuer.files.kids["es256"]
    body = {
        "header": {"alg": "ES256", "kid": kid},
        "claims": {"sub": "x"},
        "key": kid,
        "signature": "corrupt",
    }
    response = issuer.mint(body)
    assert response.status_code == 200, response.text
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(response.json()["token"], issuer.jwks_key(kid), algorithms=["ES256"])


def test_mint_none_signature(issuer: RunningIssuer) -> None:
    header = {"alg": "none", "typ": "JWT"}
    response = issuer.mint(
        {"header": header, "claims": {"sub": "x"}, "signature": "none"}
    )
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert token.endswith(".")
    header_segment, claims_segment, signature_segment = token.split(".")
    assert signature_segment == ""
    assert b64url_json(header_segment) == header
    assert b64url_json(claims_segment) == {"sub": "x"}


def test_mint_lying_header(issuer: RunningIssuer) -> None:
    kids = issuer.files.kids
    # Signed by the unpublished RSA key while the header names the published EC key.
    header = {"alg": "ES256", "kid": kids["es256"], "typ": "at+jwt"}
    body = {"header": header, "claims": {"sub": "x"}, "key": kids["unpublished"]}
    response = issuer.mint(body)
    assert response.status_code == 200, response.text
    token = response.json()["token"]

    assert b64url_json(token.split(".")[0]) == header
    assert verify_signature(token, issuer.files.private_keys[kids["unpublished"]])
    assert not verify_signature(token, issuer.files.private_keys[kids["rs256"]])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, issuer.jwks_key(kids["es256"]), algorithms=["ES256"])


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-credential", "Bearer", "Basic d2xjZzp4"],
    ids=["missing", "wrong", "empty", "basic-scheme"],
)
def test_mint_rejects_credential(
    issuer: RunningIssuer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = issuer.client.post(
        f"{issuer.url}/testbed/mint",
        json={"header": {"alg": "RS256"}, "claims": {}},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" not in response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"header": {}, "claims": {"exp": NaN}}', "not valid JSON"),
        (b'{"header": [], "claims": {}}', "header must be a JSON object"),
        (b'{"header": {}, "claims": "sub"}', "claims must be a JSON object"),
        (b'{"claims": {}}', "missing field 'header'"),
        (b'{"header": {}}', "missing field 'claims'"),
        (b'{"header": {}, "claims": {}, "key": "no-such-kid"}', "unknown key"),
        (b'{"header": {}, "claims": {}, "key": 7}', "key must be a string"),
        (b'{"header": {}, "claims": {}, "signature": "bad"}', "signature must be"),
        (b'{"header": {}, "claims": {}, "extra": 1}', "unknown field 'extra'"),
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "nan",
        "header-array",
        "claims-string",
        "no-header",
        "no-claims",
        "unknown-kid",
        "kid-number",
        "signature-mode",
        "unknown-field",
    ],
)
def test_mint_bad_body(issuer: RunningIssuer, body: bytes, message: str) -> None:
    response = issuer.client.post(
        f"{issuer.url}/testbed/mint",
        content=body,
        headers={
            "Authorization": f"Bearer {issuer.files.mint_credential}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    assert message in response.json()["error_description"]


# --------------------------------------------------------------------------------
# Routing and logging


def test_unknown_path_not_found(issuer: RunningIssuer) -> None:
    response = issuer.client.get(f"{issuer.url}/no-such-endpoint")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/token", "POST"),
        ("POST", "/jwks", "GET, HEAD"),
        ("DELETE", "/healthz", "GET, HEAD"),
        ("GET", "/testbed/mint", "POST"),
    ],
)
def test_wrong_method_not_allowed(
    issuer: RunningIssuer, method: str, path: str, allowed: str
) -> None:
    response = issuer.client.request(method, f"{issuer.url}{path}")
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["error"] == "method_not_allowed"


def test_log_omits_secrets(issuer: RunningIssuer) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "storage.stage:/log-check",
        "audience": "https://log-check.example",
    }
    token = issuer.token(data=form).json()["access_token"]
    minted = issuer.mint({"header": {"alg": "RS256"}, "claims": {"sub": "log"}})
    minted_token = minted.json()["token"]

    deadline = time.monotonic() + 5.0
    log = ""
    while time.monotonic() < deadline:
        log = issuer.log_path.read_text()
        if "/testbed/mint 200" in log and "storage.stage:/log-check" in log:
            break
        time.sleep(POLL_INTERVAL)

    token_lines = [
        line for line in log.splitlines() if "storage.stage:/log-check" in line
    ]
    assert len(token_lines) == 1, log
    assert "POST /token 200" in token_lines[0]
    assert "client_id=wlcg-client" in token_lines[0]
    assert "https://log-check.example" in token_lines[0]
    assert "listening on https://127.0.0.1:" in log
    for secret in issuer.files.client_secrets.values():
        assert secret not in log
    assert issuer.files.mint_credential not in log
    assert token not in log
    assert minted_token not in log
    # Also check the signature segments alone, in case a log line splits a token.
    assert token.rsplit(".", 1)[1] not in log
    assert minted_token.rsplit(".", 1)[1] not in log


# --------------------------------------------------------------------------------
# Configuration


def test_issuer_with_path(tmp_path: Path) -> None:
    files = write_issuer_files(
        tmp_path / "service", tmp_path / "ca", free_port(), issuer_path="/realm"
    )
    log_path = tmp_path / "issuer.log"
    process = start_issuer(files.config_path, log_path)
    try:
        wait_until_healthy(
            f"https://localhost:{files.config['listen']['port']}/healthz",
            files.ca_path,
            process_failure(process, log_path),
        )
        origin = f"https://localhost:{files.config['listen']['port']}"
        with httpx.Client(
            verify=client_tls_context(files.ca_path), timeout=HTTP_TIMEOUT
        ) as client:
            for path in (
                "/realm/.well-known/openid-configuration",
                "/.well-known/oauth-authorization-server/realm",
            ):
                response = client.get(f"{origin}{path}")
                assert response.status_code == 200, path
                assert response.json()["issuer"] == files.base_url
                assert response.json()["jwks_uri"] == f"{files.base_url}/jwks"
            assert client.get(f"{files.base_url}/jwks").status_code == 200
            assert client.get(f"{origin}/jwks").status_code == 404
    finally:
        exit_status = stop_process(process)
    assert exit_status == 0, log_path.read_text()


def _remove_issuer(config: dict[str, Any]) -> None:
    del config["issuer"]


def _listen_on_any_address(config: dict[str, Any]) -> None:
    config["listen"]["host"] = "0.0.0.0"


def _port_out_of_range(config: dict[str, Any]) -> None:
    config["listen"]["port"] = 70000


def _rsa_file_for_es256(config: dict[str, Any]) -> None:
    config["signing_keys"][1]["file"] = "keys/rs256.pem"


def _missing_key_file(config: dict[str, Any]) -> None:
    config["signing_keys"][0]["file"] = "keys/absent.pem"


def _unknown_profile(config: dict[str, Any]) -> None:
    config["clients"][0]["profile"] = "no-such-profile"


def _short_secret_digest(config: dict[str, Any]) -> None:
    config["clients"][0]["client_secret_sha256"] = "abc"


def _profile_without_key(config: dict[str, Any]) -> None:
    config["profiles"]["wlcg-1.0"]["alg"] = "PS256"


def _lifetime_above_maximum(config: dict[str, Any]) -> None:
    config["profiles"]["wlcg-1.0"]["lifetime"] = MAX_LIFETIME + 1


def _boolean_lifetime(config: dict[str, Any]) -> None:
    config["profiles"]["scitokens-2.0"]["lifetime"] = True


def _profile_sets_issuer_claim(config: dict[str, Any]) -> None:
    config["profiles"]["wlcg-1.0"]["claims"]["iss"] = "https://other"


def _unknown_top_level_field(config: dict[str, Any]) -> None:
    config["listen_port"] = 1


@pytest.mark.parametrize(
    ("mutate", "field_path"),
    [
        (_remove_issuer, "issuer: missing"),
        (_listen_on_any_address, "listen.host"),
        (_port_out_of_range, "listen.port"),
        (_rsa_file_for_es256, "signing_keys[1].file"),
        (_missing_key_file, "signing_keys[0].file"),
        (_unknown_profile, "clients[0].profile"),
        (_short_secret_digest, "clients[0].client_secret_sha256"),
        (_profile_without_key, "profiles.wlcg-1.0.alg"),
        (_lifetime_above_maximum, "profiles.wlcg-1.0.max_lifetime"),
        (_boolean_lifetime, "profiles.scitokens-2.0.lifetime"),
        (_profile_sets_issuer_claim, "profiles.wlcg-1.0.claims.iss"),
        (_unknown_top_level_field, "listen_port: unknown field"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__.strip("_"),
)
def test_invalid_config_exits(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field_path: str
) -> None:
    files = write_issuer_files(tmp_path / "service", tmp_path / "ca", free_port())
    mutate(files.config)
    files.write_config()
    result = subprocess.run(
        [*ISSUER_COMMAND, str(files.config_path)],
        cwd=ISSUER_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert field_path in result.stderr


def test_empty_mint_credential_exits(tmp_path: Path) -> None:
    files = write_issuer_files(tmp_path / "service", tmp_path / "ca", free_port())
    (files.directory / "mint.secret").write_text("  \n")
    result = subprocess.run(
        [*ISSUER_COMMAND, str(files.config_path)],
        cwd=ISSUER_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "mint_credential_file" in result.stderr


# --------------------------------------------------------------------------------
# Container image


@pytest.mark.docker
def test_container_serves_discovery(tmp_path: Path) -> None:
    docker = pytest.importorskip("docker")
    try:
        docker_client = docker.from_env(timeout=600)
        docker_client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker daemon answers: {exc}")
    try:
        docker_client.images.get(DOCKER_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {DOCKER_BASE_IMAGE} not found; build it first")

    context = tmp_path / "context"
    shutil.copytree(
        ISSUER_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "wheelhouse")
    )
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(context / "wheelhouse"),
            "--only-binary=:all:",
            "-r",
            str(context / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert download.returncode == 0, f"pip download failed:\n{download.stderr}"
    try:
        docker_client.images.build(
            path=str(context),
            tag=DOCKER_IMAGE_TAG,
            buildargs={"BASE": DOCKER_BASE_IMAGE},
            network_mode="host",
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", "")) for chunk in exc.build_log)
        pytest.fail(f"image build failed: {exc}\n{log[-3000:]}")

    port = free_port()
    files = write_issuer_files(tmp_path / "service", tmp_path / "ca", port)
    container = docker_client.containers.run(
        DOCKER_IMAGE_TAG,
        detach=True,
        network_mode="host",
        volumes={str(files.directory): {"bind": "/testbed", "mode": "ro"}},
        name=f"pytest-reference-issuer-{secrets.token_hex(4)}",
    )
    try:

        def container_failure() -> str | None:
            container.reload()
            if container.status in ("created", "running"):
                return None
            logs = container.logs().decode(errors="replace")
            return f"container is {container.status}:\n{logs}"

        wait_until_healthy(
            f"{files.base_url}/healthz", files.ca_path, container_failure
        )
        with httpx.Client(
            verify=client_tls_context(files.ca_path), timeout=HTTP_TIMEOUT
        ) as client:
            response = client.get(f"{files.base_url}/.well-known/openid-configuration")
            assert response.status_code == 200
            assert response.json()["issuer"] == files.base_url
            jwks = client.get(response.json()["jwks_uri"]).json()
            assert {key["kid"] for key in jwks["keys"]} == {
                files.kids["rs256"],
                files.kids["es256"],
            }

        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] != "0", "issuer runs as root"
        key_stat = container.exec_run(
            ["stat", "-c", "%a %U", "/run/issuer/keys/rs256.pem"]
        )
        assert key_stat.output.decode().strip() == "600 issuer"
        trusted = container.exec_run(
            ["test", "-f", "/usr/local/share/ca-certificates/testbed-ca.crt"]
        )
        assert trusted.exit_code == 0, "testbed CA not installed"
        logs = container.logs().decode(errors="replace")
        assert f"listening on https://127.0.0.1:{port}" in logs
    finally:
        container.remove(force=True)

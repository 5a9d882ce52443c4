"""Tests of the XRootD storage image in containers/xrootd/.

The module builds the image once, starts a throwaway token issuer (an https server
in a thread, on a free 127.0.0.1 port) and runs two containers with host
networking: the storage under test and a second storage that pulls from it in a
third-party copy. Both read their configuration from the templates in
containers/xrootd/, rendered here the way the orchestrator renders them.

Every HTTP request opens a new connection. After XrdHttp rejects an upload, it
sometimes closes the connection although its response contained "Connection:
Keep-Alive" (seen on XRootD 5.5.3, 5.8.1 and 6.2.0), so the next request on that
connection would fail.

Set TESTBED_XROOTD_SUITE to build from another Debian suite, for example trixie.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import string
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from testbed import engine
from testbed.ca import CertificateAuthority
from testbed.errors import DockerUnavailableError
from testbed.images import ImageBuilder, ImageSpec

pytestmark = pytest.mark.docker

XROOTD_DIR = Path(__file__).resolve().parents[1] / "containers" / "xrootd"
SUITE = os.environ.get("TESTBED_XROOTD_SUITE", "bookworm")
IMAGE_TAG = "testbed-xrootd:pytest"

HTTP_TIMEOUT = httpx.Timeout(10.0)
READY_DEADLINE = 60.0
POLL_INTERVAL = 0.1
EXEC_TIMEOUT = 60

SECOND_AUDIENCE = "https://second-audience.testbed.invalid"
WLCG_ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
ISSUER_NAME = "throwaway"
BASE_PATH = "/data"
DEFAULT_USER = "xrootd"
KID = "throwaway-es256"

# XRootD returns 403 for a request without sufficient token privileges and
# never 401, but either status rejects the request.
REJECTED = (401, 403)
# XRootD 5.5.3 returns 200 for a successful upload, 5.8.1 and 6.2.0 return 201.
UPLOADED = (200, 201)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------
# Throwaway token issuer


class TokenIssuer:
    """Throwaway token issuer: an https server for its discovery document and
    JWKS, and its signing key.

    The server runs in a daemon thread on a free port of 127.0.0.1, with a
    certificate from the testbed CA, so the storage fetches the JWKS the way it
    fetches a real issuer's.
    """

    def __init__(self, ca: CertificateAuthority, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": KID, "alg": "ES256", "use": "sig"})
        certificate = ca.issue_server_certificate(directory)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _IssuerHandler)
        self.port = self.server.server_address[1]
        self.url = f"https://localhost:{self.port}"
        self.server.documents = {  # type: ignore[attr-defined]
            "/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
            },
            "/jwks": {"keys": [jwk]},
        }
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def mint(
        self,
        scope: str,
        audience: str | None,
        profile: str = "wlcg",
        lifetime: int = 600,
        issuer: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """Sign a token for ``scope`` in ``profile``, "wlcg" or "scitokens".

        ``audience=None`` leaves out the aud claim. ``issuer`` and ``key`` replace
        this issuer's URL and signing key, to make tokens that must be rejected.
        """
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer or self.url,
            "sub": "pytest",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "scope": scope,
        }
        if audience is not None:
            claims["aud"] = audience
        if profile == "wlcg":
            claims["wlcg.ver"] = "1.0"
        elif profile == "scitokens":
            claims["ver"] = "scitokens:2.0"
        else:
            raise ValueError(
                f"invalid token profile {profile!r}; expected 'wlcg' or 'scitokens'"
            )
        return jwt.encode(
            claims,
            key or self.key,
            algorithm="ES256",
            headers={"kid": KID, "typ": "JWT"},
        )


class _IssuerHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        document = self.server.documents.get(self.path)  # type: ignore[attr-defined]
        if document is None:
            self.send_error(404)
            return
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------------
# Storage containers


@dataclass
class Storage:
    """A running XRootD container and the ports its configuration names."""

    container: Any
    root_port: int
    http_port: int
    audience: str

    @property
    def url(self) -> str:
        return f"https://localhost:{self.http_port}{BASE_PATH}"

    @property
    def root_url(self) -> str:
        return f"roots://localhost:{self.root_port}/{BASE_PATH}"


def render_template(name: str, values: dict[str, Any]) -> str:
    template = string.Template((XROOTD_DIR / name).read_text(encoding="utf-8"))
    return template.substitute(values)


def write_config(
    directory: Path,
    ca: CertificateAuthority,
    issuer_url: str,
    version: str,
    root_port: int,
    http_port: int,
    audience: str,
) -> None:
    """Lay out ``directory`` as the container expects /testbed."""
    directory.mkdir(parents=True)
    (directory / "ca.pem").write_bytes(ca.cert_path.read_bytes())
    ca.issue_server_certificate(directory / "tls")
    issuer = render_template(
        "issuer.cfg.in",
        {
            "name": ISSUER_NAME,
            "issuer_url": issuer_url,
            "base_path": BASE_PATH,
            "default_user": DEFAULT_USER,
        },
    )
    scitokens = render_template(
        "scitokens.cfg.in",
        {"audience": f"{audience}, {SECOND_AUDIENCE}", "issuers": issuer},
    )
    major = int(version.split(".", 1)[0])
    xrootd = render_template(
        "xrootd.cfg.in",
        {
            "xrootd_port": root_port,
            "http_port": http_port,
            "tpc_directives": "tpc.allow local" if major >= 6 else "",
        },
    )
    (directory / "scitokens.cfg").write_text(scitokens, encoding="utf-8")
    (directory / "xrootd.cfg").write_text(xrootd, encoding="utf-8")


def start_storage(
    docker_client: Any,
    config_dir: Path,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    version: str,
) -> Storage:
    """Start a storage container and wait until an authorised request succeeds."""
    root_port, http_port = free_port(), free_port()
    audience = f"https://localhost:{http_port}"
    write_config(config_dir, ca, issuer.url, version, root_port, http_port, audience)
    container = docker_client.containers.run(
        IMAGE_TAG,
        detach=True,
        network_mode="host",
        volumes={str(config_dir): {"bind": "/testbed", "mode": "ro"}},
        labels={"testbed.scratch": "1"},
        name=f"pytest-xrootd-{secrets.token_hex(4)}",
    )
    storage = Storage(container, root_port, http_port, audience)
    try:
        wait_until_ready(storage, ca, issuer)
    except BaseException:
        container.remove(force=True)
        raise
    return storage


def wait_until_ready(
    storage: Storage, ca: CertificateAuthority, issuer: TokenIssuer
) -> None:
    token = issuer.mint("storage.read:/", storage.audience)
    deadline = time.monotonic() + READY_DEADLINE
    last = "no request sent"
    while time.monotonic() < deadline:
        storage.container.reload()
        if storage.container.status not in ("created", "running"):
            logs = storage.container.logs().decode(errors="replace")
            pytest.fail(f"container is {storage.container.status}:\n{logs[-3000:]}")
        try:
            response = send(
                ca, "PROPFIND", f"{storage.url}/", token, headers={"Depth": "0"}
            )
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 207:
                return
            last = f"PROPFIND returned {response.status_code}"
        time.sleep(POLL_INTERVAL)
    logs = storage.container.logs().decode(errors="replace")
    pytest.fail(f"storage not ready after {READY_DEADLINE} s ({last}):\n{logs[-3000:]}")


def send(
    ca: CertificateAuthority,
    method: str,
    url: str,
    token: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request on a new connection, with ``token`` as bearer token."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method,
        url,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(ca.cert_path)),
        timeout=HTTP_TIMEOUT,
        **kwargs,
    )


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.txt"


# --------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def docker_client() -> Any:
    try:
        client = engine.connect(timeout=600)
    except DockerUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    return client


@pytest.fixture(scope="module")
def image_version(docker_client: Any) -> str:
    """Build the image the way the orchestrator does; return the XRootD version."""
    tag = ImageBuilder(docker_client).build(ImageSpec("xrootd", suite=SUITE))
    docker_client.images.get(tag).tag(IMAGE_TAG)
    output = docker_client.containers.run(
        IMAGE_TAG, entrypoint=["cat", "/etc/testbed-version"], remove=True
    )
    return output.decode().strip()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def issuer(
    ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenIssuer]:
    token_issuer = TokenIssuer(ca, tmp_path_factory.mktemp("issuer-tls"))
    try:
        yield token_issuer
    finally:
        token_issuer.close()


@pytest.fixture(scope="module")
def storage(
    docker_client: Any,
    image_version: str,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Storage]:
    config_dir = tmp_path_factory.mktemp("storage") / "testbed"
    started = start_storage(docker_client, config_dir, ca, issuer, image_version)
    try:
        yield started
    finally:
        started.container.remove(force=True)


@pytest.fixture(scope="module")
def destination(
    docker_client: Any,
    image_version: str,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Storage]:
    config_dir = tmp_path_factory.mktemp("destination") / "testbed"
    started = start_storage(docker_client, config_dir, ca, issuer, image_version)
    try:
        yield started
    finally:
        started.container.remove(force=True)


@pytest.fixture
def upload(
    storage: Storage, ca: CertificateAuthority, issuer: TokenIssuer
) -> tuple[str, bytes]:
    """Upload a new file with a storage.create token and return its URL and content."""
    url = f"{storage.url}/{unique_name('upload')}"
    content = secrets.token_bytes(64)
    token = issuer.mint("storage.create:/", storage.audience)
    response = send(ca, "PUT", url, token, content=content)
    assert response.status_code in UPLOADED, response.text
    return url, content


# --------------------------------------------------------------------------------
# Image and process


def test_version_file_matches_xrootd(docker_client: Any, image_version: str) -> None:
    banner = docker_client.containers.run(
        IMAGE_TAG, entrypoint=["xrootd", "-v"], remove=True, stderr=True
    )
    assert image_version.count(".") == 2, image_version
    assert f"v{image_version}" in banner.decode(), banner


def test_ports_listen_on_loopback_only(storage: Storage) -> None:
    # With host networking the container shares the host's sockets, so
    # /proc/net/tcp* lists the listening sockets of XRootD.
    listening: dict[int, list[str]] = {storage.root_port: [], storage.http_port: []}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        result = storage.container.exec_run(["cat", table])
        assert result.exit_code == 0, result.output
        for line in result.output.decode().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            state = fields[3]
            port = int(port_hex, 16)
            if state == "0A" and port in listening:  # 0A is TCP_LISTEN
                listening[port].append(address)
    # /proc/net/tcp prints 127.0.0.1 as 0100007F on little-endian hosts.
    assert listening[storage.root_port] == ["0100007F"]
    assert listening[storage.http_port] == ["0100007F"]


def test_connection_from_other_source_address_dropped(
    storage: Storage, ca: CertificateAuthority
) -> None:
    # xrd.allow admits only 127.0.0.1, so XRootD drops a client that connects
    # from another loopback address.
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    raw = socket.create_connection(
        ("127.0.0.1", storage.http_port), timeout=5, source_address=("127.0.0.2", 0)
    )
    with raw, pytest.raises((ConnectionError, ssl.SSLError)):
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET /data/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        if not tls.recv(1):
            raise ConnectionResetError("server closed the connection")


def test_service_runs_as_xrootd_with_private_key(storage: Storage) -> None:
    status = storage.container.exec_run(["cat", "/proc/1/status"]).output.decode()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] != "0", "xrootd runs as root"
    key = storage.container.exec_run(
        ["stat", "-c", "%a %U", "/run/testbed/tls/key.pem"]
    )
    assert key.output.decode().strip() == "600 xrootd"


# --------------------------------------------------------------------------------
# HTTPS with tokens


def test_unauthenticated_read_rejected(
    storage: Storage, ca: CertificateAuthority, upload: tuple[str, bytes]
) -> None:
    url, _ = upload
    assert send(ca, "GET", url).status_code in REJECTED


def test_unauthenticated_upload_rejected(
    storage: Storage, ca: CertificateAuthority
) -> None:
    url = f"{storage.url}/{unique_name('anonymous')}"
    assert send(ca, "PUT", url, content=b"anonymous").status_code in REJECTED


def test_upload_then_read(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
) -> None:
    url, content = upload
    response = send(ca, "GET", url, issuer.mint("storage.read:/", storage.audience))
    assert response.status_code == 200
    assert response.content == content


def test_read_token_cannot_upload(
    storage: Storage, ca: CertificateAuthority, issuer: TokenIssuer
) -> None:
    url = f"{storage.url}/{unique_name('read-only')}"
    token = issuer.mint("storage.read:/", storage.audience)
    assert send(ca, "PUT", url, token, content=b"x").status_code == 403


def test_create_token_cannot_overwrite(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
) -> None:
    url, content = upload
    create = issuer.mint("storage.create:/", storage.audience)
    assert send(ca, "PUT", url, create, content=b"replaced").status_code == 403
    read = issuer.mint("storage.read:/", storage.audience)
    assert send(ca, "GET", url, read).content == content


def test_modify_token_overwrites(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
) -> None:
    url, _ = upload
    modify = issuer.mint("storage.modify:/", storage.audience)
    assert send(ca, "PUT", url, modify, content=b"replaced").status_code in UPLOADED
    read = issuer.mint("storage.read:/", storage.audience)
    assert send(ca, "GET", url, read).content == b"replaced"


def test_delete_with_modify_and_read(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
) -> None:
    url, _ = upload
    # XrdHttp 5.5.3 stats the path before it deletes it, which needs storage.read.
    # 5.8.1 and 6.2.0 delete with storage.modify alone.
    token = issuer.mint("storage.read:/ storage.modify:/", storage.audience)
    assert 200 <= send(ca, "DELETE", url, token).status_code < 300
    read = issuer.mint("storage.read:/", storage.audience)
    assert send(ca, "GET", url, read).status_code == 404


def test_create_scope_limited_to_its_path(
    storage: Storage, ca: CertificateAuthority, issuer: TokenIssuer
) -> None:
    directory = f"sub-{uuid.uuid4().hex[:8]}"
    create_all = issuer.mint("storage.create:/", storage.audience)
    mkcol = send(ca, "MKCOL", f"{storage.url}/{directory}", create_all)
    assert mkcol.status_code == 201

    create_sub = issuer.mint(f"storage.create:/{directory}", storage.audience)
    inside = f"{storage.url}/{directory}/{unique_name('inside')}"
    outside = f"{storage.url}/{unique_name('outside')}"
    assert send(ca, "PUT", inside, create_sub, content=b"x").status_code in UPLOADED
    assert send(ca, "PUT", outside, create_sub, content=b"x").status_code == 403


def test_scitokens_2_token_writes_and_reads(
    storage: Storage, ca: CertificateAuthority, issuer: TokenIssuer
) -> None:
    url = f"{storage.url}/{unique_name('scitokens')}"
    token = issuer.mint("read:/ write:/", storage.audience, profile="scitokens")
    assert send(ca, "PUT", url, token, content=b"scitokens").status_code in UPLOADED
    response = send(ca, "GET", url, token)
    assert response.status_code == 200
    assert response.content == b"scitokens"


@pytest.mark.parametrize(
    "audience",
    ["storage", SECOND_AUDIENCE, WLCG_ANY_AUDIENCE],
    ids=["first-configured", "second-configured", "wlcg-any"],
)
def test_accepted_audiences(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
    audience: str,
) -> None:
    url, content = upload
    if audience == "storage":
        audience = storage.audience
    response = send(ca, "GET", url, issuer.mint("storage.read:/", audience))
    assert response.status_code == 200
    assert response.content == content


@pytest.mark.parametrize(
    "variant",
    ["wrong-audience", "no-audience", "expired", "unknown-key", "unknown-issuer"],
)
def test_invalid_token_rejected(
    storage: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
    variant: str,
) -> None:
    url, _ = upload
    scope = "storage.read:/"
    if variant == "wrong-audience":
        token = issuer.mint(scope, "https://other-storage.testbed.invalid")
    elif variant == "no-audience":
        token = issuer.mint(scope, None)
    elif variant == "expired":
        token = issuer.mint(scope, storage.audience, lifetime=-60)
    elif variant == "unknown-key":
        other_key = ec.generate_private_key(ec.SECP256R1())
        token = issuer.mint(scope, storage.audience, key=other_key)
    else:
        token = issuer.mint(scope, storage.audience, issuer="https://localhost:1")
    assert send(ca, "GET", url, token).status_code in REJECTED


# --------------------------------------------------------------------------------
# root:// with tokens (ztn) and HTTP third-party copy


def run_xrdcp(storage: Storage, token: str | None, *arguments: str) -> Any:
    """Run xrdcp inside the storage container with ``token`` in BEARER_TOKEN."""
    # The client verifies the server with the CA directory that
    # update-ca-certificates filled in the container.
    environment = {"X509_CERT_DIR": "/etc/ssl/certs"}
    if token is not None:
        environment["BEARER_TOKEN"] = token
    return storage.container.exec_run(
        ["timeout", str(EXEC_TIMEOUT), "xrdcp", "--force", *arguments],
        environment=environment,
        demux=True,
    )


def test_root_protocol_with_token(storage: Storage, issuer: TokenIssuer) -> None:
    token = issuer.mint("storage.read:/ storage.create:/", storage.audience)
    name = unique_name("root")
    upload = run_xrdcp(storage, token, "/etc/hostname", f"{storage.root_url}/{name}")
    assert upload.exit_code == 0, upload.output
    download = run_xrdcp(storage, token, f"{storage.root_url}/{name}", "-")
    assert download.exit_code == 0, download.output
    expected = storage.container.exec_run(["cat", "/etc/hostname"]).output
    assert download.output[0] == expected


def test_root_protocol_without_token_rejected(storage: Storage) -> None:
    result = run_xrdcp(storage, None, "/etc/hostname", f"{storage.root_url}/anon.txt")
    assert result.exit_code != 0


def test_third_party_copy_pull(
    storage: Storage,
    destination: Storage,
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    upload: tuple[str, bytes],
) -> None:
    source_url, content = upload
    target_url = f"{destination.url}/{unique_name('pulled')}"
    response = send(
        ca,
        "COPY",
        target_url,
        issuer.mint("storage.create:/", destination.audience),
        headers={
            "Source": source_url,
            "TransferHeaderAuthorization": "Bearer "
            + issuer.mint("storage.read:/", storage.audience),
        },
    )
    # The status (201 on 5.x, 202 on 6.2.0) comes before the transfer, whose
    # result is the last line of the body.
    assert response.status_code in (201, 202), response.text
    assert response.text.strip().splitlines()[-1].startswith("success:"), response.text
    read = issuer.mint("storage.read:/", destination.audience)
    copied = send(ca, "GET", target_url, read)
    assert copied.status_code == 200
    assert copied.content == content

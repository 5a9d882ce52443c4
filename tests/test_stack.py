"""Integration tests of the whole testbed against the real Docker engine.

These build the real images (reference issuer, XRootD from Debian) and run the
CLI as a user would. They are skipped where no engine responds, except in CI
(``CI=true``), where a missing engine is a failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from testbed import engine
from testbed.errors import ImageBuildError, ServiceStartError
from testbed.httpclient import make_client
from testbed.images import ImageBuilder, ImageSpec
from testbed.implementations import resolve_implementations
from testbed.results import load_results
from testbed.run_context import RunContext
from testbed.services import xrootd as xrootd_driver
from testbed.stack import Stack
from testbed.tokens import decode_unverified

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent
TESTBED = [sys.executable, "-m", "testbed"]
RUN_TIMEOUT = 900
# A compact JWS with a non-empty signature: evidence must never contain one.
WHOLE_TOKEN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{16,}")
DEFAULT_STACK = ["reference-issuer", "xrootd@5.5.3"]


def _containers_of_pid(client: docker.DockerClient, pid: int) -> list[Any]:
    return client.containers.list(
        all=True,
        filters={
            "label": [f"{engine.LABEL_MANAGED}=true", f"{engine.LABEL_PID}={pid}"]
        },
    )


def _run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TESTBED, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_run_default_matrix(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    result = _run_cli("run", "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    document = load_results(tmp_path / "out" / "results.json")
    xrootd_cells = [
        c
        for c in document["cells"]
        if c["participants"].get("storage", "").startswith("xrootd@")
    ]
    assert len(xrootd_cells) >= 30
    assert [c["id"] for c in document["cells"] if c["outcome"] == "error"] == []
    assert (
        (tmp_path / "out" / "matrix.md")
        .read_text()
        .startswith("# Token interoperability")
    )
    assert "token interop matrix" in result.stdout
    run_id = document["run"]["id"]
    leftovers = docker_client.containers.list(
        all=True, filters={"label": f"{engine.LABEL_RUN}={run_id}"}
    )
    assert leftovers == []


def test_results_carry_evidence_without_signatures(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = _run_cli(
        "run", "-s", "download,token-rejection", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]

    text = (tmp_path / "results.json").read_text()
    assert WHOLE_TOKEN.search(text) is None
    document = json.loads(text)
    for cell in document["cells"]:
        assert cell["section"]
        status = cell["evidence"]["response"]["status"]
        closed = "closed the connection" in cell["reason"]
        assert (status is None and closed) or status in range(200, 600), cell["id"]
        assert cell["evidence"]["request"]["url"].startswith("https://localhost:")
    implementations = {impl["key"]: impl for impl in document["implementations"]}
    assert implementations["xrootd@5.5.3"]["version"] == "5.5.3"
    assert implementations["xrootd@5.5.3"]["image"].startswith("testbed/xrootd:")


def _wait_for_containers(client: docker.DockerClient, pid: int, count: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(_containers_of_pid(client, pid)) < count:
        assert time.monotonic() < deadline, "the run started no containers"
        time.sleep(0.5)


def test_interrupt_removes_containers(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [*TESTBED, "run", "-i", ",".join(DEFAULT_STACK), "--output", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_containers(docker_client, process.pid, 2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output[-2000:]
    assert _containers_of_pid(docker_client, process.pid) == []


def test_down_removes_containers_of_killed_run(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [*TESTBED, "run", "-i", ",".join(DEFAULT_STACK), "--output", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_containers(docker_client, process.pid, 2)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert len(_containers_of_pid(docker_client, process.pid)) == 2

    result = _run_cli("down", env={"TESTBED_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert _containers_of_pid(docker_client, process.pid) == []


def test_up_token_down(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    env = {"TESTBED_STATE_DIR": str(tmp_path / "state")}
    up = _run_cli("up", env=env)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        urls = dict(
            re.findall(r"^\s+(xrootd@\S+)\s+(https://\S+)$", up.stdout, re.MULTILINE)
        )
        storage = urls["xrootd@5.5.3"]

        token = _run_cli(
            "token",
            "--scope",
            "storage.read:/ storage.create:/",
            "--audience",
            storage,
            env=env,
        )
        assert token.returncode == 0, token.stderr
        _, claims = decode_unverified(token.stdout.strip())
        assert claims["aud"] == storage
        assert claims["wlcg.ver"] == "1.0"

        context = RunContext.load(tmp_path / "state" / "stack")
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        with make_client(context.ca_file) as http:
            put = http.put(f"{storage}/data/hello", content=b"hello\n", headers=headers)
            get = http.get(f"{storage}/data/hello", headers=headers)
            anonymous = http.get(f"{storage}/data/hello")
        assert put.status_code in (200, 201, 204)
        assert get.content == b"hello\n"
        assert anonymous.status_code in (401, 403)
    finally:
        down = _run_cli("down", env=env)
    assert down.returncode == 0, down.stderr
    remaining = docker_client.containers.list(
        all=True, filters={"label": f"{engine.LABEL_RUN}={context.run_id}"}
    )
    assert remaining == []


@pytest.fixture
def stack(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Stack]:
    run = RunContext.create(tmp_path / "run")
    with Stack(docker_client, run, resolve_implementations(DEFAULT_STACK)) as started:
        yield started


def _tcp_sockets() -> list[tuple[str, int, str, int, str]]:
    """Parse /proc/net/tcp and tcp6: (local ip, port, remote ip, port, state)."""
    sockets = []
    for name in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            sockets.append((*_address(local), *_address(remote), state))
    return sockets


def _address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # /proc prints each 32-bit word in host byte order (little-endian here).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port, 16)


def test_services_use_loopback_only(stack: Stack) -> None:
    storage = stack.get("xrootd@5.5.3")
    assert stack.issuer is not None
    token = stack.issuer.token(
        "wlcg-1.0", "storage.read:/", storage.endpoints["audience"]
    )
    response = storage.http.get(
        f"{storage.url}/data/", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code < 500

    ports = {
        stack.run.issuer_port,
        storage.endpoints["http_port"],
        storage.endpoints["xrootd_port"],
    }
    seen = [s for s in _tcp_sockets() if s[1] in ports or s[3] in ports]
    listening = [s for s in seen if s[4] == "0A"]
    assert {s[1] for s in listening} == ports
    for local_ip, port, remote_ip, remote_port, _ in seen:
        assert ipaddress.ip_address(local_ip).is_loopback, (local_ip, port)
        if remote_port:
            assert ipaddress.ip_address(remote_ip).is_loopback, (remote_ip, remote_port)


def test_failed_service_reports_log_tail(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = xrootd_driver.XRootDDriver.configure

    def broken(self: Any, run: RunContext, config_dir: Path) -> dict[str, Any]:
        endpoints = original(self, run, config_dir)
        with (config_dir / "xrootd.cfg").open("a") as config:
            config.write("ofs.authlib libNoSuchPlugin.so\n")
        return endpoints

    monkeypatch.setattr(xrootd_driver.XRootDDriver, "configure", broken)
    monkeypatch.setattr(xrootd_driver, "READY_TIMEOUT", 20.0)
    run = RunContext.create(tmp_path / "run")
    with Stack(docker_client, run, resolve_implementations(DEFAULT_STACK)) as started:
        failure = started.failures["xrootd@5.5.3"]
        issuer = started.get(started.issuer_impl.key)
        with pytest.raises(ServiceStartError):
            started.get("xrootd@5.5.3")
    assert isinstance(failure, ServiceStartError)
    assert "authorised upload" in str(failure)
    assert failure.log_tail.strip()
    assert issuer.url == run.issuer_url


def test_image_build_failure_has_log_tail(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tmp_path / "containers" / "broken"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nRUN echo building-the-broken-image && exit 3\n"
    )
    monkeypatch.setattr("testbed.images.CONTAINERS_DIR", tmp_path / "containers")
    with pytest.raises(ImageBuildError) as raised:
        ImageBuilder(docker_client).build(ImageSpec("broken"))
    assert "building-the-broken-image" in raised.value.log_tail
    assert "docker build of testbed/broken" in str(raised.value)


def test_image_cache_skips_unchanged_context(
    docker_client: docker.DockerClient,
) -> None:
    builder = ImageBuilder(docker_client)
    first = builder.build(ImageSpec("xrootd"))
    started = time.monotonic()
    second = ImageBuilder(docker_client).build(ImageSpec("xrootd"))
    assert first == second
    assert time.monotonic() - started < 10


def test_issuer_rejects_unknown_client(stack: Stack) -> None:
    with make_client(stack.run.ca_file) as http:
        response = http.post(
            f"{stack.run.issuer_url}/token",
            data={"grant_type": "client_credentials", "scope": "storage.read:/"},
            auth=("nobody", "wrong"),
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unreachable_docker_host_is_reported(tmp_path: Path) -> None:
    result = _run_cli(
        "run", "--output", str(tmp_path),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "DOCKER_HOST" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_probe_reports_verdicts(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps(
            {
                "sub": "probe",
                "scope": "storage.read:/probe",
                "wlcg.ver": "1.0",
                "iat": "now",
                "nbf": "now",
                "exp": "now+600",
                "jti": "probe-1",
            }
        )
    )
    good = _run_cli(
        "probe", "-i", "xrootd@5.5.3", "--claims-file", str(claims), "--format", "json"
    )
    bad = _run_cli(
        "probe", "-i", "xrootd@5.5.3", "--claims-file", str(claims),
        "--signature", "corrupt", "--format", "json",
    )  # fmt: skip
    assert good.returncode == 0, good.stderr[-2000:]
    assert bad.returncode == 0, bad.stderr[-2000:]
    accepted, rejected = json.loads(good.stdout), json.loads(bad.stdout)
    assert accepted["verdict"] == "accept"
    assert accepted["status"] == 200
    assert rejected["verdict"] == "reject"
    assert rejected["status"] == 403
    assert WHOLE_TOKEN.search(good.stdout) is None


def test_probe_rejects_non_jwt(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-jwt")
    result = _run_cli("probe", "-i", "xrootd@5.5.3", "--token-file", str(token))
    assert result.returncode == 2
    assert "does not hold a JWT" in result.stderr

"""Tests of the gfal2 copy client (testbed.clients.gfal2 and containers/gfal2).

The tests marked ``docker`` build the gfal2 image and start the reference issuer
with XRootD 5.5.3 and 6.2.0, then copy files between them with gfal-copy. They
skip where no Docker engine responds, except in CI (``CI=true``), where a missing
engine is a failure. The other tests check the command line and the log parsing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed import engine
from testbed.clients import copy_with_client
from testbed.clients.gfal2 import (
    GfalCopyResult,
    GfalCopyTimeoutError,
    gfal_copy_command,
    parse_copy_exchange,
    run_gfal_copy,
    to_copy_result,
)
from testbed.errors import UsageError
from testbed.images import ImageBuilder, ImageSpec
from testbed.implementations import Implementation, Role, resolve_implementations
from testbed.run_context import RunContext
from testbed.stack import ClientTool, Service, Stack

OLD, NEW = "xrootd@5.5.3", "xrootd@6.2.0"
PAIRS = [(OLD, NEW), (NEW, OLD)]
COPY_TIMEOUT = 90.0
FILE_SIZE = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ADMIN_SCOPE = "storage.read:/ storage.create:/ storage.modify:/"
SOURCE = "https://localhost:1094/data/cell/source-file"
DESTINATION = "https://localhost:2094/data/cell/copies/file"

# gfal-copy -vv output of a pull copy, shortened, as gfal2 2.21.3 prints it.
PULL_OUTPUT = """\
INFO Davix: > PROPFIND /data/cell/copies/file HTTP/1.1
> Authorization: xxxxxxxx
INFO Davix: < HTTP/1.1 404 Not Found
INFO Trying copying with mode 3rd pull
INFO Davix: > COPY /data/cell/copies/file HTTP/1.1
> Source: https://localhost:1094/data/cell/source-file
> TransferHeaderAuthorization: xxxxxxxx
> Authorization: xxxxxxxx
>

INFO Davix: < HTTP/1.1 202 Accepted
INFO Davix: < Transfer-Encoding: chunked
INFO Davix: PerformanceMarker:
Perf Marker
Timestamp: 1796395188
Stripe Bytes Transferred: 1048576
End

INFO Davix: PerformanceMarker:
success: Created

INFO Copy succeeded using mode 3rd pull
"""


PULL_RESULT = GfalCopyResult(
    mode="pull",
    source=SOURCE,
    destination=DESTINATION,
    command=gfal_copy_command(SOURCE, DESTINATION, "pull", 60),
    exit_code=0,
    stdout=PULL_OUTPUT,
    stderr="",
    duration=1.5,
    gfal2_version="2.21.3",
    exchange=parse_copy_exchange(PULL_OUTPUT),
)


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_command_forces_third_party_mode(mode: str) -> None:
    command = gfal_copy_command(SOURCE, DESTINATION, mode, 59.5)
    assert command[:3] == ["testbed-gfal-copy", "--copy-mode", mode]
    assert "HTTP PLUGIN:ENABLE_STREAM_COPY=false" in command
    assert "HTTP PLUGIN:RETRIEVE_BEARER_TOKEN=false" in command
    assert command[command.index("--timeout") + 1] == "60"
    assert command[-2:] == [SOURCE, DESTINATION]


def test_command_streamed_allows_streaming() -> None:
    command = gfal_copy_command(SOURCE, DESTINATION, "streamed", 10)
    assert command[1:3] == ["--copy-mode", "streamed"]
    assert "HTTP PLUGIN:ENABLE_STREAM_COPY=false" not in command


def test_command_options_for_preparation() -> None:
    command = gfal_copy_command(
        SOURCE, DESTINATION, "pull", 10, create_parent=True, just_copy=True
    )
    assert "--parent" in command
    assert "--just-copy" in command


def test_command_rejects_unknown_mode() -> None:
    with pytest.raises(UsageError, match="invalid copy mode 'sideways'"):
        gfal_copy_command(SOURCE, DESTINATION, "sideways", 10)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:1094/data/f", "file:///etc/passwd", "https://example.org/f"],
)
def test_command_rejects_url(url: str) -> None:
    with pytest.raises(UsageError, match="invalid source URL"):
        gfal_copy_command(url, DESTINATION, "pull", 10)


def test_exchange_parsed_from_output() -> None:
    exchange = parse_copy_exchange(PULL_OUTPUT)
    assert exchange is not None
    assert exchange.status == 202
    assert exchange.final_line == "success: Created"
    assert exchange.markers == [
        {"Timestamp": "1796395188", "Stripe Bytes Transferred": "1048576"}
    ]


def test_exchange_absent_without_copy_request() -> None:
    assert parse_copy_exchange("INFO Davix: < HTTP/1.1 404 Not Found\n") is None


def test_copy_result_for_pull() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    copy = to_copy_result(PULL_RESULT, source_token=token, destination_token=token)
    assert copy.status == 202
    assert copy.claims_success
    assert copy.request["url"] == DESTINATION
    assert copy.request["headers"]["Source"] == SOURCE
    assert "c2lnbmF0dXJl" not in str(copy.request)
    assert copy.request["exit_code"] == 0


def test_copy_result_without_copy_request() -> None:
    error = "gfal-copy error: 1 (Operation not permitted) - DESTINATION OVERWRITE"
    result = dataclasses.replace(
        PULL_RESULT, exit_code=1, stdout="", stderr=error + "\n", exchange=None
    )
    copy = to_copy_result(result, "a.b.c", "d.e.f")
    assert copy.status is None
    assert copy.final_line == error
    assert not copy.claims_success


# Tests against the real engine: gfal2 image, issuer and two XRootD versions.


@pytest.fixture(scope="module")
def gfal2_image(docker_client: docker.DockerClient) -> str:
    return ImageBuilder(docker_client).build(ImageSpec("gfal2", suite="bookworm"))


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    run = RunContext.create(tmp_path_factory.mktemp("gfal2-run"))
    implementations = resolve_implementations(["reference-issuer", OLD, NEW])
    with Stack(docker_client, run, implementations) as started:
        yield started


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "gfal2"
    directory.mkdir(mode=0o700)
    return directory


def _token(stack: Stack, scope: str, storage: Service) -> str:
    assert stack.issuer is not None
    return stack.issuer.token("wlcg-1.0", scope, storage.endpoints["audience"])


def _upload(stack: Stack, storage: Service, path: str, content: bytes) -> str:
    headers = {"Authorization": f"Bearer {_token(stack, ADMIN_SCOPE, storage)}"}
    response = storage.http.put(
        f"{storage.url}/data{path}", content=content, headers=headers
    )
    assert response.status_code in (200, 201, 204), response.text
    return f"{storage.url}/data{path}"


def _mkdir(stack: Stack, storage: Service, path: str) -> None:
    headers = {"Authorization": f"Bearer {_token(stack, ADMIN_SCOPE, storage)}"}
    response = storage.http.request(
        "MKCOL", f"{storage.url}/data{path}", headers=headers
    )
    assert response.status_code in (200, 201), response.text


def _sha256_at(stack: Stack, storage: Service, path: str) -> str:
    headers = {"Authorization": f"Bearer {_token(stack, ADMIN_SCOPE, storage)}"}
    response = storage.http.get(f"{storage.url}/data{path}", headers=headers)
    if response.status_code == 404:
        return "absent"
    assert response.status_code == 200, response.status_code
    return hashlib.sha256(response.content).hexdigest()


def _gfal2_containers(client: docker.DockerClient, run_id: str) -> list[object]:
    return client.containers.list(
        all=True,
        filters={
            "label": [
                f"{engine.LABEL_RUN}={run_id}",
                f"{engine.LABEL_IMPLEMENTATION}=gfal2",
            ]
        },
    )


def _copy(
    stack: Stack,
    image: str,
    work_dir: Path,
    source: Service,
    destination: Service,
    mode: str,
    source_grant: str = "read",
    just_copy: bool = False,
    timeout: float = COPY_TIMEOUT,
) -> tuple[GfalCopyResult, str, str, tuple[str, str]]:
    """Copy a new random file from ``source`` to ``destination``.

    Returns the result, the SHA-256 of the file at the source and at the
    destination, and the two tokens.
    """
    directory = f"/gfal2-{mode}-{secrets.token_hex(4)}"
    content = os.urandom(FILE_SIZE)
    source_url = _upload(stack, source, f"{directory}/source-file", content)
    _mkdir(stack, destination, directory)
    destination_path = f"{directory}/file"
    tokens = (
        _token(stack, f"storage.{source_grant}:{directory}/source-file", source),
        _token(stack, f"storage.create:{directory}", destination),
    )
    result = run_gfal_copy(
        stack.client,
        image,
        stack.run.ca_file,
        source_url,
        f"{destination.url}/data{destination_path}",
        tokens[0],
        tokens[1],
        mode,
        timeout,
        work_dir,
        labels={engine.LABEL_RUN: stack.run.run_id, engine.LABEL_MODE: stack.mode},
        just_copy=just_copy,
    )
    return (
        result,
        hashlib.sha256(content).hexdigest(),
        _sha256_at(stack, destination, destination_path),
        tokens,
    )


@pytest.mark.docker
@pytest.mark.parametrize("mode", ["pull", "push"])
@pytest.mark.parametrize(("source", "destination"), PAIRS, ids=["old-new", "new-old"])
def test_copy_between_xrootd_versions(
    stack: Stack,
    gfal2_image: str,
    work_dir: Path,
    source: str,
    destination: str,
    mode: str,
) -> None:
    result, expected, copied, tokens = _copy(
        stack,
        gfal2_image,
        work_dir,
        stack.get(source),
        stack.get(destination),
        mode,
        just_copy=True,
    )
    assert result.exit_code == 0, result.stderr + result.stdout[-3000:]
    assert copied == expected
    assert result.exchange is not None
    assert result.exchange.status in (201, 202)
    assert result.exchange.final_line.startswith("success")
    assert f"Copy succeeded using mode 3rd {mode}" in result.stdout
    assert result.gfal2_version == "2.21.3"
    for token in tokens:
        assert token not in result.stdout + result.stderr + result.command_line
    assert list(work_dir.iterdir()) == []
    assert _gfal2_containers(stack.client, stack.run.run_id) == []


@pytest.mark.docker
def test_streamed_copy(stack: Stack, gfal2_image: str, work_dir: Path) -> None:
    result, expected, copied, _ = _copy(
        stack, gfal2_image, work_dir, stack.get(OLD), stack.get(NEW), "streamed"
    )
    assert result.exit_code == 0, result.stderr + result.stdout[-3000:]
    assert copied == expected
    assert result.exchange is None
    assert "Copy succeeded using mode streamed" in result.stdout


@pytest.mark.docker
@pytest.mark.parametrize("mode", ["pull", "push"])
def test_copy_with_preparation_to_new(
    stack: Stack, gfal2_image: str, work_dir: Path, mode: str
) -> None:
    result, expected, copied, _ = _copy(
        stack, gfal2_image, work_dir, stack.get(OLD), stack.get(NEW), mode
    )
    assert result.exit_code == 0, result.stderr + result.stdout[-3000:]
    assert copied == expected


@pytest.mark.docker
def test_stat_check_fails_on_old_xrootd(
    stack: Stack, gfal2_image: str, work_dir: Path
) -> None:
    # XRootD 5.5.3 returns 403 for a stat with a storage.create token, even for a
    # file that does not exist, and gfal-copy stops before it sends COPY.
    result, _, copied, _ = _copy(
        stack, gfal2_image, work_dir, stack.get(NEW), stack.get(OLD), "pull"
    )
    assert result.exit_code != 0
    assert "DESTINATION OVERWRITE" in result.error_line
    assert result.exchange is None
    assert copied == "absent"


@pytest.mark.docker
@pytest.mark.parametrize("mode", ["pull", "push"])
@pytest.mark.parametrize(("source", "destination"), PAIRS, ids=["old-new", "new-old"])
def test_source_token_without_read_fails(
    stack: Stack,
    gfal2_image: str,
    work_dir: Path,
    source: str,
    destination: str,
    mode: str,
) -> None:
    result, _, copied, _ = _copy(
        stack,
        gfal2_image,
        work_dir,
        stack.get(source),
        stack.get(destination),
        mode,
        source_grant="create",
        just_copy=True,
    )
    assert result.exit_code != 0, result.stdout[-3000:]
    assert result.error_line, result.stderr
    if mode == "pull" and destination == OLD:
        # XRootD 5.5.3, the active side of a pull, creates the destination file
        # before it reads the source, responds 201 and leaves the file empty when
        # the source rejects the read. gfal2's clean-up DELETE is rejected because
        # the destination token grants no storage.modify.
        assert copied == EMPTY_SHA256
        assert result.exchange is not None
        assert result.exchange.final_line.startswith("failure")
    else:
        assert copied == "absent"
    assert "mode streamed" not in result.stdout
    other_mode = "push" if mode == "pull" else "pull"
    assert f"Trying copying with mode 3rd {other_mode}" not in result.stdout


@pytest.mark.docker
def test_timeout_kills_container(
    stack: Stack, gfal2_image: str, work_dir: Path
) -> None:
    with pytest.raises(GfalCopyTimeoutError, match="timed out") as raised:
        _copy(
            stack,
            gfal2_image,
            work_dir,
            stack.get(OLD),
            stack.get(NEW),
            "pull",
            timeout=0.2,
        )
    assert raised.value.result.exit_code is None
    assert raised.value.result.timed_out
    assert list(work_dir.iterdir()) == []
    assert _gfal2_containers(stack.client, stack.run.run_id) == []


@pytest.mark.docker
@pytest.mark.parametrize("mode", ["pull", "push"])
def test_copy_with_client_for_tpc_scenario(
    stack: Stack, gfal2_image: str, mode: str
) -> None:
    implementation = Implementation(
        name="gfal2",
        version="2.21.3",
        role=Role.CLIENT,
        image=ImageSpec("gfal2"),
        driver="gfal2",
        description="gfal2 client",
    )
    tool = ClientTool(implementation, gfal2_image, "2.21.3")
    source, destination = stack.get(OLD), stack.get(NEW)
    directory = f"/gfal2-client-{mode}-{secrets.token_hex(4)}"
    content = os.urandom(FILE_SIZE)
    source_url = _upload(stack, source, f"{directory}/source-file", content)
    _mkdir(stack, destination, directory)
    source_token = _token(stack, f"storage.read:{directory}/source-file", source)
    destination_token = _token(stack, f"storage.create:{directory}", destination)

    copy = copy_with_client(
        stack,
        tool,
        mode,
        source_url,
        f"{destination.url}/data{directory}/file",
        source_token,
        destination_token,
    )
    assert copy.claims_success, copy.body_excerpt
    assert copy.status in (201, 202)
    receiver = destination if mode == "pull" else source
    assert copy.request["url"].startswith(receiver.url)
    assert copy.request["command"].startswith(f"testbed-gfal-copy --copy-mode {mode}")
    assert copy.request["client"] == "gfal2 2.21.3"
    copied = _sha256_at(stack, destination, f"{directory}/file")
    assert copied == hashlib.sha256(content).hexdigest()
    assert list((stack.run.run_dir / "clients").iterdir()) == []

"""HTTP copies between storage endpoints with the gfal2 client (``containers/gfal2``).

Each copy runs gfal-copy in a short-lived container of its own on host networking.
The source and destination tokens go into files of a per-copy directory (mode
0700, files 0600) mounted at ``/testbed``, so no token appears on a command line
or in the container's configuration. The image's ``testbed-gfal-copy`` registers
each token for its own URL in gfal2's credential map. gfal2's HTTP plugin then
sends the source token to the source and the destination token to the
destination: in a pull copy the destination receives the COPY request with its
own token in ``Authorization`` and the source token in
``TransferHeaderAuthorization``, and a push copy is the other way round.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import socket
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from testbed import engine
from testbed.ca import write_private_file
from testbed.errors import RequestError, ServiceStartError, UsageError
from testbed.tokens import redact_authorization
from testbed.tpc import CopyResult, parse_markers

__all__ = [
    "COPY_MODES",
    "CopyExchange",
    "GfalCopyResult",
    "GfalCopyTimeoutError",
    "gfal_copy_command",
    "parse_copy_exchange",
    "run_gfal_copy",
    "to_copy_result",
]

logger = logging.getLogger(__name__)

COPY_MODES = ("pull", "push", "streamed")
# Characters kept from the end of each output stream. With -vv gfal-copy logs
# every request's headers, and the COPY exchange comes last.
OUTPUT_EXCERPT_CHARS = 8000
# Characters of gfal-copy's output in the evidence of a copy cell.
EVIDENCE_EXCERPT_CHARS = 2000
MOUNT_POINT = "/testbed"
VERSION_FILE = "/etc/testbed-version"
LAUNCHER = "testbed-gfal-copy"
URL_SCHEMES = ("https", "davs")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# A bearer credential in a header that gfal2 or davix might print.
BEARER_VALUE = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# davix at gfal-copy -vv: "INFO Davix: > COPY /path HTTP/1.1", then the response
# as "INFO Davix: < HTTP/1.1 202 Accepted", then the streamed body.
COPY_REQUEST = re.compile(r"^INFO Davix: > COPY \S+", re.MULTILINE)
RESPONSE_STATUS = re.compile(r"^INFO Davix: < HTTP/\d(?:\.\d)? (\d{3})", re.MULTILINE)
FINAL_LINE = re.compile(r"^(?:success|failure)\b.*$", re.MULTILINE)

# Versions read from each image's /etc/testbed-version, by image tag. A tag ends
# in the hash of its build context, so its version never changes.
_versions: dict[str, str] = {}


@dataclass(frozen=True)
class CopyExchange:
    """The COPY request that gfal2 sent, as its -vv log shows it."""

    status: int | None
    # The server's last body line, "success: ..." or "failure: ...", or "".
    final_line: str
    markers: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class GfalCopyResult:
    """The outcome of one gfal-copy run, with tokens redacted from the output."""

    mode: str
    source: str
    destination: str
    # The container's command, which names no secret.
    command: list[str]
    # None when the copy timed out and the container was killed.
    exit_code: int | None
    stdout: str
    stderr: str
    # Seconds from creating the container to its exit, container start included.
    duration: float
    gfal2_version: str
    # None when gfal2 sent no COPY request (streamed mode, or it failed before).
    exchange: CopyExchange | None = None
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    @property
    def error_line(self) -> str:
        """Return gfal-copy's last error line ("gfal-copy error: ..."), or ""."""
        lines = [
            line.strip()
            for line in self.stderr.splitlines()
            if line.startswith("gfal-copy error") or "Traceback" in line
        ]
        return lines[-1] if lines else ""


class GfalCopyTimeoutError(RequestError):
    """gfal-copy did not finish in time. ``result`` contains the output until then."""

    def __init__(self, result: GfalCopyResult, timeout: float) -> None:
        output = result.stderr.strip() or result.stdout.strip()
        tail = "\n".join(output.splitlines()[-20:])
        super().__init__(
            f"gfal-copy {result.mode} {result.source} -> {result.destination} timed "
            f"out after {timeout:.0f} s; the container was killed\n"
            f"--- last lines of the output ---\n{tail}"
        )
        self.result = result


def _check_url(url: str, role: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise UsageError(
            f"invalid {role} URL {url!r}: the scheme must be one of "
            f"{', '.join(URL_SCHEMES)}"
        )
    if parts.hostname not in LOOPBACK_HOSTS:
        raise UsageError(
            f"invalid {role} URL {url!r}: the testbed copies only between services "
            f"on loopback ({', '.join(LOOPBACK_HOSTS)})"
        )


def gfal_copy_command(
    source: str,
    destination: str,
    mode: str,
    timeout: float,
    create_parent: bool = False,
    just_copy: bool = False,
) -> list[str]:
    """Build the container command for one copy in ``mode``, without any secret.

    ``--copy-mode pull`` or ``push`` makes gfal-copy disable the fallback to the
    other third-party mode, and ``ENABLE_STREAM_COPY=false`` removes the fallback
    to a streamed copy, so a failed third-party copy fails the command.
    ``RETRIEVE_BEARER_TOKEN=false`` stops gfal2 from asking the storage for a
    token of its own (a macaroon) when no token matches a URL. ``just_copy``
    skips gfal-copy's preparation: the checksum, the stat of the destination that
    checks for overwriting, and the parent directory.
    """
    if mode not in COPY_MODES:
        raise UsageError(
            f"invalid copy mode {mode!r}; use one of {', '.join(COPY_MODES)}"
        )
    _check_url(source, "source")
    _check_url(destination, "destination")
    # gfal-copy takes whole seconds, and it would read 0 as "no timeout".
    seconds = str(max(1, math.ceil(timeout)))
    command = [
        LAUNCHER,
        "--copy-mode", mode,
        "--timeout", seconds,
        "--transfer-timeout", seconds,
        "--definition", "HTTP PLUGIN:RETRIEVE_BEARER_TOKEN=false",
    ]  # fmt: skip
    if mode != "streamed":
        command += ["--definition", "HTTP PLUGIN:ENABLE_STREAM_COPY=false"]
    if create_parent:
        command.append("--parent")
    if just_copy:
        command.append("--just-copy")
    # -vv logs at INFO level: each request's headers, with davix masking the
    # Authorization and TransferHeaderAuthorization values.
    command += ["-vv", source, destination]
    return command


def parse_copy_exchange(output: str) -> CopyExchange | None:
    """Find the last COPY request in gfal-copy's -vv output and read its reply."""
    requests_sent = list(COPY_REQUEST.finditer(output))
    if not requests_sent:
        return None
    exchange = output[requests_sent[-1].start() :]
    status = RESPONSE_STATUS.search(exchange)
    finals = FINAL_LINE.findall(exchange)
    return CopyExchange(
        status=int(status.group(1)) if status else None,
        final_line=finals[-1].strip() if finals else "",
        markers=parse_markers(exchange.splitlines()),
    )


def _write_copy_files(
    copy_dir: Path,
    ca_file: Path,
    source: str,
    destination: str,
    source_token: str,
    destination_token: str,
) -> None:
    copy_dir.mkdir(mode=0o700, parents=True)
    copy_dir.chmod(0o700)
    shutil.copyfile(ca_file, copy_dir / "ca.pem")
    write_private_file(copy_dir / "source.token", source_token.encode() + b"\n")
    write_private_file(
        copy_dir / "destination.token", destination_token.encode() + b"\n"
    )
    # The format that containers/gfal2/testbed-gfal-copy.py reads.
    credentials = {
        "bearer": [
            {"url_prefix": source, "token_file": "source.token"},
            {"url_prefix": destination, "token_file": "destination.token"},
        ]
    }
    write_private_file(
        copy_dir / "credentials.json", json.dumps(credentials, indent=2).encode()
    )


def _redact(text: str, tokens: tuple[str, ...]) -> str:
    for token in tokens:
        if token:
            text = text.replace(token, "<redacted>")
    return BEARER_VALUE.sub(r"\1<redacted>", text)


def _excerpt(text: str) -> str:
    if len(text) <= OUTPUT_EXCERPT_CHARS:
        return text
    return "[... output truncated ...]\n" + text[-OUTPUT_EXCERPT_CHARS:]


def _read_version(container: Container, image: str) -> str:
    """Read /etc/testbed-version from the created (not yet started) container."""
    if image in _versions:
        return _versions[image]
    try:
        stream, _ = container.get_archive(VERSION_FILE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(VERSION_FILE.rsplit("/", 1)[1])
            version = member.read().decode().strip() if member else ""
    except (docker.errors.DockerException, tarfile.TarError, KeyError) as exc:
        logger.warning("cannot read %s from image %s: %s", VERSION_FILE, image, exc)
        return "unknown"
    _versions[image] = version or "unknown"
    return _versions[image]


def _container_name(labels: Mapping[str, str]) -> str:
    run_id = labels.get(engine.LABEL_RUN)
    suffix = secrets.token_hex(3)
    return f"testbed-{run_id}-gfal2-{suffix}" if run_id else f"testbed-gfal2-{suffix}"


def _wait(container: Container, timeout: float) -> int | None:
    """Return the container's exit code, or None if it still runs after ``timeout``."""
    try:
        status = container.wait(timeout=timeout)
    except requests.exceptions.ReadTimeout:
        return None
    except requests.exceptions.ConnectionError as exc:
        # docker-py reports a read timeout on its Unix socket as ConnectionError.
        if "timed out" in str(exc).lower():
            return None
        raise RequestError(
            f"lost the connection to the Docker engine while waiting for "
            f"container {container.name}: {exc}"
        ) from exc
    return int(status.get("StatusCode", -1))


def _kill(container: Container) -> None:
    try:
        container.kill()
    except docker.errors.DockerException as exc:
        logger.warning("cannot kill container %s: %s", container.name, exc)


def _logs(container: Container, tokens: tuple[str, ...]) -> tuple[str, str]:
    """Return the container's stdout and stderr with ``tokens`` redacted."""
    try:
        stdout = bytes(container.logs(stdout=True, stderr=False))
        stderr = bytes(container.logs(stdout=False, stderr=True))
    except docker.errors.DockerException as exc:
        return "", f"<log unavailable: {exc}>"
    return (
        _redact(stdout.decode(errors="replace"), tokens),
        _redact(stderr.decode(errors="replace"), tokens),
    )


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as exc:
        logger.warning("cannot remove container %s: %s", container.name, exc)


def run_gfal_copy(
    client: docker.DockerClient,
    image: str,
    ca_file: Path,
    source: str,
    destination: str,
    source_token: str,
    destination_token: str,
    mode: str,
    timeout: float,
    work_dir: Path,
    labels: Mapping[str, str] | None = None,
    create_parent: bool = False,
    just_copy: bool = False,
) -> GfalCopyResult:
    """Copy ``source`` to ``destination`` with gfal-copy in ``mode`` and wait for it.

    ``source_token`` is sent only for the source URL and ``destination_token``
    only for the destination URL. ``timeout`` (seconds) covers the container's
    start and the copy. Past it the container is killed, and GfalCopyTimeoutError
    carries the output so far. The container is always removed, and so is the
    per-copy directory under ``work_dir`` with the token files. ``labels`` are
    added to the testbed's own labels (engine.LABEL_*), so pass LABEL_RUN and
    LABEL_MODE for ``testbed down`` to find a container that a crash left.
    """
    command = gfal_copy_command(
        source, destination, mode, timeout, create_parent, just_copy
    )
    container_labels = {
        engine.LABEL_MANAGED: "true",
        engine.LABEL_MODE: "run",
        engine.LABEL_PID: str(os.getpid()),
        engine.LABEL_HOST: socket.gethostname(),
        engine.LABEL_IMPLEMENTATION: "gfal2",
        **(labels or {}),
    }
    name = _container_name(container_labels)
    copy_dir = work_dir / name
    tokens = (source_token, destination_token)
    _write_copy_files(
        copy_dir, ca_file, source, destination, source_token, destination_token
    )
    container: Container | None = None
    try:
        started = time.monotonic()
        try:
            container = client.containers.create(
                image,
                command=command,
                name=name,
                labels=container_labels,
                network_mode="host",
                volumes={str(copy_dir): {"bind": MOUNT_POINT, "mode": "ro"}},
            )
            version = _read_version(container, image)
            container.start()
        except docker.errors.DockerException as exc:
            raise ServiceStartError(
                f"cannot start gfal-copy container {name} from {image}: {exc}"
            ) from exc
        logger.info(
            "started %s: gfal-copy %s %s -> %s", name, mode, source, destination
        )
        exit_code = _wait(container, max(0.1, started + timeout - time.monotonic()))
        if exit_code is None:
            _kill(container)
        duration = time.monotonic() - started
        stdout, stderr = _logs(container, tokens)
    finally:
        if container is not None:
            _remove(container)
        shutil.rmtree(copy_dir, ignore_errors=True)

    result = GfalCopyResult(
        mode=mode,
        source=source,
        destination=destination,
        command=command,
        exit_code=exit_code,
        stdout=_excerpt(stdout),
        stderr=_excerpt(stderr),
        duration=duration,
        gfal2_version=version,
        exchange=parse_copy_exchange(stdout),
        timed_out=exit_code is None,
    )
    if result.timed_out:
        logger.error("%s timed out after %.1f s and was killed", name, duration)
        raise GfalCopyTimeoutError(result, timeout)
    logger.info("%s exited with code %s after %.1f s", name, exit_code, duration)
    return result


def to_copy_result(
    result: GfalCopyResult, source_token: str, destination_token: str
) -> CopyResult:
    """Describe a gfal-copy run as the CopyResult of the tpc scenario.

    The status and final line are the COPY response's, as gfal2 logged them. When
    gfal2 sent no COPY request, the status is None and the final line is
    gfal-copy's error message.
    """
    exchange = result.exchange
    final_line = exchange.final_line if exchange else ""
    if not final_line:
        final_line = result.error_line or f"gfal-copy exit code {result.exit_code}"
    request: dict[str, Any] = {
        "method": "COPY",
        "headers": {},
        "client": f"gfal2 {result.gfal2_version}",
        "command": result.command_line,
        "exit_code": result.exit_code,
    }
    # The active endpoint receives COPY with its own token in Authorization.
    if result.mode == "pull":
        own, other = destination_token, source_token
        request["url"] = result.destination
        request["headers"]["Source"] = result.source
    elif result.mode == "push":
        own, other = source_token, destination_token
        request["url"] = result.source
        request["headers"]["Destination"] = result.destination
    if result.mode in ("pull", "push"):
        request["headers"]["Authorization"] = redact_authorization(f"Bearer {own}")
        request["headers"]["TransferHeaderAuthorization"] = redact_authorization(
            f"Bearer {other}"
        )
    else:
        # A streamed copy is a GET from the source and a PUT to the destination.
        request["method"] = "GET+PUT"
        request["url"] = result.destination
    output = f"{result.stdout}\n--- stderr ---\n{result.stderr}"
    return CopyResult(
        status=exchange.status if exchange else None,
        final_line=final_line[:300],
        markers=exchange.markers if exchange else [],
        body_excerpt=output[-EVIDENCE_EXCERPT_CHARS:],
        duration=round(result.duration, 3),
        request=request,
    )

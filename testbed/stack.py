"""A stack: the issuer and the services of one run, started together.

Images build first (two at a time), then every container starts at once; the
issuer's readiness is awaited before the others' because their readiness checks
need tokens. A service that fails keeps its error, which every cell that needs it
reports, and the rest of the stack goes on.
"""

from __future__ import annotations

import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker
import docker.errors
import httpx

from testbed import engine
from testbed.errors import ConfigurationError, ServiceStartError, TestbedError
from testbed.httpclient import make_client
from testbed.images import ImageBuilder
from testbed.implementations import Implementation, Role
from testbed.issuer_client import IssuerClient
from testbed.run_context import RunContext
from testbed.services.base import ServiceContainer
from testbed.services.reference_issuer import ReferenceIssuerDriver
from testbed.services.xrootd import XRootDDriver
from testbed.tpc import CopyResult

__all__ = ["Service", "Stack"]

logger = logging.getLogger(__name__)


class Driver(Protocol):
    def configure(self, run: RunContext, config_dir: Any) -> dict[str, Any]: ...


def _driver(impl: Implementation) -> Any:
    if impl.driver == "reference-issuer":
        return ReferenceIssuerDriver()
    if impl.driver == "xrootd":
        return XRootDDriver(impl.version)
    raise ConfigurationError(
        f"implementation {impl.key} names unknown driver {impl.driver!r}"
    )


@dataclass
class Service:
    """A started service: its implementation, container, endpoints and HTTP client."""

    implementation: Implementation
    container: ServiceContainer
    endpoints: dict[str, Any]
    http: httpx.Client
    version: str
    image: str

    @property
    def key(self) -> str:
        return self.implementation.key

    @property
    def url(self) -> str:
        return str(self.endpoints["url"])


@dataclass(frozen=True)
class ClientTool:
    """A client tool that runs in a short-lived container for each use."""

    implementation: Implementation
    image: str
    version: str

    @property
    def key(self) -> str:
        return self.implementation.key


@dataclass
class Stack:
    """Builds, starts and stops the services of one run."""

    client: docker.DockerClient
    run: RunContext
    implementations: list[Implementation]
    mode: str = "run"
    services: dict[str, Service] = field(default_factory=dict)
    failures: dict[str, TestbedError] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    issuer: IssuerClient | None = None
    clients: dict[str, ClientTool] = field(default_factory=dict)
    _containers: list[ServiceContainer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        issuers = [i for i in self.implementations if i.role is Role.ISSUER]
        if len(issuers) != 1:
            raise ConfigurationError(
                f"a stack needs exactly one issuer, got {len(issuers)}; "
                "add reference-issuer to --implementations"
            )
        self.issuer_impl = issuers[0]

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, key: str) -> Service:
        """Return the started service ``key`` or raise the error that stopped it."""
        if key in self.failures:
            raise self.failures[key]
        if key not in self.services:
            raise ConfigurationError(f"{key} is not part of this stack")
        return self.services[key]

    def _fail(self, impl: Implementation, exc: TestbedError) -> None:
        logger.error("%s failed: %s", impl.key, str(exc).splitlines()[0])
        with self._lock:
            self.failures[impl.key] = exc

    def start(self) -> None:
        """Build images, start every container and wait for readiness."""
        builder = ImageBuilder(self.client)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="build") as pool:
            builds = {
                impl.key: pool.submit(builder.build, impl.image)
                for impl in self.implementations
            }
            for impl in self.implementations:
                try:
                    self.images[impl.key] = builds[impl.key].result()
                except TestbedError as exc:
                    self._fail(impl, exc)

        self._register_clients()
        ca = self.run.ca()
        services = [i for i in self.implementations if i.role is not Role.CLIENT]
        drivers = {impl.key: _driver(impl) for impl in services}
        prepared: dict[str, tuple[ServiceContainer, dict[str, Any]]] = {}
        for impl in services:
            if impl.key in self.failures:
                continue
            config_dir = self.run.service_dir(impl.key)
            if config_dir.exists():
                shutil.rmtree(config_dir)
            config_dir.mkdir(parents=True)
            shutil.copy(self.run.ca_file, config_dir / "ca.pem")
            ca.issue_server_certificate(config_dir / "tls")
            endpoints = drivers[impl.key].configure(self.run, config_dir)
            container = ServiceContainer(
                impl.key, self.images[impl.key], self.run.run_id, self.mode, config_dir
            )
            prepared[impl.key] = (container, endpoints)
            self._containers.append(container)

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="start") as pool:
            started: dict[str, Future[None]] = {
                key: pool.submit(container.start)
                for key, (container, _) in prepared.items()
            }
            for impl in services:
                if impl.key in started:
                    try:
                        started[impl.key].result()
                    except TestbedError as exc:
                        self._fail(impl, exc)

        self._wait_issuer(drivers, prepared)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="ready") as pool:
            waits = {
                impl.key: pool.submit(
                    self._wait_service, impl, drivers[impl.key], prepared
                )
                for impl in services
                if impl.role is not Role.ISSUER and impl.key in prepared
                and impl.key not in self.failures
            }  # fmt: skip
            for future in waits.values():
                future.result()
        self.run.endpoints = {
            key: service.endpoints for key, service in self.services.items()
        }
        self.run.save()

    def _register_clients(self) -> None:
        """Record each client tool's image and installed version."""
        for impl in self.implementations:
            if impl.role is not Role.CLIENT or impl.key in self.failures:
                continue
            image = self.images[impl.key]
            try:
                output = self.client.containers.run(
                    image, entrypoint=["cat", "/etc/testbed-version"], remove=True
                )
            except docker.errors.DockerException as exc:
                self._fail(impl, ServiceStartError(f"cannot run {image}: {exc}"))
                continue
            version = bytes(output).decode().strip() or impl.version
            self.clients[impl.name] = ClientTool(impl, image, version)
            logger.info("client %s is %s %s", impl.key, impl.name, version)

    def client_copy(
        self,
        name: str,
        mode: str,
        source_url: str,
        destination_url: str,
        source_token: str,
        destination_token: str,
    ) -> CopyResult:
        """Run a third-party copy with the client tool ``name`` (gfal2)."""
        if name not in self.clients:
            raise ConfigurationError(
                f"no client {name!r} in this stack; add it to --implementations"
            )
        from testbed.clients import copy_with_client

        return copy_with_client(
            self,
            self.clients[name],
            mode,
            source_url,
            destination_url,
            source_token,
            destination_token,
        )

    def _wait_issuer(self, drivers: dict[str, Any], prepared: dict[str, Any]) -> None:
        impl = self.issuer_impl
        if impl.key in self.failures:
            self._fail_dependents(impl)
            return
        container, endpoints = prepared[impl.key]
        try:
            drivers[impl.key].wait_ready(container, self.run)
        except TestbedError as exc:
            self._fail(impl, exc)
            self._fail_dependents(impl)
            return
        self.issuer = IssuerClient(
            self.run.issuer_url,
            self.run.ca_file,
            self.run.mint_credential,
            self.run.clients,
        )
        self.services[impl.key] = self._service(impl, container, endpoints)

    def _fail_dependents(self, issuer: Implementation) -> None:
        for impl in self.implementations:
            if impl is not issuer and impl.key not in self.failures:
                self._fail(
                    impl,
                    ServiceStartError(
                        f"{impl.key} cannot run because issuer {issuer.key} failed: "
                        f"{str(self.failures[issuer.key]).splitlines()[0]}"
                    ),
                )

    def _wait_service(
        self, impl: Implementation, driver: Any, prepared: dict[str, Any]
    ) -> None:
        container, endpoints = prepared[impl.key]
        try:
            driver.wait_ready(container, self.run, self.issuer)
            service = self._service(impl, container, endpoints)
        except TestbedError as exc:
            self._fail(impl, exc)
            return
        with self._lock:
            self.services[impl.key] = service

    def _service(
        self,
        impl: Implementation,
        container: ServiceContainer,
        endpoints: dict[str, Any],
    ) -> Service:
        version = impl.version
        try:
            exit_code, output = container.docker_container.exec_run(
                ["cat", "/etc/testbed-version"]
            )
            if exit_code == 0 and output.strip():
                version = output.decode().strip()
        except docker.errors.DockerException as exc:
            logger.debug("cannot read the version of %s: %s", impl.key, exc)
        if version != impl.version:
            logger.warning(
                "%s: the image contains version %s; results record that version",
                impl.key,
                version,
            )
        http = make_client(self.run.ca_file)
        return Service(impl, container, endpoints, http, version, self.images[impl.key])

    def stop(self) -> None:
        """Stop every container of the stack and close the HTTP clients."""
        for service in self.services.values():
            service.http.close()
        if self.issuer is not None:
            self.issuer.close()
        for container in self._containers:
            container.stop()
        try:
            engine.remove_containers(self.client, run_id=self.run.run_id)
        except docker.errors.DockerException as exc:
            logger.warning("cannot list containers of run %s: %s", self.run.run_id, exc)

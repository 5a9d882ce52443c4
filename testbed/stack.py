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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
from testbed.services.exec_validator import ExecValidatorDriver
from testbed.services.reference_issuer import ReferenceIssuerDriver
from testbed.services.xrootd import XRootDDriver
from testbed.tpc import CopyResult

__all__ = ["Service", "Stack"]

logger = logging.getLogger(__name__)

# Seconds a health probe of a service may take after one of its cells failed.
HEALTH_TIMEOUT = 3.0


def run_parallel(
    tasks: Mapping[str, Callable[[], Any]], limit: int, name: str
) -> dict[str, Any]:
    """Run ``tasks`` in daemon threads, at most ``limit`` at once.

    Returns each task's result or the exception it raised. The caller's thread
    joins with a short timeout, so Ctrl-C reaches it while the tasks run, and an
    interpreter that exits does not wait for them.
    """
    results: dict[str, Any] = {}
    slots = threading.Semaphore(limit)

    def work(key: str, task: Callable[[], Any]) -> None:
        with slots:
            try:
                results[key] = task()
            except BaseException as exc:  # handed to the caller
                results[key] = exc

    threads = [
        threading.Thread(
            target=work, args=(key, task), name=f"{name}-{key}", daemon=True
        )
        for key, task in tasks.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    return results


def _driver(impl: Implementation) -> Any:
    if impl.driver == "reference-issuer":
        return ReferenceIssuerDriver()
    if impl.driver == "xrootd":
        return XRootDDriver(impl.version)
    if impl.role is Role.VALIDATOR:
        return ExecValidatorDriver()
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
        return str(self.endpoints.get("url", f"container {self.container.name}"))


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
    in_process: dict[str, Implementation] = field(default_factory=dict)
    _validators: dict[str, Any] = field(default_factory=dict)
    _containers: list[ServiceContainer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: threading.Event = field(default_factory=threading.Event)

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

    def implementation(self, key: str) -> Implementation:
        """Return the implementation ``key`` of this stack."""
        for impl in self.implementations:
            if impl.key == key:
                return impl
        raise ConfigurationError(f"{key} is not part of this stack")

    def reference_validator(self, key: str) -> Any:
        """Return the in-process reference validator, trusting this stack's issuer."""
        if key not in self.in_process:
            raise ConfigurationError(f"{key} is not part of this stack")
        if key not in self._validators:
            from testbed.validators.reference import ReferenceValidator

            self._validators[key] = ReferenceValidator(
                key, self.run.ca_file, [self.run.issuer_url]
            )
        return self._validators[key]

    def health_problem(self, key: str) -> str | None:
        """Return why service ``key`` is unusable, or None when it responds."""
        service = self.services.get(key)
        if service is None:
            return None
        exited = service.container.exit_reason()
        if exited:
            return exited
        if "url" not in service.endpoints:
            return None
        try:
            service.http.get(service.url + "/", timeout=HEALTH_TIMEOUT)
        except httpx.HTTPError as exc:
            return f"stopped answering: {type(exc).__name__}: {exc}"
        return None

    def mark_failed(self, key: str, problem: str) -> None:
        """Fail the remaining cells of ``key`` at once instead of waiting for it."""
        with self._lock:
            if key not in self.failures:
                logger.error("%s failed during the run: %s", key, problem)
                self.failures[key] = ServiceStartError(
                    f"{key} failed during the run: {problem}",
                    self.services[key].container.log_tail(),
                )

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
        """Build images, start every container and wait for readiness.

        An interrupt cancels the readiness waits at once; builds that are under
        way finish in the background, because the Docker API cannot cancel them.
        """
        try:
            self._start()
        except BaseException:
            self.cancelled.set()
            raise

    def _start(self) -> None:
        builder = ImageBuilder(self.client)
        builds = run_parallel(
            {
                impl.key: partial(builder.build, impl.image)
                for impl in self.implementations
                if impl.image is not None
            },
            limit=2,
            name="build",
        )
        for impl in self.implementations:
            if impl.image is None:
                self.in_process[impl.key] = impl
                continue
            outcome = builds[impl.key]
            if isinstance(outcome, TestbedError):
                self._fail(impl, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                self.images[impl.key] = outcome

        self._register_clients()
        ca = self.run.ca()
        services = [
            i
            for i in self.implementations
            if i.role is not Role.CLIENT and i.image is not None
        ]
        drivers = {impl.key: _driver(impl) for impl in services}
        prepared: dict[str, tuple[ServiceContainer, dict[str, Any]]] = {}
        for impl in services:
            if impl.key in self.failures:
                continue
            config_dir = self.run.service_dir(impl.key)
            if config_dir.exists():
                shutil.rmtree(config_dir)
            config_dir.mkdir(parents=True, mode=0o700)
            shutil.copy(self.run.ca_file, config_dir / "ca.pem")
            ca.issue_server_certificate(config_dir / "tls")
            endpoints = drivers[impl.key].configure(self.run, config_dir)
            container = ServiceContainer(
                impl.key,
                self.images[impl.key],
                self.run.run_id,
                self.mode,
                config_dir,
                cancelled=self.cancelled,
            )
            prepared[impl.key] = (container, endpoints)
            self._containers.append(container)

        started = run_parallel(
            {key: container.start for key, (container, _) in prepared.items()},
            limit=8,
            name="start",
        )
        for impl in services:
            outcome = started.get(impl.key)
            if isinstance(outcome, TestbedError):
                self._fail(impl, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

        self._wait_issuer(drivers, prepared)
        waits = {
            impl.key: partial(self._wait_service, impl, drivers[impl.key], prepared)
            for impl in services
            if impl.role is not Role.ISSUER and impl.key in prepared
            and impl.key not in self.failures
        }  # fmt: skip
        for outcome in run_parallel(waits, limit=8, name="ready").values():
            if isinstance(outcome, BaseException):
                raise outcome
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
        for validator in self._validators.values():
            validator.close()
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

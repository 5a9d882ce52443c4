"""Driver of XRootD storage (``containers/xrootd``): XrdHttp with the SciTokens plugin.

The storage exports ``/data``. Tokens from the reference issuer map to it through the
SciTokens plugin's ``base_path``, so a scope path ``/x`` authorises ``/data/x``.
"""

from __future__ import annotations

import logging
import string
import time
from pathlib import Path
from typing import Any

import httpx

from testbed.errors import ConfigurationError, TokenError
from testbed.httpclient import make_client
from testbed.images import CONTAINERS_DIR
from testbed.issuer_client import IssuerClient
from testbed.profiles import get_profile
from testbed.run_context import RunContext
from testbed.services.base import ServiceContainer, free_port

__all__ = ["BASE_PATH", "XRootDDriver"]

logger = logging.getLogger(__name__)

TEMPLATES = CONTAINERS_DIR / "xrootd"
BASE_PATH = "/data"
LOCAL_USER = "xrootd"
READY_TIMEOUT = 90.0


def render_template(name: str, values: dict[str, Any]) -> str:
    """Fill the template ``containers/xrootd/<name>`` with ``values``."""
    path = TEMPLATES / name
    try:
        return string.Template(path.read_text(encoding="utf-8")).substitute(values)
    except KeyError as exc:
        raise ConfigurationError(f"{path}: no value for placeholder {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: cannot render: {exc}") from exc


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return 0


class XRootDDriver:
    """Renders XRootD's configuration and waits for an authorised upload to succeed."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.http_port = free_port()
        self.xrootd_port = free_port()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.http_port}"

    def configure(self, run: RunContext, config_dir: Path) -> dict[str, Any]:
        """Write ``xrootd.cfg`` and ``scitokens.cfg`` into ``config_dir``."""
        issuer = render_template(
            "issuer.cfg.in",
            {
                "name": "reference",
                "issuer_url": run.issuer_url,
                "base_path": BASE_PATH,
                "default_user": LOCAL_USER,
            },
        )
        scitokens = render_template(
            "scitokens.cfg.in", {"audience": self.url, "issuers": issuer}
        )
        # XRootD 6 refuses third-party copies to loopback addresses unless allowed.
        tpc = "tpc.allow local" if _major(self.version) >= 6 else ""
        xrootd = render_template(
            "xrootd.cfg.in",
            {
                "xrootd_port": self.xrootd_port,
                "http_port": self.http_port,
                "tpc_directives": tpc,
            },
        )
        (config_dir / "scitokens.cfg").write_text(scitokens, encoding="utf-8")
        (config_dir / "xrootd.cfg").write_text(xrootd, encoding="utf-8")
        return {
            "url": self.url,
            "audience": self.url,
            "base_path": BASE_PATH,
            "http_port": self.http_port,
            "xrootd_port": self.xrootd_port,
        }

    def wait_ready(
        self, container: ServiceContainer, run: RunContext, issuer: IssuerClient | None
    ) -> None:
        """Wait until an upload with a storage.create token succeeds."""
        if issuer is None:
            raise ConfigurationError(
                "XRootD needs a running issuer for its readiness check"
            )
        profile = get_profile("wlcg-1.0")
        scope = profile.scope("create", "/") + " " + profile.scope("read", "/")
        claims = profile.baseline_claims(run.issuer_url, self.url, scope, lifetime=600)
        header = {"alg": "RS256", "kid": run.kids["rs256"]}
        try:
            token = issuer.mint(header, claims)
        except TokenError as exc:
            raise ConfigurationError(f"cannot mint the readiness token: {exc}") from exc
        target = f"{self.url}{BASE_PATH}/.testbed-ready-{int(time.time() * 1000)}"

        with make_client(run.ca_file, timeout=3.0) as http:

            def probe() -> str | None:
                try:
                    response = http.put(
                        target,
                        content=b"ready\n",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.HTTPError as exc:
                    return f"{type(exc).__name__}: {exc}"
                if response.status_code >= 300:
                    return f"PUT {target} returned {response.status_code}"
                return None

            container.wait(probe, READY_TIMEOUT, f"authorised upload to {self.url}")

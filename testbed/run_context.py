"""Per-run state: id, CA, issuer address, client secrets and the minting credential.

Secrets stay in the run directory (mode 0700, files 0600) and in memory; nothing
here is logged.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.ca import CertificateAuthority, write_private_file
from testbed.errors import ConfigurationError
from testbed.profiles import load_profiles
from testbed.services.base import free_port

__all__ = ["RunContext", "new_run_id"]

logger = logging.getLogger(__name__)

CONTEXT_FILE = "context.json"


def new_run_id() -> str:
    """Return a short id that sorts by start time: ``<seconds>-<random>``."""
    return f"{int(time.time()):x}-{secrets.token_hex(3)}"


@dataclass
class RunContext:
    """What every service of one run shares."""

    run_id: str
    run_dir: Path
    issuer_port: int
    mint_credential: str
    clients: dict[str, tuple[str, str]]
    kids: dict[str, str]
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def issuer_url(self) -> str:
        return f"https://localhost:{self.issuer_port}"

    @property
    def ca_dir(self) -> Path:
        return self.run_dir / "ca"

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / "ca.pem"

    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.ca_dir)

    def service_dir(self, key: str) -> Path:
        return self.run_dir / "services" / key.replace("@", "-")

    @classmethod
    def create(cls, run_dir: Path, run_id: str | None = None) -> RunContext:
        """Make a new run directory with a fresh CA, client secrets and key ids."""
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        CertificateAuthority.create(run_dir / "ca")
        clients = {
            name: (f"{name}-client", secrets.token_urlsafe(24))
            for name in load_profiles()
        }
        context = cls(
            run_id=run_id or new_run_id(),
            run_dir=run_dir,
            issuer_port=free_port(),
            mint_credential=secrets.token_urlsafe(32),
            clients=clients,
            kids={
                "rs256": f"rs256-{secrets.token_hex(4)}",
                "es256": f"es256-{secrets.token_hex(4)}",
                "unpublished": f"unpublished-{secrets.token_hex(4)}",
            },
        )
        context.save()
        logger.info("run %s: state in %s", context.run_id, run_dir)
        return context

    def save(self) -> None:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        write_private_file(
            self.run_dir / CONTEXT_FILE, json.dumps(data, indent=2).encode()
        )

    @classmethod
    def load(cls, run_dir: Path) -> RunContext:
        """Load the context of a stack that ``testbed up`` started."""
        path = run_dir / CONTEXT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(
                f"no running stack: {path} does not exist; start one with 'testbed up'"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {path}: {exc}") from exc
        try:
            data["run_dir"] = Path(data["run_dir"])
            data["clients"] = {k: tuple(v) for k, v in data["clients"].items()}
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"{path} is incomplete or invalid ({type(exc).__name__}: {exc}); "
                "run 'testbed down' and start the stack again"
            ) from exc

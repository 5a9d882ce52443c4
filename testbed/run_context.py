"""Per-run state: id, CA, issuer address, client secrets and the minting credential.

Secrets stay in the run directory (mode 0700, files 0600) and in memory; nothing
here is logged.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.ca import CertificateAuthority, write_private_file
from testbed.engine import process_alive
from testbed.errors import ConfigurationError
from testbed.profiles import load_profiles
from testbed.services.base import free_port

__all__ = ["RunContext", "new_run_id"]

logger = logging.getLogger(__name__)

CONTEXT_FILE = "context.json"


OWNER_FILE = "owner"


def runs_root() -> Path:
    """Return the folder that contains this user's run folders."""
    return Path(tempfile.gettempdir()) / f"testbed-runs-{os.getuid()}"


def new_run_dir(run_id: str) -> Path:
    """Create a private run folder that records its owner process."""
    root = runs_root()
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    directory = root / run_id
    directory.mkdir(mode=0o700)
    (directory / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    return directory


def sweep_run_dirs() -> list[Path]:
    """Delete run folders whose owner process on this host no longer exists.

    A runner killed with SIGKILL cannot delete its folder, which contains the run's
    CA key, signing keys and client secrets; the next run removes it.
    """
    removed: list[Path] = []
    root = runs_root()
    if not root.is_dir():
        return removed
    for directory in root.iterdir():
        try:
            pid_text, host = (directory / OWNER_FILE).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if host != socket.gethostname() or process_alive(pid):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
        logger.info("removed the run folder %s of ended process %d", directory, pid)
    return removed


def new_run_id() -> str:
    """Return a short id that sorts by start time: ``<seconds>-<random>``."""
    return f"{int(time.time()):x}-{secrets.token_hex(3)}"


@dataclass
class RunContext:
    """The state that every service of one run shares."""

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
        try:
            run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            run_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the state folder {run_dir}: {exc.strerror or exc}; "
                "point TESTBED_STATE_DIR at a writable folder"
            ) from exc
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
        # Write a new file and rename it, so that a kill never leaves half a file.
        temporary = self.run_dir / f".{CONTEXT_FILE}.tmp"
        write_private_file(temporary, json.dumps(data, indent=2).encode())
        temporary.replace(self.run_dir / CONTEXT_FILE)

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

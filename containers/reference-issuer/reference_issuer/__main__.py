"""Entry point: ``python -m reference_issuer /path/to/issuer.json``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from .config import ConfigError, load_config
from .server import LOG, IssuerHTTPServer, create_ssl_context
from .tokens import Issuer


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # As PID 1 in a container the process would otherwise ignore SIGTERM.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Load the configuration and serve until SIGINT or SIGTERM.

    Returns the exit code: 2 for an invalid configuration, 1 if the port is unusable.
    """
    parser = argparse.ArgumentParser(
        prog="python -m reference_issuer",
        description="Reference OAuth 2.0 token issuer.",
    )
    parser.add_argument(
        "config", type=Path, help="path of the issuer.json configuration"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        config = load_config(arguments.config)
        ssl_context = create_ssl_context(config)
    except ConfigError as exc:
        LOG.error("invalid configuration %s: %s", arguments.config, exc)
        return 2

    for key in config.keys:
        LOG.info(
            "loaded signing key kid=%s alg=%s published=%s",
            key.kid,
            key.alg,
            key.published,
        )
    try:
        server = IssuerHTTPServer(Issuer(config), ssl_context)
    except OSError as exc:
        LOG.error("cannot listen on %s port %d: %s", config.host, config.port, exc)
        return 1

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    LOG.info(
        "listening on https://%s:%d for issuer %s with %d client(s)",
        config.host,
        config.port,
        config.issuer,
        len(config.clients),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        LOG.info("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/opt/scitokens/bin/python3 -I
"""Judge one bearer token with the scitokens library and print the verdict.

Usage::

    testbed-scitokens-validate [--accept-claim NAME ...] \
        [--wlcg-version-pattern REGEX] TOKEN_FILE ISSUER AUDIENCE AUTHZ PATH

The script verifies the token with ``scitokens.SciToken.deserialize(token,
audience=AUDIENCE, insecure=False)``, which fetches the key from the issuer that
the token's ``iss`` names. Then ``Enforcer(ISSUER, audience=AUDIENCE).test(token,
AUTHZ, PATH)`` decides whether the token grants AUTHZ on PATH. scitokens 1.8.1 and
1.9.7 have the same API for both calls. The Enforcer compares AUTHZ with the part
of each scope before the colon, so AUTHZ is the scope name itself (``read`` or
``storage.read``).

The Enforcer rejects every claim it has no validator for, unless the token has
``ver: scitoken:2.0``. So an application that accepts WLCG or RFC 9068 tokens
with this library has to register validators for their other claims.
``--accept-claim NAME`` registers one that accepts any value of NAME, and
``--wlcg-version-pattern REGEX`` one that accepts a ``wlcg.ver`` that REGEX
fully matches.

It prints one JSON line ``{"verdict": "accept" | "reject" | "error", "message":
...}`` and exits 0 (accept), 1 (reject) or 2 (the check could not run: invalid
arguments, unreadable token file, or the trusted ISSUER's keys could not be
fetched). TOKEN_FILE ``-`` reads the token from standard input. Neither output
contains the token.

Started as root, the script reads TOKEN_FILE (mode 0600, owned by the host user
that runs the testbed) and then drops to the ``validator`` user before it imports
scitokens, so that no library code runs as root.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import pwd
import re
import socket
import sys
import urllib.error
from typing import Any, NoReturn

SERVICE_USER = "validator"
# Seconds that one socket operation of the key fetch may take. The library passes
# no timeout to urllib.request.urlopen, so without this a silent issuer would hang
# the check.
SOCKET_TIMEOUT = 10.0
MAX_MESSAGE_LENGTH = 300

EXIT_ACCEPT, EXIT_REJECT, EXIT_ERROR = 0, 1, 2


class UsageFailure(Exception):
    """An invalid command line; the script exits with status 2."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageFailure(message)


class Redactor:
    """Replaces the token and its signature in text that the script prints."""

    def __init__(self, token: str) -> None:
        self.secrets = [token]
        signature = token.rpartition(".")[2]
        if len(signature) >= 16:
            self.secrets.append(signature)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "<token>")
        return text


class RedactingFilter(logging.Filter):
    """Replaces the token in log records before a handler formats them."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def finish(verdict: str, message: str, redact: Redactor | None = None) -> NoReturn:
    """Print the verdict line and exit with the status that belongs to it."""
    if redact is not None:
        message = redact(message)
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
    print(json.dumps({"verdict": verdict, "message": message}), flush=True)
    codes = {"accept": EXIT_ACCEPT, "reject": EXIT_REJECT}
    sys.exit(codes.get(verdict, EXIT_ERROR))


def compile_pattern(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression: {exc}") from exc


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="testbed-scitokens-validate",
        description="Judge a bearer token with scitokens' Enforcer.",
    )
    parser.add_argument(
        "--accept-claim",
        metavar="NAME",
        action="append",
        default=[],
        help="accept any value of claim NAME (repeatable)",
    )
    parser.add_argument(
        "--wlcg-version-pattern",
        metavar="REGEX",
        type=compile_pattern,
        help="accept WLCG tokens whose wlcg.ver claim REGEX fully matches",
    )
    parser.add_argument("token_file", help="file that contains the token, or -")
    parser.add_argument("issuer", help="the issuer that the Enforcer trusts")
    parser.add_argument("audience", help="the audience of this relying party")
    parser.add_argument("authz", help="scope name to test, e.g. read or storage.read")
    parser.add_argument("path", help="absolute path that the request touches")
    return parser.parse_args(arguments)


def read_token(token_file: str) -> str:
    if token_file == "-":
        return sys.stdin.read().strip()
    with open(token_file, encoding="utf-8") as stream:
        return stream.read().strip()


def drop_privileges() -> None:
    """Switch to SERVICE_USER and its home directory when running as root."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVICE_USER)
    os.initgroups(SERVICE_USER, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise RuntimeError("dropping root privileges failed")
    os.environ.update(HOME=entry.pw_dir, USER=SERVICE_USER, LOGNAME=SERVICE_USER)


def unverified_issuer(token: str) -> Any:
    """Return the token's ``iss`` without verifying it, or None if unreadable."""
    try:
        segment = token.split(".")[1]
        padded = segment + "=" * (-len(segment) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError):
        return None
    return claims.get("iss") if isinstance(claims, dict) else None


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def main(arguments: list[str]) -> NoReturn:
    try:
        options = parse_arguments(arguments)
        token = read_token(options.token_file)
    except (UsageFailure, OSError, UnicodeDecodeError, ValueError) as exc:
        finish("error", f"cannot run the check: {describe(exc)}")
    if not token:
        finish("reject", f"the token in {options.token_file} is empty")
    redact = Redactor(token)

    try:
        drop_privileges()
        import scitokens
    except (OSError, KeyError, RuntimeError, ImportError) as exc:
        finish("error", f"cannot prepare the check: {describe(exc)}")

    # The library logs through the "scitokens" logger. Its warnings and errors,
    # such as a failed key download, go to stderr with the token redacted.
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redact))
    handler.setFormatter(logging.Formatter("scitokens %(levelname)s: %(message)s"))
    logging.getLogger("scitokens").addHandler(handler)
    logging.getLogger("scitokens").setLevel(logging.WARNING)
    socket.setdefaulttimeout(SOCKET_TIMEOUT)
    version = scitokens.__version__

    try:
        verified = scitokens.SciToken.deserialize(
            token, audience=options.audience, insecure=False
        )
    except urllib.error.URLError as exc:
        # A failed download from the trusted issuer is a testbed problem. From any
        # other issuer, it is how the library rejects an untrusted token.
        if unverified_issuer(token) == options.issuer:
            finish(
                "error",
                f"scitokens {version} cannot fetch the keys of the trusted issuer "
                f"{options.issuer}: {describe(exc)}",
                redact,
            )
        finish("reject", f"SciToken.deserialize raised {describe(exc)}", redact)
    except Exception as exc:  # any failure to verify the token rejects it
        finish("reject", f"SciToken.deserialize raised {describe(exc)}", redact)

    enforcer = scitokens.Enforcer(options.issuer, audience=options.audience)
    pattern = options.wlcg_version_pattern
    if pattern is not None:
        enforcer.add_validator(
            "wlcg.ver",
            lambda value: (
                isinstance(value, str) and pattern.fullmatch(value) is not None
            ),
        )
    for claim in options.accept_claim:
        enforcer.add_validator(claim, lambda value: True)

    try:
        granted = enforcer.test(verified, options.authz, options.path)
    except scitokens.scitokens.InvalidPathError as exc:
        finish("error", f"invalid PATH argument: {describe(exc)}", redact)
    except Exception as exc:  # an exception during enforcement rejects the token
        finish("reject", f"Enforcer.test raised {describe(exc)}", redact)
    if granted:
        finish(
            "accept",
            f"scitokens {version} Enforcer granted {options.authz} on {options.path}",
            redact,
        )
    finish(
        "reject",
        f"scitokens {version} Enforcer denied {options.authz} on {options.path}: "
        f"{enforcer.last_failure}",
        redact,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/python3
"""Run gfal-copy with a separate bearer token for each URL prefix.

gfal-copy (gfal2-util 1.8.0) can set only one bearer token for all requests,
through the BEARER_TOKEN variable or ``-D BEARER:TOKEN=...``. The gfal2 library
itself keeps a credential map keyed by URL prefix (``gfal2_cred_set``, exposed by
gfal2-python 1.12 as ``Gfal2Context.cred_set``). The HTTP plugin of gfal2 2.21
looks each URL up in that map: for a third-party copy it sends the active side's
token in ``Authorization`` and the passive side's token in
``TransferHeaderAuthorization``.

This launcher registers the tokens listed in ``/run/gfal2/credentials.json`` on
every gfal2 context that gfal-copy creates, then runs gfal-copy's own code
(``gfal2_util.shell.Gfal2Shell``) with the arguments it was given. The entry point
copies that file and the token files from ``/testbed``. Its format is::

    {"bearer": [{"url_prefix": "https://localhost:8443/data/f",
                 "token_file": "source.token"}]}

``token_file`` is relative to the directory of credentials.json. The tokens
never appear on a command line, and this launcher prints only their lengths.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gfal2
from gfal2_util.shell import Gfal2Shell

CREDENTIALS_FILE = Path("/run/gfal2/credentials.json")


def log(message: str) -> None:
    print(f"testbed-gfal-copy: {message}", file=sys.stderr)


def load_credentials(path: Path) -> list[tuple[str, str]]:
    """Read ``(url_prefix, token)`` pairs from ``path``, or exit with status 2."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        entries = document["bearer"]
        pairs = []
        for entry in entries:
            prefix = str(entry["url_prefix"])
            token = (path.parent / entry["token_file"]).read_text().strip()
            if not token:
                raise ValueError(f"token file {entry['token_file']} is empty")
            pairs.append((prefix, token))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"invalid credentials file {path}: {exc!r}")
        sys.exit(2)
    return pairs


def main(arguments: list[str]) -> int:
    credentials = []
    if CREDENTIALS_FILE.exists():
        credentials = load_credentials(CREDENTIALS_FILE)
    for prefix, token in credentials:
        log(f"bearer token of {len(token)} characters for {prefix}")
    create_context = gfal2.creat_context

    def create_context_with_tokens() -> Any:
        context = create_context()
        for prefix, token in credentials:
            context.cred_set(prefix, context.cred_new("BEARER", token))
        return context

    # gfal2_util.base calls gfal2.creat_context() when a command starts.
    gfal2.creat_context = create_context_with_tokens
    code = int(Gfal2Shell().main(["gfal-copy", *arguments]))
    # gfal-copy 1.8.0 returns the gfal2 error code unchanged, and an exit status
    # above 255 wraps around (256 would read as success). gfal2-util 1.8.1 maps
    # such codes to 255, and so does this launcher.
    return code if 0 <= code <= 255 else 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

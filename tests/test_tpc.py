"""Tests of the plain COPY driver against a local HTTPS server that streams markers."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from testbed import tpc
from testbed.ca import CertificateAuthority
from testbed.errors import RequestError
from testbed.httpclient import make_client
from testbed.tpc import http_copy, parse_markers, tpc_cases

MARKER = (
    "Perf Marker\n\tTimestamp: 1537788010\n\tStripe Index: 0\n"
    "\tStripe Bytes Transferred: 238745\n\tTotal Stripe Count: 1\nEnd\n"
)


class _CopyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    stall = False
    seen: ClassVar[list[dict[str, str]]] = []

    def do_COPY(self) -> None:
        type(self).seen.append(dict(self.headers))
        self.send_response(201)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(MARKER)
        if type(self).stall:
            time.sleep(3)
            return
        self._chunk("success: Created\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert = ca.issue_server_certificate(tmp_path / "server")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CopyHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert_path, cert.key_path)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _CopyHandler.seen = []
    _CopyHandler.stall = False
    yield f"https://localhost:{httpd.server_address[1]}", ca.cert_path
    httpd.shutdown()
    httpd.server_close()


def test_pull_copy_sends_tokens_to_the_right_sides(server: tuple[str, Path]) -> None:
    url, ca_file = server
    with make_client(ca_file) as http:
        result = http_copy(
            http, "pull", "https://src.invalid/f", f"{url}/dst", "src-tok", "dst-tok"
        )
    headers = _CopyHandler.seen[0]
    assert headers["Authorization"] == "Bearer dst-tok"
    assert headers["TransferHeaderAuthorization"] == "Bearer src-tok"
    assert headers["Source"] == "https://src.invalid/f"
    assert result.status == 201
    assert result.final_line == "success: Created"
    assert result.claims_success
    assert result.markers[0]["Stripe Bytes Transferred"] == "238745"
    assert "dst-tok" not in str(result.request)


def test_push_copy_uses_destination_header(server: tuple[str, Path]) -> None:
    url, ca_file = server
    with make_client(ca_file) as http:
        http_copy(http, "push", f"{url}/src", "https://dst.invalid/f", "s", "d")
    headers = _CopyHandler.seen[0]
    assert headers["Destination"] == "https://dst.invalid/f"
    assert headers["Authorization"] == "Bearer s"


def test_stalled_copy_reports_last_marker(
    server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_file = server
    _CopyHandler.stall = True
    monkeypatch.setattr(tpc, "STALL_TIMEOUT", 1.0)
    with make_client(ca_file) as http, pytest.raises(RequestError) as raised:
        http_copy(http, "pull", "https://src.invalid/f", f"{url}/dst", "s", "d")
    assert "stalled" in str(raised.value)
    assert "238745" in str(raised.value)


def test_unknown_mode_is_rejected(server: tuple[str, Path]) -> None:
    url, ca_file = server
    with make_client(ca_file) as http, pytest.raises(ValueError, match="mode"):
        http_copy(http, "sideways", url, url, "s", "d")


def test_parse_markers_reads_blocks() -> None:
    markers = parse_markers((MARKER * 2).splitlines())
    assert len(markers) == 2
    assert markers[1]["Timestamp"] == "1537788010"


def test_tpc_cases_cover_modes_drivers_and_negatives() -> None:
    cases = tpc_cases(["wlcg-1.0"])
    assert len(cases) == 2 * 2 * 4
    assert {case.expected for case in cases if case.negative} == {"reject"}
    assert {case.expected for case in cases if not case.negative} == {"accept"}
    assert tpc_cases(["scitokens-2.0"]) == []

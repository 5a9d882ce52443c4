"""Measure what reusing one HTTPS client per service saves, in one run.

Starts an HTTPS server on 127.0.0.1 with a certificate from the testbed's CA,
sends the same number of requests once through one reused client (as the
testbed does) and once with a new client per request, and prints both times and
their ratio. Usage: ``python benchmarks/http_client_reuse.py [REQUESTS]``.
"""

from __future__ import annotations

import http.server
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from testbed.ca import CertificateAuthority
from testbed.httpclient import make_client


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as scratch:
        ca = CertificateAuthority.create(Path(scratch) / "ca")
        cert = ca.issue_server_certificate(Path(scratch) / "server")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert_path, cert.key_path)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"https://localhost:{server.server_address[1]}/"

        started = time.perf_counter()
        with make_client(ca.cert_path) as client:
            for _ in range(requests):
                client.get(url).raise_for_status()
        reused = time.perf_counter() - started

        started = time.perf_counter()
        for _ in range(requests):
            with make_client(ca.cert_path) as client:
                client.get(url).raise_for_status()
        fresh = time.perf_counter() - started
        server.shutdown()

    print(f"{requests} requests, one reused client: {reused:.2f} s")
    print(f"{requests} requests, a new client each:  {fresh:.2f} s")
    print(f"ratio new/reused: {fresh / reused:.1f}")


if __name__ == "__main__":
    main()

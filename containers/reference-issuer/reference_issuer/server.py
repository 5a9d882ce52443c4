"""HTTPS server of the issuer: TLS, request routing, body limits and logging."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import socketserver
import ssl
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .config import Config, ConfigError
from .tokens import DIGITS_PATTERN, Issuer, Response

LOG = logging.getLogger("reference-issuer")

MAX_BODY_BYTES = 64 * 1024
# Seconds that a connection may stay idle before the server closes it.
CONNECTION_TIMEOUT = 30
# Maximum length of a request value (path, client_id, scope) in a log line.
LOG_VALUE_LIMIT = 200


def _printable(value: Any) -> str:
    """Render a request value for a log line: no control characters, bounded length."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = "".join(char if char.isprintable() else "?" for char in text)
    if len(text) > LOG_VALUE_LIMIT:
        text = text[:LOG_VALUE_LIMIT] + "..."
    return text


class RequestHandler(BaseHTTPRequestHandler):
    """Routes HTTPS requests to the Issuer and logs one line per request."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm each
    # kept-alive response would wait for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server_version = "testbed-reference-issuer"
    timeout = CONNECTION_TIMEOUT
    server: IssuerHTTPServer
    _body_consumed = False

    def _routes(self) -> dict[str, dict[str, Callable[[], Response]]]:
        app = self.server.app
        prefix = urlsplit(app.config.issuer).path.rstrip("/")
        metadata = {"GET": app.metadata}
        return {
            f"{prefix}/.well-known/openid-configuration": metadata,
            f"/.well-known/oauth-authorization-server{prefix}": metadata,
            f"{prefix}/jwks": {"GET": app.jwks},
            f"{prefix}/token": {"POST": self._token},
            "/testbed/mint": {"POST": self._mint},
            "/healthz": {"GET": lambda: Response(200, {"status": "ok"})},
        }

    def _read_body(self) -> bytes | Response:
        """Read the request body, or return the error response for an unreadable one.

        An unreadable body stays unread, so the connection closes after the response.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            description = "chunked bodies are not supported; send Content-Length"
            return Response(
                411, {"error": "length_required", "error_description": description}
            )
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._body_consumed = True
            return b""
        if not DIGITS_PATTERN.fullmatch(length_header.strip()):
            description = f"invalid Content-Length {length_header[:20]!r}"
            return Response(
                400, {"error": "invalid_request", "error_description": description}
            )
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            description = f"request body exceeds {MAX_BODY_BYTES} bytes"
            return Response(
                413, {"error": "invalid_request", "error_description": description}
            )
        body = self.rfile.read(length)
        self._body_consumed = True
        return body

    def _has_unread_body(self) -> bool:
        if self._body_consumed:
            return False
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return chunked or self.headers.get("Content-Length", "0").strip() != "0"

    def _token(self) -> Response:
        body = self._read_body()
        if isinstance(body, Response):
            return body
        return self.server.app.token(
            self.headers.get("Content-Type"), body, self.headers.get("Authorization")
        )

    def _mint(self) -> Response:
        body = self._read_body()
        if isinstance(body, Response):
            return body
        return self.server.app.mint(body, self.headers.get("Authorization"))

    def _dispatch(self) -> None:
        self._body_consumed = False
        path = urlsplit(self.path).path
        method = "GET" if self.command == "HEAD" else self.command
        handlers = self._routes().get(path)
        if handlers is None:
            response = Response(
                404,
                {"error": "not_found", "error_description": f"no endpoint at {path}"},
            )
        elif method not in handlers:
            allowed = ", ".join(
                sorted(handlers) + (["HEAD"] if "GET" in handlers else [])
            )
            description = f"{self.command} is not allowed on {path}; use {allowed}"
            response = Response(
                405,
                {"error": "method_not_allowed", "error_description": description},
                {"Allow": allowed},
            )
        else:
            try:
                response = handlers[method]()
            except OSError:
                raise  # a failed connection, which handle_error logs
            except Exception:
                LOG.exception("internal error on %s %s", self.command, _printable(path))
                self.close_connection = True
                description = "internal error; see the issuer log"
                response = Response(
                    500, {"error": "server_error", "error_description": description}
                )

        # A body left unread would be parsed as the next request on this connection.
        if self._has_unread_body():
            self.close_connection = True
        self._send(response)
        self._log_request_line(path, response)

    def _send(self, response: Response) -> None:
        payload = json.dumps(response.body, indent=None).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _log_request_line(self, path: str, response: Response) -> None:
        details = "".join(
            f" {name}={_printable(value)}"
            for name, value in response.log_details.items()
            if value is not None
        )
        LOG.info("%s %s %d%s", self.command, _printable(path), response.status, details)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # _dispatch logs each request itself, with details send_response cannot see.
        pass

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler calls this for malformed requests and timeouts.
        LOG.warning("%s: %s", self.client_address[0], _printable(format % args))


class IssuerHTTPServer(ThreadingHTTPServer):
    """A threading HTTPS server whose TLS handshake runs in the request thread."""

    def __init__(self, app: Issuer, ssl_context: ssl.SSLContext) -> None:
        self.app = app
        self.ssl_context = ssl_context
        host, port = app.config.host, app.config.port
        if ipaddress.ip_address(host).version == 6:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name with getfqdn().
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.app.config.host
        self.server_port = self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        # Without do_handshake_on_connect=False a slow client would stall accept().
        wrapped = self.ssl_context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
            LOG.warning("connection from %s failed: %s", client_address[0], error)
        else:
            LOG.exception(
                "internal error while handling a request from %s", client_address[0]
            )


def create_ssl_context(config: Config) -> ssl.SSLContext:
    """Create the server TLS context from the configured certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"tls: cannot load certificate {config.tls_cert} with key "
            f"{config.tls_key}: {exc}"
        ) from None
    return context

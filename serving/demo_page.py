#!/usr/bin/env python3
"""Serve the demo page (web/) on loopback and pass its predictions on to TorchServe.

    scripts/serve.sh page [--port 8090]      then open http://127.0.0.1:8090/

Why a pass-through and not CORS: before a cross-origin POST that carries an Authorization
header, a browser sends a preflight OPTIONS request, and browsers never put credentials on
a preflight. TorchServe 0.12 checks the token on every request, the preflight included,
and answers it with 400, so a browser can never call a token-protected TorchServe from
another origin whatever cors_allowed_* says. The page therefore posts to its own origin,
and this server forwards exactly one kind of request, POST /predictions/<model>, to the
inference API with the key the person typed. It stores no key and forwards nothing else:
no management call and no other header. Standard library only.

Limits, so that a local page server cannot be tied up or made to forward more than it
should: a POST needs one plain Content-Length of digits within TorchServe's
max_request_size (400 for a negative, signed, non-numeric or repeated one, 413 over the
limit, 411 when it is missing or the body is chunked), answered before a byte of the body
is read; a client gets --read-timeout seconds in all to send its request head and body
(then 408 and the connection is closed, however slowly it trickles bytes); and at most
--max-connections connections are handled at once: one more is answered 503 at once and
closed, without a thread.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from serving import loopback
from serving.bounded_server import MAX_CONNECTIONS, READ_TIMEOUT, SECURITY_HEADERS, BoundedServer, Expired
from serving.ts_client import CtlError, Server

WEB = Path(__file__).resolve().parent.parent / "web"
FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
MODEL_NAME = re.compile(r"^/predictions/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")
DIGITS = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Forwarding:
    """Where and how the page server passes predictions on."""

    inference: str  # TorchServe's inference address
    max_body: int  # largest request body accepted, in bytes (TorchServe's max_request_size)
    timeout: float  # seconds TorchServe has to answer


class PageHandler(BaseHTTPRequestHandler):
    """One connection to the page server: the page's files, and POST /predictions/<model> passed on."""

    server: PageServer
    server_version = "event-taxonomy-demo"

    def setup(self) -> None:
        # The server's deadline bounds the whole request (and answers 408); this per-call
        # socket timeout, a little longer so that the deadline answers first, also bounds
        # every write to a client that stops reading its answer.
        self.timeout = self.server.read_timeout + 1
        super().setup()

    def send_response(self, code: int, message: str | None = None) -> None:
        if not self.server.claim(self.connection):
            self.close_connection = True
            raise Expired()
        super().send_response(code, message)

    def log_message(self, fmt: str, *args: object) -> None:  # one line per request, to stderr
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"code": status, "message": message}).encode(), "application/json")

    def finish(self) -> None:
        super().finish()
        if getattr(self, "_unread", False):
            # A body refused unread is still arriving: closing now would send a reset that
            # can destroy the answer before the client reads it. Half-close, and drain a
            # little for a moment; the answer has been sent either way.
            end = time.monotonic() + 0.5
            try:
                self.connection.shutdown(socket.SHUT_WR)
                while (left := end - time.monotonic()) > 0:
                    self.connection.settimeout(left)
                    if not self.connection.recv(65536):
                        break
            except OSError:
                pass

    def _content_length(self) -> int | None:
        """The declared body length, or None once the request has been answered.

        Decided from the headers alone, before a byte of the body is read: a negative
        length would make a read run to the end of the stream, past every limit.
        """
        self.close_connection = self._unread = True  # a refused body is never read
        if self.headers.get_all("Transfer-Encoding"):
            self._error(411, "chunked or otherwise encoded bodies are not accepted; send Content-Length")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._error(411, "Content-Length required")
            return None
        value = values[0].strip(" \t")
        if len(values) > 1:
            self._error(400, "more than one Content-Length")
            return None
        if not value.isascii() or not value.isdigit():
            self._error(400, f"Content-Length must be a number of bytes, not {value[:40]!r}")
            return None
        limit = self.server.forwarding.max_body
        if not DIGITS.fullmatch(value) or int(value) > limit:
            self._error(413, f"request body of {value[:40]} bytes is over the {limit}-byte limit")
            return None
        self._unread = False
        return int(value)

    def do_GET(self) -> None:
        name = FILES.get(self.path.split("?", 1)[0])
        if name is None:
            self._error(404, f"no such page: {self.path}")
            return
        path = WEB / name
        self._send(200, path.read_bytes(), TYPES[path.suffix])

    def do_POST(self) -> None:
        match = MODEL_NAME.match(self.path)
        if match is None:
            self._error(404, "only POST /predictions/<model> is forwarded")
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)
        if len(body) != length:  # the client closed early, or the deadline shut it down
            self._error(400, f"request body ended after {len(body)} of {length} bytes")
            return
        if not self.server.claim(self.connection):
            return  # the deadline answered 408 just now
        # The request is in: from here the deadline no longer applies, only --timeout
        # for TorchServe's answer.
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        inference = self.server.forwarding.inference
        request = urllib.request.Request(f"{inference}/predictions/{match.group(1)}", data=body,
                                         headers=headers, method="POST")
        try:
            with loopback.urlopen(request, timeout=self.server.forwarding.timeout) as response:
                status, answer = response.status, response.read()
                kind = response.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            status, answer, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "application/json")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self._error(502, f"cannot reach TorchServe at {inference} ({reason}); "
                             "is it running? (scripts/serve.sh start)")
            return
        self._send(status, answer, kind)


class PageServer(BoundedServer):
    """The bounded server with the page's handler and where it forwards to."""

    def __init__(self, address: tuple[str, int], forwarding: Forwarding, max_connections: int = MAX_CONNECTIONS,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.forwarding = forwarding
        super().__init__(address, PageHandler, max_connections, read_timeout)


class DemoPage:
    """The page server, startable in a thread (tests) or in the foreground (scripts/serve.sh page)."""

    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 8090, timeout: float = 60,
                 read_timeout: float = READ_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 max_body: int | None = None) -> None:
        if max_body is None:
            max_body = int(server.props.get("max_request_size", 6553500))
        forwarding = Forwarding(server.address("inference"), max_body, timeout)
        self.httpd = PageServer((host, port), forwarding, max_connections, read_timeout)
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"

    def start(self) -> DemoPage:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8090, help="page port on 127.0.0.1 (default 8090)")
    parser.add_argument("--config", help="TorchServe config whose inference address is used "
                                         "(default: $TS_CONFIG or config.properties)")
    parser.add_argument("--read-timeout", type=float, default=READ_TIMEOUT,
                        help=f"seconds a client has to send its whole request (default {READ_TIMEOUT:g})")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                        help=f"connections handled at once; more are answered 503 (default {MAX_CONNECTIONS})")
    args = parser.parse_args(argv)
    if args.read_timeout <= 0 or args.max_connections < 1:
        parser.error("--read-timeout must be positive and --max-connections at least 1")
    try:
        page = DemoPage(Server(args.config), port=args.port, read_timeout=args.read_timeout,
                        max_connections=args.max_connections)
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); choose another --port",
              file=sys.stderr)
        return 2
    print(f"demo page: {page.url} (Ctrl-C stops it); inference key: scripts/manage.sh key inference", flush=True)
    try:
        page.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        page.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

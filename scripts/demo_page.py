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
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tsctl import CtlError, Server  # noqa: E402

WEB = Path(__file__).resolve().parent.parent / "web"
FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
MODEL_NAME = re.compile(r"^/predictions/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")
# Scripts and styles from this origin only; fetch() to this origin only.
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'"


def make_handler(inference: str, max_body: int, timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "event-taxonomy-demo"

        def log_message(self, fmt: str, *args: object) -> None:  # one line per request, to stderr
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"code": status, "message": message}).encode(), "application/json")

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
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._error(411, "Content-Length required")
                return
            if length > max_body:
                self._error(413, f"request body of {length} bytes is over the {max_body}-byte limit")
                return
            body = self.rfile.read(length)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            if self.headers.get("Authorization"):
                headers["Authorization"] = self.headers["Authorization"]
            request = urllib.request.Request(f"{inference}/predictions/{match.group(1)}", data=body,
                                             headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
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

    return Handler


class DemoPage:
    """The page server, startable in a thread (tests) or in the foreground (scripts/serve.sh page)."""

    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 8090, timeout: float = 60) -> None:
        max_body = int(server.props.get("max_request_size", 6553500))
        handler = make_handler(server.address("inference"), max_body, timeout)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
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
    args = parser.parse_args(argv)
    try:
        page = DemoPage(Server(args.config), port=args.port)
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

"""serving/demo_page.py's limits, over real sockets, in front of a stand-in inference API.

No Java and no browser: a tiny HTTP server plays TorchServe's inference API and records
what reaches it, so each test can say both what the client got and that nothing was
forwarded.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from serving.demo_page import DemoPage  # noqa: E402
from serving.ts_client import Server  # noqa: E402

LIMIT = 1 << 20  # max_request_size of the test config: 1 MiB


class Upstream:
    """Answers every POST with 200 and keeps each body it received."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                bodies.append(body)
                if body == b"slow":
                    time.sleep(2.5)
                answer = json.dumps({"received": len(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture(scope="module")
def upstream():
    up = Upstream()
    yield up
    up.httpd.shutdown()
    up.httpd.server_close()


@pytest.fixture(scope="module")
def config(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy") / "config.properties"
    path.write_text(f"inference_address={upstream.url}\nmax_request_size={LIMIT}\n")
    return path


@pytest.fixture
def page_factory(config: Path):
    pages = []

    def make(**settings) -> DemoPage:
        page = DemoPage(Server(config), port=0, **settings).start()
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.stop()


@pytest.fixture(scope="module")
def page(config: Path):
    """One page server with the default settings for the tests that need no others."""
    page = DemoPage(Server(config), port=0).start()
    yield page
    page.stop()


def connect(page: DemoPage) -> socket.socket:
    return socket.create_connection(page.httpd.server_address[:2], timeout=10)


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def exchange(page: DemoPage, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes, read to the end; the status line, headers and body."""
    with connect(page) as sock:
        sock.sendall(raw)
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def post(headers: str, body: bytes = b"") -> bytes:
    return f"POST /predictions/events HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


def status_line(code: int) -> str:
    return f"HTTP/1.0 {code} {HTTPStatus(code).phrase}"


def test_a_good_request_is_forwarded_with_frame_protection(page: DemoPage, upstream: Upstream) -> None:
    upstream.bodies.clear()
    body = json.dumps({"title": "jazz night"}).encode()
    status, headers, answer = exchange(page, post(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n",
                                                  body))
    assert status == status_line(200) and json.loads(answer) == {"received": len(body)}
    assert upstream.bodies == [body]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    status, headers, _ = exchange(page, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == status_line(200)
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("header, code", [
    ("Content-Length: -1\r\n", 400),  # once read as "to the end of the stream": 8 MiB went through
    ("Content-Length: -5\r\n", 400),  # once an exception and no answer at all
    ("Content-Length: +5\r\n", 400),
    ("Content-Length: 5x\r\n", 400),
    ("Content-Length: 0x10\r\n", 400),
    ("Content-Length: \r\n", 400),
    ("Content-Length: 5, 5\r\n", 400),
    ("Content-Length: 5\r\nContent-Length: 5\r\n", 400),
    ("Content-Length: ٥\r\n", 400),  # a digit to str.isdigit, not to HTTP
    (f"Content-Length: {LIMIT + 1}\r\n", 413),
    ("Content-Length: 99999999999999999999999999\r\n", 413),
    ("", 411),
    ("Transfer-Encoding: chunked\r\n", 411),
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 411),
])
def test_a_bad_length_is_refused_before_the_body_is_read(page: DemoPage, upstream: Upstream, header: str,
                                                         code: int) -> None:
    upstream.bodies.clear()
    status, headers, body = exchange(page, post(header, b"x" * 65536))  # a body follows; none is forwarded
    assert status == status_line(code)
    assert headers["content-type"] == "application/json" and json.loads(body)["code"] == code
    assert upstream.bodies == []


def test_a_negative_length_forwards_nothing_of_a_large_body(page: DemoPage, upstream: Upstream) -> None:
    upstream.bodies.clear()
    with connect(page) as sock:
        sock.sendall(post("Content-Length: -1\r\n"))
        sent = 0
        try:  # keep sending 8 MiB until the server has answered and stops reading
            while sent < 8 << 20:
                sock.sendall(b"y" * 65536)
                sent += 65536
        except OSError:
            pass
        data = read_all(sock)
    assert data.startswith(status_line(400).encode()) and upstream.bodies == []


def slow_client(page: DemoPage, head: bytes, trickle: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send ``head``, then one byte of ``trickle`` each ``every`` seconds, until the server
    answers and closes; what came back and how long it took from connecting."""
    started = time.monotonic()
    sock = connect(page)
    data = b""
    try:
        sock.sendall(head)
        position, next_byte = 0, started + every
        while time.monotonic() - started < limit:
            readable, _, _ = select.select([sock], [], [], max(0.0, next_byte - time.monotonic()))
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            elif position < len(trickle):
                try:
                    sock.send(trickle[position:position + 1])
                except OSError:
                    pass
                position, next_byte = position + 1, time.monotonic() + every
            else:
                next_byte = time.monotonic() + every
        return data, time.monotonic() - started
    finally:
        sock.close()


@pytest.mark.parametrize("head, trickle", [
    (b"", b"POST /predictions/events HTTP/1.1\r\nHost: x\r\n"),  # slow request line and headers
    (b"POST /predictions/events HTTP/1.1\r\nContent-Length: 64\r\n\r\n", b"{" * 64),  # slow body
    (b"GET / HTTP/1.1\r\n", b""),  # headers never finished
])
def test_a_slow_client_is_answered_408_and_disconnected(page_factory, upstream: Upstream, head: bytes,
                                                        trickle: bytes) -> None:
    timeout = 1.5
    page = page_factory(read_timeout=timeout)
    upstream.bodies.clear()
    # A byte every 0.3 s: every single read is quick, so only a deadline on the whole request stops it.
    data, took = slow_client(page, head, trickle, every=0.3, limit=timeout + 10)
    assert data.startswith(status_line(408).encode()), data[:200]
    assert timeout - 0.2 <= took <= timeout + 2.0
    assert upstream.bodies == []
    assert wait_for(lambda: page.httpd.active == 0)


def test_a_slow_answer_is_not_cut_by_the_read_deadline(page_factory, upstream: Upstream) -> None:
    page = page_factory(read_timeout=1)  # the request is in at once; TorchServe takes 2.5 s
    status, _, answer = exchange(page, post("Content-Length: 4\r\n", b"slow"))
    assert status == status_line(200) and json.loads(answer) == {"received": 4}


def wait_for(condition, limit: float = 10) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_connections_beyond_the_bound_are_answered_503_without_a_thread(page_factory, upstream: Upstream) -> None:
    page = page_factory(max_connections=3, read_timeout=30)
    threads_before = threading.active_count()
    holders = [connect(page) for _ in range(3)]
    for sock in holders:
        sock.sendall(b"POST /predictions/events HTTP/1.1\r\n")  # and then nothing: each holds a slot
    assert wait_for(lambda: page.httpd.active == 3)
    started = time.monotonic()
    extra = []
    for _ in range(10):
        extra.append(exchange(page, b""))
    assert all(status == status_line(503) for status, _, _ in extra), extra[0]
    assert json.loads(extra[0][2])["code"] == 503 and extra[0][1]["retry-after"] == "1"
    assert time.monotonic() - started < 5  # refused at once, not after the 30 s read deadline
    assert threading.active_count() <= threads_before + 3
    for sock in holders:
        sock.close()
    assert wait_for(lambda: page.httpd.active == 0)
    body = b'{"title": "after"}'
    status, _, _ = exchange(page, post(f"Content-Length: {len(body)}\r\n", body))
    assert status == status_line(200)

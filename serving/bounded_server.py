"""A ThreadingHTTPServer for a local page: a bound on connections and a deadline per request.

serving/demo_page.py serves the demo page with it. Standard library only.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Scripts and styles from this origin only; fetch() to this origin only; never inside a frame.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'; "
       "frame-ancestors 'none'; base-uri 'none'")
# Every answer carries these, the server's own 503 and 408 included.
SECURITY_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY"}

READ_TIMEOUT = 10.0  # seconds a client has to send its whole request (head and body)
MAX_CONNECTIONS = 16  # connections handled at once; one more is answered 503


class Expired(Exception):
    """The connection's read deadline passed: it has been answered 408 and shut down."""


class BoundedServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with at most ``max_connections`` handler threads and a deadline
    for reading each request.

    When every slot is taken, the accepting thread itself writes a short 503 and closes the
    connection: no thread is started, so a flood of connections cannot grow the thread
    count. One watcher thread answers 408 to, and shuts down, every connection still
    sending its request ``read_timeout`` seconds after it was accepted: a per-read socket
    timeout alone lets a client that sends a byte every few seconds hold a thread forever.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS, read_timeout: float = READ_TIMEOUT) -> None:
        super().__init__(address, handler)
        self.max_connections, self.read_timeout = max_connections, read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._reading: dict[socket.socket, float] = {}  # connection -> deadline
        self._expired: set[socket.socket] = set()  # answered 408 by the deadline
        self.active = 0  # connections being handled now
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="demo-page-deadlines", daemon=True).start()

    # -- the bound on threads -------------------------------------------------------------
    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._lock:
            self.active += 1
            self._reading[request] = time.monotonic() + self.read_timeout
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)
            raise

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: socket.socket) -> None:
        with self._lock:
            self._reading.pop(request, None)
            self._expired.discard(request)
            self.active -= 1
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"code": 503, "message": f"busy: {self.max_connections} connections "
                                                  "already open; try again"}).encode()
        try:
            request.settimeout(0)  # never let one unread client block the accepting thread
            request.send(raw_response(503, "Service Unavailable", body, {"Retry-After": "1"}))
        except OSError:
            pass
        self.shutdown_request(request)

    # -- the read deadline ----------------------------------------------------------------
    def claim(self, request: socket.socket) -> bool:
        """Called before answering: False when the deadline has already answered 408."""
        with self._lock:
            self._reading.pop(request, None)
            return request not in self._expired

    def _watch(self) -> None:
        while not self._closed.wait(min(0.2, self.read_timeout / 4)):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, deadline in self._reading.items() if deadline <= now]
                for conn in late:
                    del self._reading[conn]
                    self._expired.add(conn)
            for conn in late:
                body = json.dumps({"code": 408, "message": f"request not received within "
                                                          f"{self.read_timeout:g} seconds"}).encode()
                try:
                    conn.send(raw_response(408, "Request Timeout", body), socket.MSG_DONTWAIT)
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the handler's blocked read with EOF
                except OSError:
                    pass

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        exc = sys.exc_info()[1]
        if isinstance(exc, (Expired, OSError)):  # timed out, or the client went away
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


def raw_response(status: int, reason: str, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    """A whole JSON answer written straight to the socket, for the connections no handler thread takes."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **SECURITY_HEADERS,
               "Connection": "close", **(extra or {})}
    head = f"HTTP/1.0 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body

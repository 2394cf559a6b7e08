"""nginx (the Debian package) in front of TorchServe replicas: one loopback address, upstream retries."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from serving.ts_config import free_ports

NGINX_CONF = """\
# Written by serving/nginx.py: {n} TorchServe replicas behind one address.
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$msec $upstream_addr $status $upstream_status';
    access_log {base}/access.log upstreams;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    upstream torchserve {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1m;
        location / {{
            proxy_pass http://torchserve;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            # A refused or reset connection, or a 502/503 from a replica going away, is tried
            # on the next replica. Inference is idempotent, so POST may be retried too.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


class Nginx:
    """One nginx balancing ``upstreams`` on a free loopback port, its files under ``base``."""

    def __init__(self, base: Path, upstreams: list[str]) -> None:
        self.base = base
        self.port = free_ports(1)[0]
        base.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server {u.split('://', 1)[-1]} max_fails=1 fail_timeout=5s;" for u in upstreams)
        self.conf = base / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(n=len(upstreams), base=base, servers=servers, port=self.port))
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([self.binary, "-t", "-q", "-c", str(self.conf), "-e", str(self.base / "error.log")], check=True)
        subprocess.run([self.binary, "-c", str(self.conf), "-e", str(self.base / "error.log")], check=True)

    def stop(self) -> None:
        pid_file = self.base / "nginx.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)

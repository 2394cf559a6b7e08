"""Replicas behind a real load balancer: two TorchServe processes from the cluster layout
behind nginx (Debian package) with upstream retries; one is killed under load and comes back.

serving/replicas.py (with replica.py and nginx.py) holds the launch code; everything listens on loopback ports picked
free at run time, and the load is bounded by request count and time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


from archives import kserve
from serving import replicas
from serving.nginx import Nginx

HAVE_NGINX = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
# CI installs nginx (.ci/run); there a missing nginx is a failure, not a skip.
needs_nginx = pytest.mark.skipif(not HAVE_NGINX and not os.environ.get("CI"),
                                 reason="nginx is not installed (apt-get install -y nginx)")


@needs_nginx
def test_nginx_config_is_valid_and_retries_on_the_next_replica(tmp_path: Path) -> None:
    nginx = Nginx(tmp_path / "nginx", ["http://127.0.0.1:18085", "http://127.0.0.1:18086"])
    text = nginx.conf.read_text()
    assert "server 127.0.0.1:18085 max_fails=1" in text and "server 127.0.0.1:18086 max_fails=1" in text
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert f"listen 127.0.0.1:{nginx.port};" in text
    checked = subprocess.run([nginx.binary, "-t", "-c", str(nginx.conf), "-e", str(nginx.base / "error.log")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


@needs_nginx
@pytest.mark.slow
@pytest.mark.e2e
def test_a_replica_killed_under_load_fails_only_in_flight_requests_and_rejoins(
        tmp_path: Path, model_store: Path) -> None:
    layout = kserve.write_kserve_layout(model_store / "events.mar", tmp_path / "layout")
    try:
        report = replicas.failover(layout, tmp_path / "run", replicas=2, requests=20000, seconds=150, clients=4,
                                   phase_seconds=6)
    finally:
        # failover stops its replicas and nginx itself; make sure no JVM outlives the test.
        for pid_file in (tmp_path / "run").glob("replica*/serve/tmp/.model_server.pid"):
            subprocess.run(["kill", "-9", pid_file.read_text().strip()], capture_output=True)
    print(json.dumps(report, indent=2))
    assert report["failed_not_in_flight"] == 0
    assert report["failed"] <= report["in_flight_at_kill"]
    for name in ("before_kill", "one_replica", "restarting", "after_rejoin"):
        assert report[name]["answered"] > 0, name
    assert report["rejoined_replica_answers"] == 200
    assert all(count > 0 for count in report["after_rejoin_per_replica"].values())  # the replica rejoined

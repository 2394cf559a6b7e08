"""What the management key can do, where keys live, and when they are renewed (real TorchServe)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from tests.live_server import ROOT, SESSION, ProxyTrap, script

pytestmark = pytest.mark.e2e


@pytest.fixture
def trap():
    """A listener every proxy variable of a test's scripts points at; it must see nothing."""
    listener = ProxyTrap()
    yield listener
    listener.close()


def test_a_directory_path_registers_code_from_outside_the_store(registered, tmp_path: Path) -> None:
    """Pins TorchServe 0.12's behaviour that README's Security section states.

    allowed_urls filters only http(s):// and file:// URLs: an absolute directory holding an
    unpacked archive registers, handler code included. If an upgrade refuses this, this
    test fails: then README's "the management key runs code" paragraph can be softened.
    """
    outside = tmp_path / "unpacked"
    with zipfile.ZipFile(registered.model_store / "events-taxonomy.mar") as archive:
        archive.extractall(outside)
    query = urllib.parse.urlencode({"url": str(outside), "model_name": "from-outside", "synchronous": "true"})
    code, body = registered.call("management", "POST", f"/models?{query}", timeout=600)
    try:
        assert code == 200, f"TorchServe no longer registers directory paths ({code} {body[:200]}): update README"
        code, body = registered.call("inference", "POST", "/predictions/from-outside", b"marathon",
                                     {"Content-Type": "text/plain"})
        assert code == 200 and "label" in json.loads(body)
    finally:
        registered.call("management", "DELETE", "/models/from-outside")


def test_the_serve_dir_and_its_secrets_are_private(registered) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    serve_dir = registered.serve_dir
    assert mode(serve_dir) == 0o700
    assert mode(serve_dir / "tmp") == 0o700 and mode(serve_dir / "logs") == 0o700
    assert script("manage.sh", "header", "inference").returncode == 0
    for name in ("key_file.json", "inference.header", "management.header"):
        assert mode(serve_dir / name) == 0o600, name
    header = (serve_dir / "inference.header").read_text()
    assert header == f"Authorization: Bearer {registered.key('inference')}\n"


def test_the_demos_curl_keeps_the_key_off_the_command_line_and_off_any_proxy(registered, tiny_run: Path, trap,
                                                                          tmp_path: Path) -> None:
    """scripts/demo.sh's own curl call, run against the test server with every proxy variable set."""
    if not list((ROOT / ".venv").glob(".installed-*")):
        pytest.skip("scripts/demo.sh would install .venv first; scripts/test.sh sets it up")
    # A curl first on PATH that writes down its arguments (what ps shows), then runs the real one.
    bin_dir, args_file = tmp_path / "bin", tmp_path / "curl-args"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\nexec "{shutil.which("curl")}" "$@"\n')
    (bin_dir / "curl").chmod(0o755)
    env = trap.env(SESSION(RUN=str(tiny_run), NAME="demo-curl", PATH=f"{bin_dir}:{os.environ['PATH']}"))
    try:
        result = subprocess.run([str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                                timeout=600)
    finally:
        script("manage.sh", "unregister", "demo-curl")
        (registered.model_store / "demo-curl.mar").unlink(missing_ok=True)
    assert trap.seen == [], f"sent through the proxy: {trap.seen}"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    answer = json.loads(result.stdout.split("\n== curl ", 1)[1].split("\n", 1)[1].split("\n== done")[0])
    assert answer["path"] == [answer["taxonomy"]["label"], answer["subtaxonomy"]["label"]]
    args = args_file.read_text().splitlines()
    assert f"@{registered.header_file('inference')}" in args
    assert not [a for a in args if registered.key("inference") in a], args


def test_a_models_own_400_mentioning_token_does_not_renew_keys(registered) -> None:
    before = json.loads(registered.key_file.read_text())
    code, body = registered.call("inference", "POST", "/predictions/events", json.dumps({"title": "a", "top_k": "token"}).encode(),
                                 {"Content-Type": "application/json"})
    assert code == 400 and "token" in body
    assert json.loads(registered.key_file.read_text()) == before


def test_a_wrong_key_is_renewed(registered) -> None:
    keys = json.loads(registered.key_file.read_text())
    keys["inference"]["key"] = "not-the-key"  # as if the server had been restarted with new keys
    registered.key_file.write_text(json.dumps(keys))
    code, body = registered.call("inference", "POST", "/predictions/events", b"dj club", {"Content-Type": "text/plain"})
    assert code == 200, body
    assert registered.key("inference") != "not-the-key"


def test_restore_registers_only_archives_from_the_store(registered, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from serving.ts_models import restore

    # An unpacked archive outside the store: TorchServe registers such a folder, handler code
    # included (test_a_directory_path_registers_code_from_outside_the_store), so only
    # restore's own filter keeps it out.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(registered.model_store / "events-taxonomy.mar") as archive:
        archive.extractall(unpacked)
    saved = registered.serve_dir / "models.json"
    saved.write_text(json.dumps([{"name": "planted", "url": str(unpacked), "workers": 1}]))
    try:
        restore(registered)
    finally:
        saved.unlink()
        code, body = registered.call("management", "GET", "/models")
        registered.call("management", "DELETE", "/models/planted")
    assert code == 200 and "planted" not in [m["modelName"] for m in json.loads(body)["models"]]
    assert f"model planted not restored: {str(unpacked)!r} is not an archive in" in capsys.readouterr().out


def test_ts_config_file_in_the_environment_is_ignored(tmp_path: Path) -> None:
    """TorchServe reads TS_CONFIG_FILE before --ts-config: serve.sh must start on its own config anyway."""
    from serving.ts_client import Server
    from serving.ts_config import config_on_free_ports, port_in_use

    config = config_on_free_ports(ROOT / "config.properties", tmp_path / "config.properties")
    other = config_on_free_ports(ROOT / "config.properties", tmp_path / "other.properties")
    (tmp_path / "store").mkdir()
    env = {**os.environ, "TS_CONFIG": str(config), "SERVE_DIR": str(tmp_path / "serve"),
           "MODEL_STORE": str(tmp_path / "store"), "TS_CONFIG_FILE": str(other)}
    try:
        started = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start", "--no-restore", "--timeout", "90"],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        server = Server(config, tmp_path / "serve", tmp_path / "store")
        assert server.ping()
        log = (tmp_path / "serve" / "logs" / "ts_log.log").read_text()
        assert f"Config file: {config}" in log and f"Config file: {other}" not in log
        assert not port_in_use(Server(other).address("inference"))
    finally:
        subprocess.run([str(ROOT / "scripts" / "serve.sh"), "stop"], env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize("api", ["grpc_inference", "grpc_management"])
def test_a_taken_grpc_port_is_named_before_starting(tmp_path: Path, api: str) -> None:
    import socket
    import subprocess

    from serving.ts_config import config_on_free_ports, read_properties

    config = config_on_free_ports(ROOT / "config.properties", tmp_path / "config.properties")
    port = int(read_properties(config)[f"{api}_port"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run([str(ROOT / "scripts" / "serve.sh"), "start"], capture_output=True,
                                text=True, timeout=60,
                                env={**os.environ, "TS_CONFIG": str(config), "SERVE_DIR": str(tmp_path / "serve")})
    assert result.returncode == 2
    assert f"port of the {api.replace('_', ' ')} API (127.0.0.1:{port}) is already in use" in result.stderr


def test_keys_never_go_through_a_proxy(registered, trap, tmp_path: Path) -> None:
    """manage.sh, predict.sh, the container's probe and the demo page talk to the local
    server directly, whatever http_proxy and friends say, and still work."""
    import http.client
    import sys

    from serving.ts_config import free_ports

    env = trap.env(SESSION())
    try:
        added = script("manage.sh", "register", "events.mar", "--name", "proxied", "--workers", "1", env=env)
        assert trap.seen == [], f"manage.sh register went through the proxy: {trap.seen}"
        assert added.returncode == 0, added.stdout + added.stderr
        listed = script("manage.sh", "list", env=env)
        assert listed.returncode == 0 and "proxied" in listed.stdout
        predicted = script("predict.sh", "proxied", stdin='{"title": "jazz night"}', env=env)
        assert predicted.returncode == 0 and "path" in json.loads(predicted.stdout), predicted.stderr
    finally:
        removed = script("manage.sh", "unregister", "proxied", env=env)
    assert removed.returncode == 0, removed.stderr
    assert trap.seen == [], f"manage.sh or predict.sh went through the proxy: {trap.seen}"

    probe = subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "healthcheck.py"), "ready"],
                           env={**env, "CONFIG_PATH": str(registered.config), "SERVE_DIR": str(registered.serve_dir),
                                "MODEL_NAME": "events"}, capture_output=True, text=True, timeout=60)
    assert trap.seen == [], f"healthcheck.py went through the proxy: {trap.seen}"
    assert probe.returncode == 0, probe.stdout

    port = free_ports(1)[0]
    page = subprocess.Popen([str(ROOT / "scripts" / "serve.sh"), "page", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = page.stdout.readline()  # printed once the page listens
        assert line.startswith("demo page: "), line
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # no proxy: a direct call
        connection.request("POST", "/predictions/events", body=json.dumps({"title": "dj club night"}),
                           headers={"Content-Type": "application/json",
                                    "Authorization": f"Bearer {registered.key('inference')}"})
        response = connection.getresponse()
        status, answer = response.status, response.read()
        connection.close()
    finally:
        page.terminate()
        page.communicate(timeout=30)
    assert trap.seen == [], f"the demo page forwarded through the proxy: {trap.seen}"
    assert status == 200 and "path" in json.loads(answer), answer

"""What the management key can do, where keys live, and when they are renewed (real TorchServe)."""

from __future__ import annotations

import json
import os
import stat
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from tests.live_server import script

pytestmark = pytest.mark.e2e


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


def test_curl_with_the_header_file_keeps_the_key_off_the_command_line(registered) -> None:
    import subprocess

    header = script("manage.sh", "header", "inference").stdout.strip()
    url = registered.address("inference") + "/predictions/events"
    result = subprocess.run(["curl", "-sS", "-H", f"@{header}", "-H", "Content-Type: text/plain", url,
                             "--data-binary", "saxophone trio"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "path" in json.loads(result.stdout)
    assert registered.key("inference") not in " ".join(result.args)


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


def test_restore_registers_only_archives_from_the_store(registered, tmp_path: Path) -> None:
    from serving.tsctl import restore

    saved = registered.serve_dir / "models.json"
    saved.write_text(json.dumps([{"name": "planted", "url": str(tmp_path), "workers": 1},
                                 {"name": "planted2", "url": "../outside.mar", "workers": 1}]))
    try:
        restore(registered)
    finally:
        saved.unlink()
    code, body = registered.call("management", "GET", "/models")
    assert "planted" not in body


def test_ts_config_file_in_the_environment_is_ignored(registered, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import tsctl

    other = tmp_path / "other.properties"
    other.write_text("inference_address=http://0.0.0.0:9\n")
    monkeypatch.setenv("TS_CONFIG_FILE", str(other))
    env = registered.env()
    assert "TS_CONFIG_FILE" not in env
    assert tsctl.read_properties(registered.config)["inference_address"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("api", ["grpc_inference", "grpc_management"])
def test_a_taken_grpc_port_is_named_before_starting(tmp_path: Path, api: str) -> None:
    import socket
    import subprocess

    from serving import tsctl

    config = tsctl.config_on_free_ports(Path(tsctl.ROOT) / "config.properties", tmp_path / "config.properties")
    port = int(tsctl.read_properties(config)[f"{api}_port"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run([str(Path(tsctl.ROOT) / "scripts" / "serve.sh"), "start"], capture_output=True,
                                text=True, timeout=60,
                                env={**os.environ, "TS_CONFIG": str(config), "SERVE_DIR": str(tmp_path / "serve")})
    assert result.returncode == 2
    assert f"port of the {api.replace('_', ' ')} API (127.0.0.1:{port}) is already in use" in result.stderr

"""serving/server_env.py: what a model server's process starts with, and the image agrees."""

from __future__ import annotations

from pathlib import Path

from handlers.kernel_caches import CACHE_ENV
from serving.server_env import ALLOCATOR_ENV, apply

ROOT = Path(__file__).resolve().parent.parent


def test_the_defaults_fill_in_and_a_value_already_set_wins() -> None:
    assert apply({}) == {**CACHE_ENV, **ALLOCATOR_ENV}
    assert apply({"MALLOC_MMAP_THRESHOLD_": "1"})["MALLOC_MMAP_THRESHOLD_"] == "1"
    assert int(ALLOCATOR_ENV["MALLOC_TRIM_THRESHOLD_"]) > int(ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"])


def test_the_image_entrypoint_exports_the_same_values() -> None:
    entrypoint = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    for name, value in {**CACHE_ENV, **ALLOCATOR_ENV}.items():
        assert f'{name}="${{{name}:-{value}}}"' in entrypoint, name


def test_the_kserve_servers_inferenceservice_sets_them_too() -> None:
    """Its container runs the server with its own command, past the entrypoint."""
    import yaml

    manifest = yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice-kserve-server.yaml").read_text())
    (container,) = manifest["spec"]["predictor"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert ALLOCATOR_ENV.items() <= env.items()

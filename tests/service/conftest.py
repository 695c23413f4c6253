"""Service fixtures: apps built around the session's test Stylizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from helpers import noise_image
from service.app import create_app
from service.settings import Settings


@pytest.fixture
def make_client(stylizer, decoder_path, tmp_path) -> Iterator[Callable[..., TestClient]]:
    """make_client(**settings) -> a started TestClient (lifespan run) around the shared Stylizer."""
    clients = []

    def make(**overrides) -> TestClient:
        base = dict(decoder=decoder_path, warmup=False, presets_dir=tmp_path / "no-presets",
                    frontend_dir=tmp_path / "no-frontend", default_content_size=0, default_style_size=64,
                    state_dir=tmp_path / "state")
        settings = Settings(**{**base, **overrides})
        client = TestClient(create_app(settings, stylizer=stylizer))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def presets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "presets"
    d.mkdir()
    noise_image(80, 60, seed=40).save(d / "Blue_Waves.png")
    (d / "readme.txt").write_text("not a style")
    return d

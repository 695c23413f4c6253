"""End-to-end fixtures: a real service process shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverproc import Server, run_server


@pytest.fixture(scope="module")
def server_env(decoder_path, tmp_path_factory) -> dict[str, str]:
    from helpers import noise_image

    presets = tmp_path_factory.mktemp("presets")
    noise_image(64, 48, seed=40).save(presets / "ocean.png")
    return {"ADAIN_DECODER": str(decoder_path), "ADAIN_PRECISION": "fp32", "ADAIN_PRESETS_DIR": str(presets),
            "ADAIN_DEFAULT_CONTENT_SIZE": "0", "ADAIN_DEFAULT_STYLE_SIZE": "64",
            "ADAIN_FRONTEND_DIR": str(tmp_path_factory.mktemp("nofrontend") / "none")}


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("server"), **server_env) as s:
        yield s

"""End-to-end fixtures: a real service process shared by a module's tests.

Servers start without the warm-up and with direct convolutions (``server_env``): the warm-up only
measures this machine and picks kernels, which the in-process tests check, and about 30 starts
would each pay for it. The shared ``server`` starts as users run it, warm-up and all."""

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
            "ADAIN_FRONTEND_DIR": str(tmp_path_factory.mktemp("nofrontend") / "none"),
            "ADAIN_WARMUP": "0", "ADAIN_CONVOLUTION": "direct"}


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory) -> Iterator[Server]:
    env = {**server_env, "ADAIN_WARMUP": "1", "ADAIN_CONVOLUTION": "auto"}
    with run_server(tmp_path_factory.mktemp("server"), **env) as s:
        yield s

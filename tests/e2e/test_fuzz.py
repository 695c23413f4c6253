"""Schemathesis against the live /openapi.json of a real server: >= 1000 generated requests over
every operation (examples, coverage, fuzzing and stateful phases), zero 5xx, every response's
status, content type, headers and body conforming to the schema, and API keys enforced.

Two checks are left out. positive_data_acceptance ("schema-valid requests must succeed"): no
OpenAPI schema can say "this file must be a decodable image" or "send a style file or a
style_id", so schema-valid garbage is rightly refused with 415/400. ensure_resource_availability
("a created resource can be fetched"): it follows POST /styles to GET /styles/{id}/thumbnail,
which is 404 by design for an uploaded style (only presets have thumbnails: a user's image is
never kept); GET /styles/{id} itself is checked by the stateful phase's other links.

Sizes are capped (ADAIN_MAX_OUTPUT_PIXELS) so every generated request stays cheap on a CPU: the
run checks behaviour, and a 2000² style a fuzzer asks for would only measure the CPU."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serverproc import run_server

KEY = "fuzz-key"
MIN_REQUESTS = 1000


def test_fuzz_the_live_api(server_env, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    env = {**server_env, "ADAIN_API_KEYS": KEY, "ADAIN_DEFAULT_CONTENT_SIZE": "32", "ADAIN_DEFAULT_STYLE_SIZE": "32",
           "ADAIN_MAX_OUTPUT_PIXELS": str(256 * 256)}
    with run_server(tmp_path, **env) as server:
        run = subprocess.run(
            [st, "run", f"{server.url}/openapi.json", "--max-examples", "120", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance,ensure_resource_availability", "--header", f"X-API-Key: {KEY}", "--seed", "1",
             "--generation-database", "none", "--request-timeout", "300", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        out = run.stdout + run.stderr
        print(out[-3000:])
        generated = re.search(r"(\d+) generated", out)
        assert run.returncode == 0, out[-6000:]
        assert generated and int(generated.group(1)) >= MIN_REQUESTS, out[-2000:]
        with server.client() as c:
            assert 'status="5' not in c.get("/metrics").text  # no 5xx on any route, by the server's own count
        assert server.proc.poll() is None and "Traceback" not in server.log.read_text()

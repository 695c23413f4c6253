"""Security properties that a refactor could silently lose."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import CONTENT, STYLE_A, files
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_every_torch_load_is_weights_only():
    """Weights are read with safetensors or torch.load(weights_only=True): never a pickle that
    could run code. (Users' uploads never reach either: they go through Pillow only.)"""
    calls = []
    for path in [*(REPO / "model").rglob("*.py"), *(REPO / "service").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, kw.get("weights_only")))
    assert calls and all(w == "True" for _, w in calls), calls
    sources = "\n".join(p.read_text() for d in ("model", "service") for p in (REPO / d).rglob("*.py"))
    assert "import pickle" not in sources and "pickle.load" not in sources


def test_safe_defaults():
    s = Settings()
    assert s.host == "127.0.0.1"  # 0.0.0.0 only where a container sets it
    assert s.cors_origins == [] and s.api_keys == []
    assert s.max_total_bytes <= 64 * 1024 * 1024 and s.max_image_pixels <= 8192 * 8192
    assert s.tile_size <= 2048  # what bounds a request's memory, whatever its size


def test_cors_is_closed_by_default_and_an_allowlist_when_set(make_client):
    closed = make_client()
    r = closed.post("/stylize", files=files(CONTENT, STYLE_A), headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = closed.options("/stylize", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    listed = make_client(cors_origins="https://app.example")
    ok = listed.options("/stylize", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    other = listed.options("/stylize", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_a_long_file_name_is_cut_in_messages(make_client):
    c = make_client()
    r = c.post("/stylize", files=[("content", ("c.png", CONTENT, "image/png")),
                                  ("style", ("x" * 500 + ".png", b"not an image", "image/png"))])
    assert r.status_code == 415 and len(r.json()["detail"]) < 300


def test_uploads_never_spill_to_disk(make_client, monkeypatch):
    """Starlette spools multipart files over 1 MB to a temp file; ours stay in memory (the body
    limit bounds them). A part larger than the per-file limit is refused without touching disk."""
    import tempfile

    spilled = []
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", lambda self: spilled.append(self))
    c = make_client()
    big = b"\0" * (25 * 1024 * 1024)  # over the 20 MB per-file limit, under the 50 MB body limit
    r = c.post("/stylize", files=[("content", ("c.png", big, "image/png")), ("style", ("s.png", STYLE_A, "image/png"))])
    assert r.status_code == 413 and "ADAIN_MAX_FILE_BYTES" in r.json()["detail"]
    assert spilled == []

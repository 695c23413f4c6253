"""Malformed and odd inputs against a real uvicorn process: each gets a 4xx with a message that
says what was wrong, or a correct image; never a 500; the server keeps serving throughout."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png
from serverproc import run_server

SIZE = 64  # the server's default content/style shorter side here: small images, quick runs


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(w: int = 50_000, h: int = 50_000) -> bytes:
    """A few hundred bytes whose header declares w x h RGB pixels (7.5 GB decoded)."""
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def damaged_png(where: str) -> bytes:
    """A PNG with one IDAT byte flipped: in the chunk's CRC only, or in its compressed data."""
    data = bytearray(png(noise_image(48, 32, seed=9)))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    data[idat + 4 + (length if where == "crc" else 2)] ^= 0xFF
    return bytes(data)


def animated_gif() -> bytes:
    frames = [noise_image(48, 32, seed=s).convert("P") for s in range(3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff() -> bytes:
    pages = [noise_image(48, 32, seed=s) for s in range(3)]
    return encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display -> 32 x 48 upright
    return encoded(noise_image(48, 32, seed=3), "JPEG", exif=exif)


def palette_with_transparency() -> bytes:
    p = noise_image(48, 32, seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(p, "PNG", transparency=0)


SIXTEEN_BIT = encoded(Image.fromarray((np.arange(48 * 32).reshape(32, 48) * 40).astype(np.uint16)), "PNG")

# (name, multipart files, form fields, expected status, a word the message must contain or the
# expected output size (w, h) for a 200)
CASES = [
    ("empty file", files(b"", STYLE_A), {}, 415, "content: the file is empty"),
    ("text named .png", [("content", ("photo.png", b"hello, I am text", "image/png")),
                         ("style", ("s.png", STYLE_A, "image/png"))], {}, 415, "not a readable image"),
    ("truncated JPEG", files(encoded(noise_image(48, 32), "JPEG")[:300], STYLE_A), {}, 415, "truncated"),
    ("JPEG cut in its pixel data", files(encoded(noise_image(480, 320), "JPEG")[:3000], STYLE_A), {}, 415, "truncated"),
    # Pillow checks chunk CRCs only in verify(): with the data intact the image is correct.
    ("PNG with a broken CRC, data intact", files(damaged_png("crc"), STYLE_A), {}, 200, (96, 64)),
    ("PNG with corrupt compressed data", files(damaged_png("data"), STYLE_A), {}, 415, "corrupt"),
    ("SVG", files(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
                  STYLE_A), {}, 415, "not a readable image"),
    ("HTML as a style", files(CONTENT, b"<!doctype html><html><body>hi</body></html>"), {}, 415, "style #1"),
    ("1x1 image", files(png(Image.new("RGB", (1, 1), (200, 30, 30))), STYLE_A), {}, 200, (SIZE, SIZE)),
    ("1x1 image kept at 1x1", files(png(Image.new("RGB", (1, 1))), STYLE_A), {"content_size": "0"}, 200, (1, 1)),
    ("65535 px wide", files(png(Image.new("RGB", (65535, 1))), STYLE_A), {}, 413, "pixels"),
    ("decompression bomb (declares 50k x 50k)", files(png_bomb(), STYLE_A), {}, 413, "pixels"),
    ("animated GIF: first frame", files(animated_gif(), STYLE_A), {}, 200, (96, 64)),
    ("multi-page TIFF: first page", files(multipage_tiff(), STYLE_A), {}, 200, (96, 64)),
    ("16-bit grayscale PNG", files(SIXTEEN_BIT, STYLE_A), {}, 200, (96, 64)),
    ("CMYK JPEG", files(encoded(noise_image(48, 32).convert("CMYK"), "JPEG"), STYLE_A), {}, 200, (96, 64)),
    ("palette PNG with transparency", files(palette_with_transparency(), STYLE_A), {}, 200, (96, 64)),
    ("EXIF-rotated JPEG is made upright", files(exif_rotated_jpeg(), STYLE_A), {}, 200, (64, 96)),
    ("mask of the wrong aspect ratio", files(CONTENT, STYLE_A, STYLE_B, mask=png(Image.new("L", (10, 40)))), {},
     400, "aspect"),
    ("mask with one style", files(CONTENT, STYLE_A, mask=png(Image.new("L", (96, 64)))), {}, 400, "2 styles"),
    ("9 styles (limit 8)", files(CONTENT, *[STYLE_A] * 9), {}, 400, "at most 8"),
    ("negative weight", files(CONTENT, STYLE_A, STYLE_B), {"weights": "1,-1"}, 400, "weights"),
    ("NaN weight", files(CONTENT, STYLE_A, STYLE_B), {"weights": "nan,1"}, 400, "weights"),
    ("weights summing to zero", files(CONTENT, STYLE_A, STYLE_B), {"weights": "0,0"}, 400, "weights"),
    ("too few weights", files(CONTENT, STYLE_A, STYLE_B), {"weights": "1"}, 400, "weights"),
    ("weights that are words", files(CONTENT, STYLE_A), {"weights": "heavy"}, 400, "numbers"),
    ("alpha above 1", files(CONTENT, STYLE_A), {"alpha": "1.5"}, 422, "alpha"),
    ("alpha below 0", files(CONTENT, STYLE_A), {"alpha": "-0.1"}, 422, "alpha"),
    ("alpha NaN", files(CONTENT, STYLE_A), {"alpha": "nan"}, 422, "alpha"),
    ("content_size over its maximum", files(CONTENT, STYLE_A), {"content_size": "99999"}, 422, "content_size"),
    ("unknown style_id", files(CONTENT), {"style_id": "no-such-style"}, 400, "not registered"),
    ("no style at all", files(CONTENT), {}, 400, "at least one style"),
    ("missing content", [("style", ("s.png", STYLE_A, "image/png"))], {}, 422, "content"),
    ("a 1 MB text field", files(CONTENT, STYLE_A), {"style_id": "x" * 1_000_000}, 400, "size"),
    ("unknown output format", files(CONTENT, STYLE_A), {"format": "bmp"}, 422, "format"),
]


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory):
    env = {**server_env, "ADAIN_DEFAULT_CONTENT_SIZE": str(SIZE), "ADAIN_DEFAULT_STYLE_SIZE": str(SIZE)}
    with run_server(tmp_path_factory.mktemp("malformed"), **env) as s:
        yield s


@pytest.mark.parametrize("name,parts,fields,status,expect", CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_gets_a_clear_answer(server, name, parts, fields, status, expect):
    with server.client() as c:
        r = c.post("/stylize", files=parts, data=fields)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        if status == 200:
            assert r.headers["content-type"] == "image/png"
            img = Image.open(io.BytesIO(r.content))
            img.load()
            assert img.mode == "RGB" and img.size == expect
        else:
            detail = r.json()["detail"]
            assert isinstance(detail, str) and expect.lower() in detail.lower(), detail
        # still serving, and serving correctly
        ok = c.post("/stylize", files=files(CONTENT, STYLE_A))
        assert ok.status_code == 200 and Image.open(io.BytesIO(ok.content)).size == (96, 64)
    assert server.proc.poll() is None


def test_no_500_was_ever_answered(server):
    with server.client() as c:
        metrics = c.get("/metrics").text
    assert 'status="500"' not in metrics
    assert "Traceback" not in server.log.read_text()

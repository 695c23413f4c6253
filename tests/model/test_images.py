"""Image decoding rules: every mode to 8-bit RGB, EXIF, alpha, bombs, garbage."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers import noise_image, phone_photo
from model.images import ImageTooLarge, InvalidImage, encode_png, open_image, resize_shorter, scaled_size, to_image, to_tensor


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_transparency_is_composited_over_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = open_image(encoded(rgba, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparent_index():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    out = open_image(encoded(p, "PNG", transparency=1))
    assert out.getpixel((2, 2)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    a = np.full((4, 4), 32896, np.uint16)  # 50 % grey in 16 bits
    out = open_image(encoded(Image.fromarray(a), "PNG"))
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_exif_rotation_is_applied():
    img = noise_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = open_image(encoded(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_heic_phone_photos_are_read_upright_and_checked_from_the_header():
    out = open_image(phone_photo())
    assert out.size == (20, 40) and out.mode == "RGB"  # turned once, as shown on the phone
    r, g, _ = out.getpixel((10, 2))  # orientation 6 turns clockwise: the left edge is now the top
    assert g > 150 and r < 60
    with pytest.raises(ImageTooLarge):
        open_image(phone_photo(400, 300, 1), max_pixels=100_000)
    with pytest.raises(InvalidImage):
        open_image(phone_photo()[:200])  # truncated


def test_avif_is_read():
    assert open_image(encoded(noise_image(40, 24), "AVIF")).size == (40, 24)


def test_cmyk_and_first_frame_of_animation():
    assert open_image(encoded(noise_image(16, 16).convert("CMYK"), "JPEG")).mode == "RGB"
    frames = [Image.new("RGB", (10, 12), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = open_image(gif)
    assert out.size == (10, 12) and out.getpixel((5, 5))[0] > 200


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_garbage_is_invalid(data):
    with pytest.raises(InvalidImage):
        open_image(data)


def test_truncated_jpeg_is_invalid():
    data = encoded(noise_image(64, 64), "JPEG")
    with pytest.raises(InvalidImage):
        open_image(data[: len(data) // 2])


def test_pixel_limit_checked_before_decoding():
    # a 20000x20000 PNG header with almost no data: a decompression bomb
    data = encoded(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageTooLarge, match="400000000"):
        open_image(data, max_pixels=50_000_000)


def test_resize_and_tensor_round_trip():
    img = noise_image(300, 200)
    small = resize_shorter(img, 100)
    assert small.size == (150, 100) == scaled_size(img.size, 100)
    assert resize_shorter(img, 0) is img
    back = to_image(to_tensor(img))
    assert np.array_equal(np.asarray(back), np.asarray(img))


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (64, 65)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_encoder_is_lossless_and_valid(size, level):
    img = Image.fromarray(np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    data = encode_png(img, level)
    back = Image.open(io.BytesIO(data))
    back.verify()  # checks every chunk's CRC
    back = Image.open(io.BytesIO(data))
    assert back.format == "PNG" and back.mode == "RGB" and back.size == size
    assert np.array_equal(np.asarray(back), np.asarray(img))


def test_png_encoder_keeps_smooth_images_small():
    smooth = noise_image(256, 256, seed=3).resize((512, 512), Image.Resampling.BICUBIC)
    assert len(encode_png(smooth)) < len(encoded(smooth, "PNG", compress_level=1)) * 1.1


@pytest.mark.parametrize("fmt,plugin", [("TIFF", "TiffImagePlugin.TiffImageFile"),
                                        ("GIF", "GifImagePlugin.GifImageFile")])
def test_a_file_of_many_pages_costs_its_first_page_only(fmt, plugin, monkeypatch):
    """A 3000-page file is opened at its first page: no page after it is looked up (asking for the
    page count walks every page, each from the first in a TIFF: O(pages²) for a 1 MB file)."""
    import importlib

    module, cls = plugin.split(".")
    image_class = getattr(importlib.import_module(f"PIL.{module}"), cls)
    pages = [Image.new("RGB", (2, 2), (i % 256, 0, 0)) for i in range(3000)]
    buf = io.BytesIO()
    pages[0].save(buf, fmt, save_all=True, append_images=pages[1:])
    seeks: list[int] = []
    real = image_class._seek  # what seek and n_frames both go through
    monkeypatch.setattr(image_class, "_seek", lambda self, frame, *a: seeks.append(frame) or real(self, frame, *a))
    img = open_image(buf.getvalue())
    assert img.size == (2, 2) and img.getpixel((0, 0)) == (0, 0, 0)
    assert max(seeks, default=0) == 0, f"looked at page {max(seeks)}"

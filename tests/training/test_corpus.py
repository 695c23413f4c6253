"""The corpus tool's filters and output, on generated images (no apt-get in tests)."""

from __future__ import annotations

import io
import struct
import zlib
from collections import Counter

import numpy as np
from PIL import Image

from helpers import noise_image, png
from training.corpus import (PACKAGES, Deduplicator, Package, assemble_puzzles, build, pinned_heldout, prepare,
                          read_gimp_pattern, read_rcc, safe_name)


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_filters_drop_what_they_should():
    assert prepare("a/photo.jpg", jpeg(noise_image(400, 300)))[1] == "kept"
    assert prepare("a/small.png", png(noise_image(200, 300)))[1] == "small"
    assert prepare("a/banner.png", png(noise_image(1200, 300)))[1] == "aspect"
    assert prepare("a/flat.png", png(Image.new("RGB", (400, 400), (90, 90, 200))))[1] == "flat"
    assert prepare("a/rock_nm.png", png(noise_image(400, 400)))[1] == "technical map"
    assert prepare("a/junk.png", b"not an image")[1] == "unreadable"
    ui = Image.new("RGB", (400, 300), (240, 240, 240))
    ui.paste((30, 30, 30), (0, 0, 400, 40))
    ui.paste(noise_image(100, 100), (10, 60))
    assert prepare("a/screenshot.png", png(ui))[1] == "flat colours"


def test_transparent_images_are_cropped_composited_or_dropped():
    sprite = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    sprite.paste(noise_image(150, 150).convert("RGBA"), (0, 0))
    assert prepare("portrait.png", png(sprite))[1] == "mostly transparent"
    portrait = Image.new("RGBA", (500, 420), (0, 0, 0, 0))
    portrait.paste(noise_image(300, 300).convert("RGBA"), (100, 100))
    portrait.paste(noise_image(400, 300, seed=3).convert("RGBA"), (100, 0), mask=Image.new("L", (400, 300), 255))
    img, why = prepare("portrait.png", png(portrait))
    assert why == "kept" and img.mode == "RGB" and img.size == (400, 400)  # cropped to the opaque box


def test_large_images_are_shrunk_to_512():
    img, why = prepare("big.jpg", jpeg(noise_image(1600, 1000)))
    assert why == "kept" and min(img.size) == 512 and img.size == (819, 512)


def test_near_duplicates_are_dropped():
    d = Deduplicator()
    a = noise_image(400, 300, seed=1)
    assert d.is_new(a)
    assert not d.is_new(Image.open(io.BytesIO(jpeg(a.resize((533, 400))))))
    assert d.is_new(noise_image(400, 300, seed=2))


def test_gimp_pattern_reader():
    pixels = np.asarray(noise_image(300, 260)).tobytes()
    name = b"stone\0"
    data = struct.pack(">5I4s", 24 + len(name), 1, 300, 260, 3, b"GPAT") + name + pixels
    img = read_gimp_pattern(data)
    assert img.size == (300, 260) and img.tobytes() == pixels
    assert prepare("patterns/stone.pat", data)[1] == "kept"


def test_build_writes_split_manifest_and_report(tmp_path):
    photos = Package("photos-pkg", "content", ".", "CC0")
    art = Package("art-pkg", "style", ".", "GPL-2+")
    items = [(photos, "1.0", f"usr/share/p/{i}.jpg", jpeg(noise_image(300, 300, seed=i))) for i in range(5)]
    items += [(art, "2:3.1", f"usr/share/a/{i}.png", png(noise_image(320, 280, seed=100 + i))) for i in range(4)]
    items.append((art, "2:3.1", "usr/share/a/tiny.png", png(noise_image(20, 20))))
    counts = build(iter(items), tmp_path, val_count=2)
    assert counts == {"content": 3, "val/content": 2, "style": 2, "val/style": 2}
    assert len(list((tmp_path / "val" / "style").glob("*.jpg"))) == 2
    rows = (tmp_path / "MANIFEST.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["file", "split", "package", "version", "source", "licence", "sha256"]
    assert len(rows) == 10 and any("art-pkg\t2:3.1\tusr/share/a/0.png\tGPL-2+" in r for r in rows)
    assert "art-pkg\tstyle\tsmall\t1" in (tmp_path / "REPORT.txt").read_text()


def test_pinned_names_stay_held_out_and_the_rest_top_up(tmp_path):
    photos = Package("photos-pkg", "content", ".", "CC0")
    items = [(photos, "1.0", f"usr/share/p/{i}.jpg", jpeg(noise_image(300, 300, seed=i))) for i in range(6)]
    names = [safe_name("photos-pkg", path) for _, _, path, _ in items]
    plain = tmp_path / "plain"
    build(iter(items), plain, val_count=2)
    by_hash = {p.name for p in (plain / "val" / "content").glob("*.jpg")}
    trained = [n for n in names if n not in by_hash]
    pinned = {trained[0]: "content", "absent-pkg__gone.jpg": "content", trained[1]: "photos"}
    counts = build(iter(items), tmp_path / "pinned", val_count=2, pinned=pinned)
    held = {p.name for p in (tmp_path / "pinned" / "val" / "content").glob("*.jpg")}
    # the pinned name is held out although the hash would train on it; the missing one is topped up
    assert len(held) == 2 and trained[0] in held and trained[1] not in held
    # a name pinned to another folder is held out there, beside the split, not counted in it
    assert [p.name for p in (tmp_path / "pinned" / "val" / "photos").glob("*.jpg")] == [trained[1]]
    assert counts == {"val/content": 2, "val/photos": 1, "content": 3}


def test_shipped_heldout_list_pins_the_split_and_two_extra_sets():
    pinned = pinned_heldout()
    roles = {(pk.role, pk.name) for pk in PACKAGES}
    role_of = {"content": "content", "photos": "content", "style": "style", "paintings": "style"}
    assert all(n.endswith(".jpg") for n in pinned)
    assert Counter(pinned.values()) == {"content": 24, "style": 24, "photos": 16, "paintings": 8}
    assert all((role_of[folder], name.split("__")[0]) in roles for name, folder in pinned.items())


def make_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A minimal Qt resource bundle (format 2): /img/<name> for each file, optionally zlib'ed."""
    names, name_offsets = b"", {}
    for n in ["img", *files]:
        name_offsets[n] = len(names)
        encoded = n.encode("utf-16-be")
        names += struct.pack(">HI", len(n), 0) + encoded
    payload, data_offsets = b"", {}
    for n, (blob, compress) in files.items():
        data_offsets[n] = len(payload)
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
        payload += struct.pack(">I", len(stored)) + stored
    tree = struct.pack(">IHII", 0, 2, 1, 1) + b"\0" * 8  # root: one child, entry 1
    tree += struct.pack(">IHII", name_offsets["img"], 2, len(files), 2) + b"\0" * 8
    for n, (_, compress) in files.items():
        tree += struct.pack(">IHHHI", name_offsets[n], 1 if compress else 0, 0, 0, data_offsets[n]) + b"\0" * 8
    header = 20
    return (struct.pack(">4sIIII", b"qres", 2, header, header + len(tree), header + len(tree) + len(payload))
            + tree + payload + names)


def test_qt_resource_bundles_are_read():
    photo = jpeg(noise_image(300, 300))
    rcc = make_rcc({"photo.jpg": (photo, True), "notes.txt": (b"hello", False)})
    files = dict(read_rcc(rcc))
    assert files == {"/img/photo.jpg": photo, "/img/notes.txt": b"hello"}


def test_puzzle_pieces_are_put_back_together():
    def piece(colour: str) -> bytes:
        return png(Image.new("RGBA", (10, 10), colour))

    board = """QtObject { property var levels : [
      { "pixmapfile" : "image/bg.svg", "type" : "SHAPE_BACKGROUND_IMAGE", "width": 40, "height": 20 },
      { "pixmapfile" : "image/Wave_a1.webp", "x" : "0.375", "y" : "0.5" },
      { "pixmapfile" : "image/Wave_a2.webp", "x" : "0.625", "y" : "0.5" } ] }"""
    files = {"/p/resource/board/board1_0.qml": board.encode(), "/p/resource/image/Wave_a1.webp": piece("red"),
             "/p/resource/image/Wave_a2.webp": piece("blue"),
             "/p/resource/board/board2_0.qml": board.replace("Wave_a2", "Gone_a2").encode(),  # a piece missing
             "/p/Activity.qml": b"QtObject {}"}
    out = list(assemble_puzzles(files))
    assert [name for name, _ in out] == ["/p/resource/image/Wave_assembled.png"]
    img = Image.open(io.BytesIO(out[0][1]))
    assert img.size == (20, 10)  # cropped to the pieces, side by side where their centres say
    assert img.getpixel((4, 5)) == (255, 0, 0, 255) and img.getpixel((15, 5)) == (0, 0, 255, 255)

"""Build an offline bootstrap training corpus from Debian packages.

    python -m training.corpus --out data/

COCO and WikiArt cannot be downloaded here; Debian packages carry photographs (landscape and
wallpaper packages: content) and paintings, drawn art and textures (game art: style). For each
package in PACKAGES: `apt-get download` (no install) into OUT/debs, read the .deb's files in memory
(also inside .zip/.pk3 archives and Qt .rcc bundles, where GCompris' jigsaw paintings are put back
together), keep the images whose path matches, and filter them:

- transparent images (portraits, sprites): under 45 % opaque are dropped, the rest are cropped to
  their opaque part and composited over white;
- shorter side < 256 px, aspect ratio over 3 (sprite sheets, banners), normal/specular/height maps;
- near-flat images (grey-level std < 12) and flat-colour art/UI (8 colours cover > 60 % of pixels);
- near-duplicates (64-bit difference hash within Hamming distance 5 of a kept image).

Kept images are shrunk to a shorter side of at most 512 and written as JPEG to OUT/content and
OUT/style; a fixed held-out split goes to OUT/val/content and OUT/val/style: the names pinned in
training/heldout.txt, topped up to --val-count per role by a hash of the name if a package lost some.
Names it pins to other folders (OUT/val/photos, OUT/val/paintings: kinds the split lacks) are held
out too, beside it. OUT/MANIFEST.tsv lists every file with its package, version, source path,
licence and sha256; OUT/REPORT.txt counts what each package gave and why images were dropped.
Never commit the corpus (licences are mostly GPL / CC-BY-SA).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.images import InvalidImage, open_image, resize_shorter

MIN_SIDE, MAX_SIDE = 256, 512
MIN_OPAQUE = 0.45
MAX_ASPECT = 3.0
MIN_STD = 12.0
MAX_TOP8_SHARE = 0.60
DUP_DISTANCE = 5
RASTER = re.compile(r"\.(png|jpe?g|webp|bmp|tga|tiff?|pat)$", re.I)
TECHNICAL_MAP = re.compile(r"(_nm|_norm|normal|_spec|specular|_height|_bump|_gloss|_disp|_h)\.[a-z]+$", re.I)


@dataclass(frozen=True)
class Package:
    name: str
    role: str  # "content" or "style"
    include: str  # regex on the path inside the .deb (or inside an archive in it)
    licence: str


GCOMPRIS_VAN_GOGH = r"(Gogh|Tanguy|Auvers)"
WESNOTH = ["data", "did", "dm", "dw", "ei", "httt", "l", "low", "nr", "sof", "sota", "sotbe", "thot", "trow",
           "tsg", "ttb", "utbs"]
PACKAGES: tuple[Package, ...] = (
    # content: photographs
    Package("endless-sky-data", "content", r"images/land/", "public domain / CC-BY-SA (per file)"),
    Package("scratch", "content", r"Media/Backgrounds/", "CC-BY-SA-3.0"),
    Package("mate-backgrounds", "content", r"backgrounds/mate/nature/", "CC-BY-SA / GPL"),
    Package("sddm-theme-maldives", "content", r"maldives/(maldives|background)\.jpg$", "CC-BY-SA"),
    Package("lomiri-wallpapers-20.04", "content", r"backgrounds/(Fossa|Kleiber)", "CC-BY-SA"),
    Package("lxqt-themes", "content", r"wallpapers/(after-the-rain|fog|flowers|Butterfly-Kenneth-Wimer|appleflower)",
            "CC-BY-SA / GPL"),
    Package("palapeli-data", "content", r"palapeli/collection/", "CC-BY / public domain"),
    Package("python3-skimage", "content", r"skimage/data/(astronaut|chelsea|coffee|rocket|motorcycle|coins)",
            "CC0 / public domain"),
    Package("gcompris-qt-data", "content",
            rf"(explore_monuments/resource/|erase/resource/[^/]+\.webp$|"
            rf"details/resource/image/(?!.*{GCOMPRIS_VAN_GOGH}).*_background\.webp$)",
            "CC-BY-SA / CC-BY / public domain (credited per file)"),
    Package("opencv-doc", "content", r"examples/data/(baboon|building|fruits|home|orange|apple|squirrel_cls|messi5|"
            r"aero1|aero3|butterfly|stuff|HappyFish|smarties)\.", "mixed (BSD docs; per file)"),
    # style: paintings, drawn art, textures
    *(Package(f"wesnoth-1.16-{p}", "style", r"/images/(portraits|story|maps)/", "GPL-2+") for p in WESNOTH),
    Package("ufoai-textures", "style", r"textures/", "GPL-2+ / CC-BY-SA / public domain"),
    Package("krita-data", "style", r"krita/patterns/", "LGPL / CC0"),
    Package("gimp-data-extras", "style", r"patterns/", "GPL"),
    Package("mypaint-data-extras", "style", r"backgrounds/", "CC0"),
    Package("plasma-workspace-wallpapers", "style", r"wallpapers/[^/]+/contents/images", "LGPL / CC-BY-SA"),
    Package("ukui-wallpapers", "style", r"backgrounds/", "GPL / CC-BY-SA"),
    Package("desktop-base", "style", r"desktop-base/.*(wallpaper|background)", "GPL / CC-BY-SA"),
    Package("xfdesktop4-data", "style", r"backgrounds/xfce/", "GPL"),
    Package("mate-backgrounds", "style", r"backgrounds/mate/(abstract|desktop)/", "CC-BY-SA / GPL"),
    Package("lomiri-wallpapers-20.04", "style", r"backgrounds/(Infinite-Sea|Painting-Colors)", "CC-BY-SA"),
    Package("opencv-doc", "style", r"examples/data/starry_night\.jpg$", "public domain (Van Gogh)"),
    Package("gcompris-qt-data", "style", rf"details/resource/image/.*{GCOMPRIS_VAN_GOGH}.*_background\.webp$",
            "public domain (Van Gogh paintings)"),
    # the paintings puzzle's pieces put back together; its one Van Gogh is left to the held-out set
    Package("gcompris-qt-data", "style", r"paintings/resource/image/(?!gogh).*_assembled\.png$",
            "public domain (paintings, prints)"),
)


# --- reading packages ------------------------------------------------------------------------------

def download(names: list[str], debs: Path) -> dict[str, Path]:
    """`apt-get download` each package not already in ``debs``; returns name -> .deb path."""
    debs.mkdir(parents=True, exist_ok=True)
    debs.chmod(0o777)  # apt's sandbox user writes there
    missing = [n for n in names if not list(debs.glob(f"{n}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    return {n: sorted(debs.glob(f"{n}_*.deb"))[-1] for n in names}


def deb_version(deb: Path) -> str:
    return deb.name.split("_")[1].replace("%3a", ":")


def read_rcc(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Files inside a Qt resource bundle (.rcc, format 1-3): a tree of 14/22-byte entries, UTF-16
    names, payloads optionally zlib-compressed (zstd payloads are skipped)."""
    magic, version, tree, payload, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource bundle")
    entry = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        base = tree + index * entry
        name_offset, flags = struct.unpack(">IH", data[base:base + 6])
        path = f"{prefix}/{name(name_offset)}" if index else ""
        if flags & 2:  # directory: children are consecutive entries
            count, first = struct.unpack(">II", data[base + 6:base + 14])
            stack.extend((first + i, path) for i in range(count))
            continue
        (offset,) = struct.unpack(">I", data[base + 10:base + 14])
        (size,) = struct.unpack(">I", data[payload + offset:payload + offset + 4])
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        if flags & 4:
            continue
        yield path, zlib.decompress(blob[4:]) if flags & 1 else blob


def deb_files(deb: Path, include: re.Pattern) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the raster images in a .deb whose path matches, also inside .pk3/.zip and
    Qt .rcc bundles."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name.endswith(".rcc"):
                bundle = dict(read_rcc(tar.extractfile(member).read()))
                for inner, blob in [*bundle.items(), *assemble_puzzles(bundle)]:
                    if RASTER.search(inner) and include.search(inner):
                        yield f"{member.name}!{inner}", blob
            elif member.name.endswith((".pk3", ".zip")):
                data = tar.extractfile(member).read()
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for inner in z.namelist():
                        if RASTER.search(inner) and include.search(inner):
                            yield f"{member.name}!{inner}", z.read(inner)
            elif RASTER.search(member.name) and include.search(member.name):
                yield member.name, tar.extractfile(member).read()
    proc.wait()


PUZZLE_PIECE = re.compile(r'"pixmapfile"\s*:\s*"([^"]+)",\s*"x"\s*:\s*"([\d.]+)",\s*"y"\s*:\s*"([\d.]+)"')


def assemble_puzzles(files: Mapping[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """GCompris' paintings activity ships each painting as jigsaw pieces (RGBA) and a board .qml
    giving the board's size and each piece's centre as a fraction of it: put them back together.
    Yields (DIR/image/NAME_assembled.png, PNG bytes), NAME from the pieces' names."""
    for board, text in files.items():
        if not board.endswith(".qml") or b"SHAPE_BACKGROUND_IMAGE" not in text:
            continue
        qml = text.decode("utf-8", "replace")
        size = [re.search(rf'"{k}"\s*:\s*(\d+)', qml) for k in ("width", "height")]
        pieces = PUZZLE_PIECE.findall(qml)
        root = board.rsplit("/", 2)[0]  # pieces are named relative to the board folder's parent
        if None in size or not pieces or not all(f"{root}/{f}" in files for f, _, _ in pieces):
            continue
        w, h = (int(m.group(1)) for m in size)
        canvas = Image.new("RGBA", (w, h))
        for f, x, y in pieces:
            piece = Image.open(io.BytesIO(files[f"{root}/{f}"])).convert("RGBA")
            left, top = round(float(x) * w - piece.width / 2), round(float(y) * h - piece.height / 2)
            canvas.alpha_composite(piece, (left, top))
        name = re.sub(r"[_-]([a-z]\d|\d+)\.\w+$", "", pieces[0][0].rsplit("/", 1)[-1])
        buf = io.BytesIO()
        canvas.crop(canvas.getbbox()).save(buf, "PNG")  # a portrait fills a third of its landscape board
        yield f"{root}/image/{name}_assembled.png", buf.getvalue()


def read_gimp_pattern(data: bytes) -> Image.Image:
    """GIMP .pat: big-endian header (size, version, w, h, bytes/pixel, 'GPAT', name), raw pixels."""
    header_size, _, w, h, depth, magic = struct.unpack(">5I4s", data[:24])
    if magic != b"GPAT" or depth not in (1, 2, 3, 4):
        raise InvalidImage("not a GIMP pattern")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[depth]
    return Image.frombytes(mode, (w, h), data[header_size:header_size + w * h * depth])


# --- filters ----------------------------------------------------------------------------------------

def prepare(path: str, data: bytes) -> tuple[Image.Image | None, str]:
    """Decode and filter one image: (RGB image, "kept") or (None, reason it was dropped)."""
    if TECHNICAL_MAP.search(path):
        return None, "technical map"
    try:
        raw = read_gimp_pattern(data) if path.lower().endswith(".pat") else Image.open(io.BytesIO(data))
        raw.load()
    except Exception:  # noqa: BLE001 - any undecodable file is just dropped
        return None, "unreadable"
    if raw.mode in ("RGBA", "LA", "PA") or "transparency" in raw.info:
        alpha = np.asarray(raw.convert("RGBA"))[:, :, 3]
        if (alpha > 128).mean() < MIN_OPAQUE:
            return None, "mostly transparent"
        ys, xs = np.nonzero(alpha > 0)
        raw = raw.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    try:
        img = open_image(raw)  # alpha composited over white, 16-bit scaled, EXIF applied
    except InvalidImage:
        return None, "unreadable"
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        return None, "small"
    if max(w, h) / min(w, h) > MAX_ASPECT:
        return None, "aspect"
    img = resize_shorter(img, MAX_SIDE) if min(w, h) > MAX_SIDE else img
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    if gray.std() < MIN_STD:
        return None, "flat"
    small = np.asarray(img.resize((128, 128), Image.Resampling.NEAREST)).reshape(-1, 3)
    _, counts = np.unique(small, axis=0, return_counts=True)
    if np.sort(counts)[-8:].sum() / len(small) > MAX_TOP8_SHARE:
        return None, "flat colours"
    return img, "kept"


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: robust to resizing and re-encoding."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


class Deduplicator:
    def __init__(self, distance: int = DUP_DISTANCE) -> None:
        self.distance = distance
        self.hashes = np.zeros(0, dtype=np.uint64)

    def is_new(self, img: Image.Image) -> bool:
        h = np.uint64(dhash(img))
        if len(self.hashes):
            x = np.bitwise_xor(self.hashes, h)
            if np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).min() <= self.distance:
                return False
        self.hashes = np.append(self.hashes, h)
        return True


# --- building -----------------------------------------------------------------------------------------

def safe_name(package: str, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", path.rsplit(".", 1)[0].replace("usr/share/", "")).strip("_")
    return f"{package}__{stem[-120:]}.jpg"


HELDOUT = Path(__file__).with_name("heldout.txt")


def pinned_heldout(path: Path = HELDOUT) -> dict[str, str]:
    """FILE -> FOLDER for each FOLDER/FILE line of training/heldout.txt (# starts a comment). FOLDER
    content or style: the role's held-out split; any other: an extra held-out set OUT/val/FOLDER."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {name: folder for folder, name in (line.split("/", 1) for line in lines if line)}


def build(items: Iterator[tuple[Package, str, str, bytes]], out: Path, val_count: int = 24,
          pinned: Mapping[str, str] | None = None) -> Counter:
    """Filter (package, version, path, bytes) items into OUT/{content,style}, split held-out (the
    names ``pinned`` to the role first, then by a hash of the name; names pinned to another folder
    go to OUT/val/FOLDER), write MANIFEST.tsv and REPORT.txt. Returns the counts."""
    pinned = pinned or {}
    dedup = Deduplicator()
    kept: dict[str, list[tuple[str, Image.Image, Package, str, str]]] = {"content": [], "style": []}
    stats: Counter = Counter()
    for package, version, path, data in items:
        img, why = prepare(path, data)
        if img is not None and not dedup.is_new(img):
            img, why = None, "duplicate"
        stats[(package.name, package.role, why)] += 1
        if img is not None:
            kept[package.role].append((safe_name(package.name, path), img, package, version, path))
    manifest = ["file\tsplit\tpackage\tversion\tsource\tlicence\tsha256"]
    counts: Counter = Counter()
    for role, entries in kept.items():
        extra = [(e, f"val/{pinned[e[0]]}") for e in entries if pinned.get(e[0], role) != role]
        rest = [e for e in entries if pinned.get(e[0], role) == role]
        # fixed, content-independent order; pinned names first so new packages cannot displace them
        rest.sort(key=lambda e: (e[0] not in pinned, hashlib.sha256(e[0].encode()).hexdigest()))
        splits = extra + [(e, f"val/{role}" if i < val_count else role) for i, e in enumerate(rest)]
        for (name, img, package, version, path), split in splits:
            target = out / split / name
            target.parent.mkdir(parents=True, exist_ok=True)
            img.save(target, "JPEG", quality=92)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            manifest.append(f"{split}/{name}\t{split}\t{package.name}\t{version}\t{path}\t{package.licence}\t{digest}")
            counts[split] += 1
    (out / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    lines = [f"{k}: {v}" for k, v in sorted(counts.items())] + [""]
    lines += [f"{pkg}\t{role}\t{why}\t{n}" for (pkg, role, why), n in sorted(stats.items())]
    (out / "REPORT.txt").write_text("\n".join(lines) + "\n")
    return counts


def pack(src: Path, dst: Path, side: int, quality: int) -> int:
    """A smaller copy of a built corpus (same layout, shorter side <= ``side``), e.g. to ship it to a
    remote GPU with a transfer limit."""
    n = 0
    for path in sorted(src.rglob("*.jpg")):
        rel = path.relative_to(src)
        if rel.parts[0] not in ("content", "style", "val"):
            continue
        img = Image.open(path)
        img = resize_shorter(img, side) if min(img.size) > side else img
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(dst / rel, "JPEG", quality=quality)
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data"))
    p.add_argument("--val-count", type=int, default=24, help="held-out images per role")
    p.add_argument("--pack", type=Path, help="instead of building: write a smaller copy of this corpus to --out")
    p.add_argument("--side", type=int, default=288, help="--pack: shorter side")
    p.add_argument("--quality", type=int, default=82, help="--pack: JPEG quality")
    args = p.parse_args(argv)
    if args.pack:
        print(f"packed {pack(args.pack, args.out, args.side, args.quality)} images into {args.out}")
        return
    debs = download(sorted({pk.name for pk in PACKAGES}), args.out / "debs")

    def items() -> Iterator[tuple[Package, str, str, bytes]]:
        for package in PACKAGES:
            deb = debs[package.name]
            n = 0
            for path, data in deb_files(deb, re.compile(package.include)):
                n += 1
                yield package, deb_version(deb), path, data
            print(f"{package.name:32} {package.role:8} {n:5} candidate images", flush=True)

    counts = build(items(), args.out, args.val_count, pinned_heldout())
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f"  (details in {args.out}/REPORT.txt)")


if __name__ == "__main__":
    main()

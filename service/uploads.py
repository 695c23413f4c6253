"""Uploaded files: read within the byte limit, named for error messages, decoded within the pixel
limits. The only place the service turns bytes into pixels (through ``model.images``). A video
is not held in memory: ``save`` writes it to this replica's work folder for its job."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from starlette.datastructures import UploadFile

from model.errors import ImageTooLarge, InvalidImage
from model.images import open_image, scaled_size
from service.errors import TooLarge
from service.settings import Settings


@dataclass(frozen=True)
class Upload:
    label: str  # how the user knows this file: "content", "style #2 (a.jpg)", "mask"
    data: bytes


def label(kind: str, upload: UploadFile) -> str:
    """How errors name an upload: "style #2 (painting.jpg)", the client's file name cut to 60
    characters (it is only ever echoed in messages, never used as a path)."""
    name = (upload.filename or "")[:60]
    return f"{kind} ({name})" if name else kind


async def read(upload: UploadFile, name: str, settings: Settings) -> Upload:
    """The upload's bytes, refused (413) when over the per-file limit; ``name`` is its ``label``."""
    limit = settings.max_file_bytes
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"{name} is {upload.size} bytes; the limit per file is {limit} (ADAIN_MAX_FILE_BYTES)")
    return Upload(name, await upload.read())


@dataclass(frozen=True)
class SavedUpload:
    label: str
    path: Path
    size: int


PIECE = 1024 * 1024


async def save(upload: UploadFile, name: str, settings: Settings) -> SavedUpload:
    """Copy the upload into ``settings.videos_dir`` (413 past ``max_video_bytes``, nothing kept)."""
    limit = settings.max_video_bytes
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"{name} is {upload.size} bytes; the limit is {limit} (ADAIN_MAX_VIDEO_BYTES)")
    folder = settings.videos_dir
    folder.mkdir(parents=True, exist_ok=True)
    path, size = folder / f"upload-{secrets.token_hex(8)}.part", 0
    try:
        with open(path, "wb") as f:
            while piece := await upload.read(PIECE):
                size += len(piece)
                if size > limit:
                    raise TooLarge(f"{name} is over {limit} bytes (ADAIN_MAX_VIDEO_BYTES)")
                f.write(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SavedUpload(name, path, size)


def declared_size(upload: Upload) -> tuple[int, int] | None:
    """The (w, h) an image's header declares, reading no pixels; None when there is no readable
    header (decoding will say why)."""
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any unreadable header: decode() reports it properly
        return None


def check_size(label: str, size: tuple[int, int], shorter_side: int, limit: int, setting: str) -> None:
    """413 when an image of ``size`` (``label`` names it) would be more than ``limit`` pixels at
    ``shorter_side`` (0: as it is): an upscale is bounded as much as an upload, long side too."""
    w, h = scaled_size(size, shorter_side)
    if w * h > limit:
        raise TooLarge(f"{label}: at shorter side {shorter_side or min(size)} it would be {w}x{h} = "
                       f"{w * h} pixels; the limit is {limit} ({setting}): ask for a smaller size")


def limit_for(settings: Settings, style: bool) -> tuple[int, str]:
    """The pixel limit a content (the output) or a style is checked against, and its setting."""
    if style:
        return settings.max_style_pixels, "ADAIN_MAX_STYLE_PIXELS"
    return settings.max_output_pixels, "ADAIN_MAX_OUTPUT_PIXELS"


def check_declared(upload: Upload, settings: Settings, shorter_side: int, style: bool = False) -> None:
    """The size check from the header alone (no pixel decoded), before a request is queued."""
    size = declared_size(upload)
    if size is not None:
        check_size(upload.label, size, shorter_side, *limit_for(settings, style))


def decode(upload: Upload, settings: Settings, shorter_side: int | None, style: bool = False) -> Image.Image:
    """Decode an upload within the pixel limits, naming the upload in any error. ``shorter_side``
    is the size the network will see it at (checked against the output limit, or the style limit
    for a ``style``); None for a mask, which is only resized to the content."""
    try:
        img = open_image(upload.data, max_pixels=settings.max_image_pixels)
    except InvalidImage as e:
        raise InvalidImage(f"{upload.label}: {e}") from None
    except ImageTooLarge as e:
        raise ImageTooLarge(f"{upload.label}: {e} (ADAIN_MAX_IMAGE_PIXELS)") from None
    if shorter_side is not None:
        check_size(upload.label, img.size, shorter_side, *limit_for(settings, style))
    return img

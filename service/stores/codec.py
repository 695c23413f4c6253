"""The stored form of a registered style, version 1: a safetensors blob (raw little-endian
tensors behind a JSON header; nothing in it can execute) holding the code's tensors, with the
entry's fields in the header's metadata under ``"format": "adain-style/1"``, and optionally the
style's thumbnail: a small JPEG's bytes as a uint8 tensor (served as they are, never decoded here).

Decoding checks everything (format tag, names, shapes, dtypes, finite values) and raises
``CorruptValue`` for anything else, so a foreign or damaged value is reported and skipped."""

from __future__ import annotations

import json
import struct

import torch
from safetensors.torch import load, save

from model.adain import StyleCode
from model.efdm import QUANTILES, Table

FORMAT = "adain-style/1"
# name -> (shape, dtype) of each tensor a code may hold; the colours and the quantile table (EFDM)
# are optional: codes stored before either was kept have neither
SHAPES = {"mean": ((512,), torch.float32), "std": ((512,), torch.float32),
          "rgb_mean": ((3,), torch.float64), "rgb_cov": ((3, 3), torch.float64),
          "quantiles": ((512, QUANTILES), torch.float16), "quantile_ranks": ((QUANTILES,), torch.float64)}


MAX_THUMBNAIL = 64 * 1024  # bytes: a 128 px JPEG is a few KB


class CorruptValue(ValueError):
    """A stored value that is not a version-1 style code."""


def encode(code: StyleCode, fields: dict[str, str | int | float | None], thumbnail: bytes | None = None) -> bytes:
    tensors = {"mean": code.mean, "std": code.std}
    if code.has_colors:
        tensors |= {"rgb_mean": code.rgb_mean, "rgb_cov": code.rgb_cov}
    if code.quantiles is not None:
        tensors |= {"quantiles": code.quantiles.values.half(), "quantile_ranks": code.quantiles.ranks.double()}
    if thumbnail:
        tensors["thumbnail"] = torch.frombuffer(bytearray(thumbnail), dtype=torch.uint8)
    meta = {"format": FORMAT, "fields": json.dumps(fields)}
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def decode(blob: bytes) -> tuple[StyleCode, dict, bytes | None]:
    """(code, fields, thumbnail) of a stored value; CorruptValue for anything that is not one."""
    try:
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        meta = header.get("__metadata__") or {}
        if meta.get("format") != FORMAT:
            raise CorruptValue(f"not an {FORMAT} value (format {meta.get('format')!r})")
        fields = json.loads(meta["fields"])
        tensors = load(blob)
    except CorruptValue:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means the bytes are not ours
        raise CorruptValue(f"unreadable stored style ({type(e).__name__}: {e})") from None
    thumbnail = tensors.pop("thumbnail", None)
    if thumbnail is not None and (thumbnail.dtype != torch.uint8 or thumbnail.dim() != 1
                                  or thumbnail.numel() > MAX_THUMBNAIL):
        raise CorruptValue(f"thumbnail: {tuple(thumbnail.shape)} {thumbnail.dtype}, expected <= {MAX_THUMBNAIL} bytes")
    if not isinstance(fields, dict) or not {"mean", "std"} <= tensors.keys() <= SHAPES.keys():
        raise CorruptValue(f"unexpected contents {sorted(tensors)}")
    for name, t in tensors.items():
        shape, dtype = SHAPES[name]
        if tuple(t.shape) != shape or t.dtype != dtype or not bool(torch.isfinite(t).all()):
            raise CorruptValue(f"{name}: {tuple(t.shape)} {t.dtype}, expected finite {shape} {dtype}")
    if bool((tensors["std"] <= 0).any()):
        raise CorruptValue("std must be > 0")
    return StyleCode(tensors["mean"], tensors["std"], tensors.get("rgb_mean"), tensors.get("rgb_cov"),
                     _table(tensors)), fields, None if thumbnail is None else thumbnail.numpy().tobytes()


def _table(tensors: dict[str, torch.Tensor]) -> Table | None:
    """The quantile table: values and their ranks together, the ranks from 0 to 1, increasing."""
    if ("quantiles" in tensors) != ("quantile_ranks" in tensors):
        raise CorruptValue("a quantile table needs its values and its ranks")
    if "quantiles" not in tensors:
        return None
    ranks = tensors["quantile_ranks"]
    if ranks[0] != 0 or ranks[-1] != 1 or not bool((ranks[1:] > ranks[:-1]).all()):
        raise CorruptValue("quantile_ranks must rise from 0 to 1")
    return Table(tensors["quantiles"], ranks)

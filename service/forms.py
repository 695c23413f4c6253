"""The multipart forms of POST /stylize and POST /styles: each parsed once (within the form
limits) into a typed object whose JSON schema is also the request body OpenAPI documents.

Field order carries meaning in /stylize: ``style`` files and ``style_id`` strings form one list
of styles in the order sent (it pairs with ``weights`` and, with a mask, says which style is the
foreground), so the form keeps that order. The option values are checked by ``model.plan.Options``
(the model's rules); this module checks only what HTTP adds (types, file sizes, field counts)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_origin

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, InstanceOf, ValidationError, WithJsonSchema,
                      model_validator,
                      field_validator)
from pydantic.json_schema import SkipJsonSchema
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile

from model.adain import COLOR_MATCH, MATCHINGS, MAX_COLOR_GAIN
from model.plan import MAX_SIDE, Options
from service.errors import BadRequest
from service.settings import Settings
from service.uploads import SavedUpload, Upload, label, read, save

File = Annotated[InstanceOf[Upload], WithJsonSchema({"type": "string", "format": "binary"})]
VideoFile = Annotated[InstanceOf[SavedUpload], WithJsonSchema({"type": "string", "format": "binary"})]
# Absent fields are None here; a multipart form cannot send a null, so the schema names only the
# type that can arrive. A side is digits only ("512", not "512.0" or "5e2").
OptionalFile = Annotated[File | None, WithJsonSchema({"type": "string", "format": "binary"})]


def _whole(value: object) -> object:
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ValueError("must be a whole number of px")
        return int(value)
    return value


Side = Annotated[int | None, BeforeValidator(_whole), WithJsonSchema({"type": "integer", "minimum": 0,
                                                                      "maximum": MAX_SIDE})]
Name = Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 100})]
Matching = Literal[MATCHINGS]  # the model's names, one list
MATCHING_HELP = ("how the photo's features take the style's: adain = each channel's mean and std (the paper), "
                 "efdm = each channel's whole sorted distribution (closer to the style's textures; docs/pipeline.md)")
UNIT = {"minimum": 0.0, "maximum": 1.0}  # ranges the model checks (model.plan.Options), stated for clients
FILES = ("content", "style", "mask", "video", "image")  # the file fields of the forms


class StyleFields(BaseModel):
    """The style fields /stylize and /videos share: 1-8 styles (files and/or registered ids) and
    how to apply them."""

    model_config = ConfigDict(frozen=True)

    style: list[File] = Field([], description="style image(s), repeatable; together with style_id 1-8 styles "
                                              "in the order sent")
    style_id: list[str] = Field([], description="id of a registered or preset style (GET /styles), repeatable",
                                examples=[["swamp"]])
    weights: list[str] = Field([], description="one weight per style, >= 0, normalised to sum 1; repeated or "
                                               "comma-separated (e.g. 1,3 for two styles); default equal")
    alpha: float = Field(1.0, description="content-style trade-off: 0 = content, 1 = full style", examples=[0.8],
                         json_schema_extra=UNIT)
    preserve_color: bool = Field(False, description="keep the content's colours (style uploads and presets; not "
                                                    "registered styles, whose images are not kept)")
    color_match: float = Field(
        COLOR_MATCH, json_schema_extra=UNIT, examples=[COLOR_MATCH],
        description="how far the output's colours move towards the style's after decoding (times alpha): 0 = the "
                    "paper's pipeline, 0.5 = the style's mean colour and half its covariance, 1 = both (contrast "
                    f"stretched at most {MAX_COLOR_GAIN:g}x); default {COLOR_MATCH}")
    style_size: Side = Field(None, description="style shorter side in px, 0 = keep; default 512", examples=[512])
    content_size: Side = Field(None, description="content shorter side in px, 0 = keep; default 512", examples=[512])
    matching: Matching = Field("adain", description=MATCHING_HELP)
    # which list each style came from, in the order sent ("style" or "style_id")
    order: SkipJsonSchema[tuple[str, ...]] = ()

    @property
    def styles(self) -> list[Upload | str]:
        """Style files and ids, in the order sent."""
        files, ids = iter(self.style), iter(self.style_id)
        return [next(files) if kind == "style" else next(ids) for kind in self.order]

    def default_content_size(self, settings: Settings) -> int:
        return settings.default_content_size

    def options(self, settings: Settings) -> Options:
        """The model's options (checked there: out-of-range values raise OutOfRange)."""
        try:
            weights = [float(x) for v in self.weights for x in v.split(",") if x.strip()]
        except ValueError:
            raise BadRequest(f"weights must be numbers, got {self.weights}") from None
        return Options(
            weights=tuple(weights) or None, alpha=self.alpha, color_match=self.color_match,
            preserve_color=self.preserve_color, matching=self.matching,
            content_size=self.default_content_size(settings) if self.content_size is None else self.content_size,
            style_size=settings.default_style_size if self.style_size is None else self.style_size)


class StylizeForm(StyleFields):
    """POST /stylize: a content image (or the id of one just rendered) and 1-8 styles (files
    and/or registered ids)."""

    content: OptionalFile = Field(None, description="the photo to re-render (PNG, JPEG, WebP, GIF, BMP, TIFF, "
                                                    "HEIC/HEIF, AVIF)")
    content_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", examples=[""],  # /docs sends none by default
                                   description="instead of content: X-Content-Id of an earlier answer, at the same "
                                               "content_size (404 once it is no longer kept: send the file again)")
    mask: OptionalFile = Field(None, description="binary mask with exactly 2 styles: white = first style, black = "
                                                "second; same aspect ratio as the content")
    format: Literal["png", "jpeg", "webp"] = Field("png", description="output image format")
    decoder: str | None = Field(None, max_length=64, examples=[""],  # /docs sends none by default
                                description="a decoder version (GET /models); default: the store's default, or "
                                            "its canary for a share of requests")

    @model_validator(mode="after")
    def one_content(self) -> StylizeForm:
        if (self.content is None) == (self.content_id is None):
            raise ValueError("send the content file or a content_id, one of them")
        return self


class VideoForm(StyleFields):
    """POST /videos: a clip and 1-8 styles, as for /stylize (no mask)."""

    video: VideoFile = Field(description="the clip: MP4, WebM, MOV, MKV, GIF ... (ADAIN_MAX_VIDEO_BYTES, "
                                         "ADAIN_MAX_VIDEO_SECONDS)")
    content_size: Side = Field(None, description="shorter side of the frames in px, 0 = keep; default 0 (the "
                                                 "clip's own size)", examples=[480])
    stabilize: bool = Field(True, description="make strokes follow the scene from frame to frame (false: each "
                                              "frame on its own: crisper, but it flickers)")
    decoder: str | None = Field(None, max_length=64, examples=[""],  # /docs sends none by default
                                description="a decoder version (GET /models) for the whole clip; default: the "
                                            "store's default, or its canary for a share of jobs")

    def default_content_size(self, settings: Settings) -> int:
        return 0


MAX_TTL = 10 * 365 * 86400.0  # s: ten years, as good as no expiry
Ttl = Annotated[float | None, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TTL})]


class StyleForm(BaseModel):
    """POST /styles: one style image to register."""

    model_config = ConfigDict(frozen=True)

    style: File = Field(description="the style image (painting, texture ...)")
    name: Name = Field(None, max_length=100, description="a label for listings", examples=["my watercolour"])
    style_size: Side = Field(None, description="shorter side in px to encode at, 0 = keep; default 512", examples=[512])
    ttl: Ttl = Field(None, gt=0, le=MAX_TTL, description="seconds until the style is deleted by itself; "
                              "default: kept until DELETE. Registering the same image again never shortens it",
                              examples=[604800])

    def options(self, settings: Settings) -> Options:
        return Options(style_size=settings.default_style_size if self.style_size is None else self.style_size)


class PreviewForm(BaseModel):
    """POST /preview: one image the browser cannot draw itself (HEIC, TIFF)."""

    model_config = ConfigDict(frozen=True)

    image: File = Field(description="the image (any format uploads may be in)")


class LiveSettings(BaseModel):
    """A live stream's settings message (GET /ws/stylize): /stylize's names, registered styles only."""

    model_config = ConfigDict(extra="forbid")

    style_id: list[str] = Field(min_length=1)
    weights: list[float] | None = None
    alpha: float = 1.0
    color_match: float = COLOR_MATCH
    content_size: int = Field(256, ge=16)
    matching: Matching = "adain"
    decoder: str | None = Field(None, max_length=64)
    stabilize: bool = True
    api_key: str | None = Field(None, repr=False)  # a browser cannot set headers on a WebSocket

    @field_validator("style_id", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("weights", mode="before")
    @classmethod
    def _commas(cls, v: Any) -> Any:
        return [x for x in v.split(",") if x.strip()] if isinstance(v, str) else v


def request_body(form: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a form model (for a route's ``openapi_extra``)."""
    schema = form.model_json_schema()
    required = schema.get("required", [])  # the files a request must send first, then the options
    schema["properties"] = dict(sorted(schema["properties"].items(), key=lambda kv: kv[0] not in required))
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


async def parse(request: Request, form: type[BaseModel], settings: Settings) -> Any:
    """Read the request's form once and validate it into ``form``; 422 naming the field otherwise.
    An empty nameless file or an empty value counts as absent (what a browser sends for an
untouched input)."""
    data = await request.form(max_files=settings.max_styles + 2, max_fields=64, max_part_size=64 * 1024)
    saved: list[SavedUpload] = []
    try:
        return await _validate(form, data, settings, saved)
    except BaseException:
        for upload in saved:  # a refused request leaves nothing on disk
            upload.path.unlink(missing_ok=True)
        raise


async def _validate(form: type[BaseModel], data: Any, settings: Settings, saved: list[SavedUpload]) -> Any:
    repeated = {key for key, f in form.model_fields.items() if get_origin(f.annotation) is list}
    values: dict[str, Any] = {key: [] for key in repeated}
    order: list[str] = []
    for key, value in data.multi_items():
        if key not in form.model_fields or key == "order" or value == "":
            continue  # an empty field is an absent one (forms, /docs "Try it out", cannot send null)
        if isinstance(value, UploadFile):
            if key not in FILES:  # a file where text belongs: let validation name the field
                value = f"a file ({value.filename or 'unnamed'})"
            elif not value.size and not value.filename:
                continue  # an untouched file input: sent empty and nameless
            elif key in values and key not in repeated:  # refused before it is read or written
                raise BadRequest(f"one {key} file per request; this one has several")
            elif key == "video":
                value = await save(value, label("video", value), settings)
                saved.append(value)
            else:
                name = label(f"style #{len(order) + 1}", value) if key == "style" and key in repeated else key
                value = await read(value, name, settings)
        if key in ("style", "style_id"):
            order.append(key)
        if key in repeated:
            values[key].append(value)
        else:
            values[key] = value
    if "order" in form.model_fields:
        values["order"] = tuple(order)
    try:
        return form.model_validate(values)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None

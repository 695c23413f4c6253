"""Response bodies (the request side, multipart forms, is service.forms)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from model.adain import MATCHINGS


class StyleInfo(BaseModel):
    id: str = Field(description="use as style_id in POST /stylize", examples=["3f9a0c1e2b7d4a5f6e8c9b0a"])
    name: str | None = Field(None, examples=["starry night"])
    kind: str = Field(description="preset (bundled with the server) or uploaded", examples=["uploaded"])
    style_size: int = Field(description="shorter side in px the style was encoded at", examples=[512])
    created: datetime
    expires: datetime | None = Field(None, description="when the style deletes itself (registered with a ttl); "
                                     "null = kept until DELETE")
    tenant: str | None = Field(None, description="the tenant that registered it (null for presets)",
                               examples=["acme"])
    thumbnail_url: str | None = Field(None, description="small JPEG preview (a registered style's: with the key)")


class StyleList(BaseModel):
    styles: list[StyleInfo]
    next_cursor: str | None = Field(None, description="pass as cursor for the next page; null on the last page")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    ready: bool
    device: str | None = Field(None, examples=["cpu"])
    precision: str | None = Field(None, examples=["bf16"])
    backend: str | None = Field(None, description="what runs the networks: torch or onnxruntime", examples=["torch"])
    decoder: str | None = Field(None, description="decoder weights file in use")
    model_version: str | None = Field(None, description="the decoder version requests without `decoder` get "
                                      "(GET /models)", examples=["v7"])
    load_seconds: float | None = None
    convolutions: dict[str, int] | None = Field(None, description="fp32 on a CPU: how many (layer, size) pairs run "
                                                "by direct convolution and by Winograd, as measured here",
                                                examples=[{"direct": 6, "winograd": 30}])
    seconds_per_megapixel: float | None = Field(None, description="this machine's speed, measured at warm-up")
    presets: int = 0
    store: str | None = Field(None, description="where registered styles live: sqlite or redis", examples=["redis"])
    store_ok: bool | None = Field(None, description="whether that store answers; a replica stays ready without "
                                  "it (uploads and presets still work; registered ids get 503 until it is back)")
    store_detail: str | None = None


class Limits(BaseModel):
    """What the server accepts, so a client can check before it uploads."""

    max_file_bytes: int = Field(description="largest single uploaded file", examples=[20971520])
    max_total_bytes: int = Field(description="largest request body", examples=[52428800])
    max_image_pixels: int = Field(description="largest decoded upload, in pixels", examples=[40000000])
    max_output_pixels: int = Field(description="largest image the network processes (content or style after "
                                   "resizing)", examples=[4194304])
    max_styles: int = Field(description="styles per request", examples=[8])
    default_content_size: int = Field(description="content shorter side when a request gives none", examples=[512])
    default_style_size: int = Field(description="style shorter side when a request gives none", examples=[512])
    formats: list[str] = Field(description="output formats", examples=[["png", "jpeg", "webp"]])
    input_formats: list[str] = Field(description="image formats uploads may be in (HEIC: phone photos)",
                                     examples=[["PNG", "JPEG", "HEIC"]])
    input_accept: list[str] = Field(description="the same as media types and file name endings (an HTML accept "
                                    "list)", examples=[["image/png", "image/heic", ".heic"]])
    api_key_required: bool = Field(description="whether /stylize, /styles, /videos and the stream need X-API-Key")
    seconds_per_megapixel: float = Field(description="this server's measured seconds per megapixel of output (0 = "
                                         "not measured): a client can estimate a large image's wait", examples=[1.2])
    mask_aspect_tolerance: float = Field(description="how far a mask's aspect ratio may differ from the photo's "
                                         "(relative)", examples=[0.02])
    page_style_ttl: float = Field(description="seconds the web page asks its style uploads to be kept (ttl)",
                                  examples=[604800.0])
    max_video_bytes: int = Field(description="largest video upload", examples=[209715200])
    max_video_seconds: float = Field(description="longest video", examples=[300.0])
    max_video_pixels: int = Field(description="largest output video frame, in pixels", examples=[2073600])


class ModelVersion(BaseModel):
    name: str = Field(examples=["v7"])
    card: dict = Field(description="what the version is: where it came from, its SHA-256, its held-out numbers")


class ModelList(BaseModel):
    default: str = Field(description="the version requests without `decoder` get", examples=["v7"])
    candidate: str | None = Field(None, description="a version a share of those requests try first (a canary)")
    percent: float = Field(0.0, description="that share, in percent")
    versions: list[ModelVersion]


class VideoAccepted(BaseModel):
    id: str = Field(description="the job's id (only its tenant, and admins, can read or delete the job)",
                    examples=["bq1x0V9yYtq0k6b1Ck1b2A"])
    status_url: str = Field(examples=["/videos/bq1x0V9yYtq0k6b1Ck1b2A"])
    result_url: str = Field(examples=["/videos/bq1x0V9yYtq0k6b1Ck1b2A/result"])


class VideoStatus(BaseModel):
    id: str
    decoder: str | None = Field(None, description="the decoder version that renders it", examples=["v7"])
    matching: Literal[MATCHINGS] = Field("adain", description="how its frames take the style (as submitted)")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    frames_done: int = Field(examples=[120])
    frames_total: int = Field(description="from the clip's header (exact once done)", examples=[240])
    eta_seconds: float | None = Field(None, description="estimated seconds left while running", examples=[42.5])
    frames_per_second: float = Field(description="render speed now, summed over the replicas rendering its "
                                     "segments (once done: frames over the job's whole time)", examples=[2.8])
    segments_total: int = Field(description="segments the clip is rendered in (any replica renders any)",
                                examples=[4])
    segments_done: int = Field(examples=[2])
    rendered_by: dict[str, int] = Field(description="replica id (ADAIN_REPLICA_ID) -> segments it rendered",
                                        examples=[{"api-7d9f-abc12": 1, "api-7d9f-xyz34": 1}])
    width: int = Field(description="output frame width", examples=[640])
    height: int = Field(examples=[360])
    fps: float = Field(description="the clip's frame rate, kept in the output", examples=[30.0])
    seconds: float = Field(description="the clip's duration", examples=[8.0])
    audio: bool = Field(description="whether the clip's audio is carried into the result")
    created: datetime
    result_url: str | None = Field(None, description="the MP4, once done (Range requests supported)")
    result_bytes: int | None = None
    error: str | None = Field(None, description="why it failed")


class ErrorBody(BaseModel):
    detail: str = Field(examples=["content: not a readable image - send a PNG, JPEG, WebP, GIF, BMP, TIFF, HEIC, HEIF "
                                          "or AVIF image"])

"""Every setting of the service, read once from ADAIN_* environment variables (or flags)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated, Literal

from model.paths import DECODER, PRESETS_DIR, REPO_ROOT
from service.tenants import TenantLimits, check_rate_limit

MB = 1024 * 1024
# XDG's place for state that should outlive the process (the container mounts a volume here instead)
STATE_DIR = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "adain-service"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAIN_", extra="ignore")

    # network
    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 only inside a container")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    root_path: str = Field("", description="path prefix when served behind a proxy under a sub-path")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS; empty = closed")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated keys, each its own tenant; when keys are set every "
        "model, style and video route and the stream need X-API-Key")
    keys_file: Path | None = Field(None, description="TOML file of tenants: names, roles, SHA-256 digests of their "
                                   "keys, per-tenant limits (service/tenants.py; `adain keys add NAME`)")

    # tenants: the defaults of every tenant's limits (a keys file may set them per tenant)
    rate_limit: str = Field("", description="requests per tenant, in the limits library's notation, e.g. "
                            "'10/second;300/minute'; empty = none. Held in Redis when redis_url is set, so it "
                            "holds across replicas")
    tenant_queue_depth: int = Field(4, ge=0, description="requests one tenant may have waiting for the model; "
                                    "more get 429 while other tenants still get in")
    max_styles_per_tenant: int = Field(1000, ge=0, description="registered styles one tenant may hold; more: 507")
    max_streams_per_tenant: int = Field(2, ge=0, description="live streams one tenant may have open per replica")
    max_video_jobs_per_tenant: int = Field(2, ge=0, description="video jobs one tenant may have queued or running "
                                           "per replica; more: 429")
    page_style_ttl: float = Field(7 * 86400.0, gt=0, description="seconds a style uploaded on the web page stays "
                                  "registered (the page sends it as ttl), so page uploads never fill the store")
    keep_style_thumbnails: bool = Field(True, description="keep a 128 px JPEG (a few KB) with each registered "
                                        "style, its tenant's like the style, so a page can show it; off: only the "
                                        "style's code is kept")

    # logging
    log_level: str = Field("info", description="uvicorn and service log level: debug, info, warning, error")

    # model
    decoder: Path = Field(DECODER, description="decoder .safetensors or reference decoder.pth: version v7 of the "
                          "model store")
    models_dir: Path | None = Field(None, description="the model store: decoder versions, the default and a canary "
                                    "(docs/models.md), shared by replicas and the training job; default "
                                    "STATE_DIR/models")
    max_loaded_decoders: int = Field(2, ge=1, description="decoder versions loaded at once per process (LRU)")
    vgg: Path | None = Field(None, description="reference vgg_normalised.pth instead of the bundled VGG-19")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="auto, fp32, bf16, fp16; auto, fp32 or int8 with the onnxruntime backend")
    backend: Literal["torch", "onnxruntime"] = Field(
        "torch", description="torch, or onnxruntime (the networks as ONNX graphs: pip install '.[onnx]')")
    onnx_dir: Path | None = Field(None, description="where the onnxruntime backend keeps its graphs, exported "
                                  "there on first start; unset = state_dir/onnx")
    convolution: Literal["auto", "direct", "winograd"] = Field(
        "auto", description="fp32 on a CPU: each 3x3 conv by direct convolution or Winograd (NNPACK), auto = "
        "whichever is measured faster per layer and size; bf16 and GPUs keep their own kernels")
    torch_threads: int = Field(0, ge=0, description="intra-op threads for the model; 0 = torch's default")
    warmup: bool = Field(True, description="run one stylization at startup before /readyz says ready")
    presets_dir: Path = Field(PRESETS_DIR, description="folder of preset style images")
    frontend_dir: Path = Field(REPO_ROOT / "frontend" / "public", description="static web page served at /")

    # limits
    max_file_bytes: int = Field(20 * MB, gt=0, description="largest single uploaded file")
    max_total_bytes: int = Field(50 * MB, gt=0, description="largest request body")
    max_buffered_bytes: int = Field(256 * MB, gt=0, description="bytes all requests in flight may hold in memory "
                                    "together (each its body; a video upload only the rest of its form): past it, "
                                    "503 + Retry-After, so N concurrent uploads cannot take N x the body limit")
    max_image_pixels: int = Field(8192 * 8192, gt=0, description="largest decoded upload (checked from the header)")
    max_output_pixels: int = Field(8192 * 8192, gt=0, description="largest image the network processes (8192x8192; "
                                   "above tile_size² it is rendered in tiles)")
    max_style_pixels: int = Field(2048 * 2048, gt=0, description="largest style the encoder sees, after resizing "
                                  "to style_size (a style's statistics gain nothing from more; 8 of these are ~2 GB "
                                  "of activations)")
    tile_size: int = Field(1024, ge=64, le=8192, multiple_of=8, description="images of more than this squared are "
                           "rendered in tiles of this side: it bounds memory (a 1024 tile: ~1.2 GB on a CPU)")
    max_styles: int = Field(8, ge=1, le=8, description="styles per request")
    default_content_size: int = Field(512, ge=0, description="content shorter side when the request says none")
    default_style_size: int = Field(512, ge=0, description="style shorter side when the request says none")

    # slow and many clients
    header_timeout: float = Field(10.0, gt=0, description="seconds for a request's line and headers to arrive, else 408")
    body_timeout: float = Field(60.0, gt=0, description="seconds for a whole request body to arrive, else 408")
    max_connections: int = Field(256, ge=1, description="open connections + requests at once; more get 503")

    # concurrency
    workers: int = Field(1, ge=1, description="model threads working at once")
    queue_depth: int = Field(8, ge=0, description="requests waiting for a worker before 503")
    request_timeout: float = Field(60.0, gt=0, description="seconds a request may wait and run before 504")
    timeout_per_megapixel: float = Field(5.0, ge=0, description="a larger image gets this many seconds per "
                                         "megapixel of output when that is more than request_timeout")
    timeout_margin: float = Field(3.0, ge=0, description="... or this many times the seconds per megapixel the "
                                  "warm-up measured on this machine, when more (a slow CPU still finishes 8K); 0 = "
                                  "only timeout_per_megapixel")
    batch_max: int = Field(1, ge=1, le=64, description="network passes of same-size concurrent requests run "
                           "as one batch of up to this many (GPU); 1 = off. Set workers >= this")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="how long the first image of a batch waits for more")
    content_cache_mb: float = Field(512, ge=0, description="MB of content features kept per process (LRU, per "
                                  "tenant), so a render of a photo seen before runs the decoder alone (512² takes 4 "
                                  "MB, 2048² 140 MB); 0 = off, larger contents are rendered the usual way")
    style_cache_size: int = Field(256, ge=1, description="codes of styles sent inline to /stylize kept per process "
                                  "(LRU, 4 KB each); registered styles are not in it")

    # state: registered styles
    state_dir: Path = Field(STATE_DIR, description="folder of the embedded store (SQLite) when no Redis is set")
    redis_url: str | None = Field(None, description="redis://[:password@]host:port/db: registered styles shared "
                                  "by every replica; unset = SQLite in state_dir")
    max_registered_styles: int = Field(10_000, ge=1, description="registered styles the store holds; when full, "
                                       "POST /styles answers 507 (never silent eviction)")

    # video jobs (POST /videos)
    max_video_bytes: int = Field(200 * MB, gt=0, description="largest uploaded video file")
    max_video_seconds: float = Field(300.0, gt=0, description="longest video, from its header (and checked while "
                                     "decoding)")
    max_video_frames: int = Field(9000, gt=0, description="most frames in a video (5 min at 30 fps), from its header "
                                  "and checked while decoding: a short clip at a high rate is as much work as a long one")
    max_video_fps: float = Field(120.0, gt=0, description="highest frame rate a video may declare")
    max_video_pixels: int = Field(1920 * 1080, gt=0, description="largest output frame (the frames at content_size); "
                                  "a 1080p frame takes ~2 s on a 2-core CPU")
    video_jobs: int = Field(1, ge=1, description="video segments rendering at once per replica (threads)")
    video_queue: int = Field(4, ge=0, description="unfinished video jobs a replica accepts beyond video_jobs "
                             "before 503 (any replica renders them)")
    video_files_dir: Path | None = Field(None, description="folder of video jobs' files (clips, segments, results); "
                                         "with Redis every replica must see the same one (a shared volume): Redis "
                                         "holds only the jobs' state; unset = state_dir/videos")
    video_max_attempts: int = Field(3, ge=1, description="times a part of a video job may fail (its renderer raised, "
                                    "or its replica died on it) before the job fails with the part's last error")
    video_ttl: float = Field(3600.0, gt=0, description="seconds a finished job and its MP4 are kept, then deleted")
    video_stale_seconds: float = Field(60.0, gt=0, description="a segment's lease: a replica renews it while it "
                                       "renders; one not renewed for this long (the replica stopped) is taken over")
    video_segment_frames: int = Field(60, ge=8, description="frames per segment of a video job (about 2 s); any "
                                      "replica renders any segment")
    replica_id: str = Field("", max_length=100, description="this replica's name in rendered_by and the logs; "
                            "empty = host name:pid")

    # live streams (WebSocket /ws/stylize)
    max_streams: int = Field(4, ge=1, description="live streams at once per replica; more are refused (close 1013)")
    stream_max_fps: float = Field(30.0, gt=0, description="frames a stream may send per second; faster ones are "
                                  "dropped unread")
    stream_idle_seconds: float = Field(30.0, gt=0, description="a stream that sends nothing this long is closed")
    stream_hello_seconds: float = Field(10.0, gt=0, description="a stream that has not said who it is (a key in the "
                                        "handshake or its first settings) this long after connecting is closed")
    max_anonymous_streams: int = Field(16, ge=1, description="sockets per replica still to say who they are; more "
                                       "are refused (close 1013), so idle sockets cannot take the replica's capacity")
    max_stream_frame_bytes: int = Field(2 * MB, gt=0, description="largest frame a stream may send")
    max_stream_pixels: int = Field(1280 * 720, gt=0, description="largest frame a stream may send, and largest "
                                   "answer (at its content_size), in pixels")

    # output
    png_compress_level: int = Field(1, ge=0, le=9, description="zlib level; 1 is ~5x faster than 6")
    jpeg_quality: int = Field(92, ge=1, le=100, description="JPEG answers' quality (format=jpeg)")
    webp_quality: int = Field(90, ge=1, le=100, description="WebP answers' quality (format=webp)")

    @property
    def videos_dir(self) -> Path:
        """Where video jobs' files are: uploads, clips, segments, results."""
        return self.video_files_dir or self.state_dir / "videos"

    @property
    def replica(self) -> str:
        return self.replica_id or f"{socket.gethostname()}:{os.getpid()}"

    @model_validator(mode="after")
    def _precision_fits_backend(self) -> Settings:
        from model import ort, runtime  # the backends' own lists

        allowed = ("auto", *(runtime.PRECISIONS if self.backend == "torch" else ort.PRECISIONS))
        if self.precision not in allowed:
            raise ValueError(f"precision {self.precision} does not run on the {self.backend} backend "
                             f"({', '.join(allowed)})")
        return self

    @model_validator(mode="after")
    def _one_request_fits_the_buffer(self) -> Settings:
        if self.max_buffered_bytes < self.max_total_bytes:
            raise ValueError(f"max_buffered_bytes ({self.max_buffered_bytes}) must hold at least one request "
                             f"(max_total_bytes, {self.max_total_bytes})")
        return self

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str) -> str:
        return check_rate_limit(v, "ADAIN_RATE_LIMIT")

    def tenant_defaults(self) -> TenantLimits:
        """Every tenant's limits unless the keys file says otherwise."""
        return TenantLimits(rate_limit=self.rate_limit, max_styles=self.max_styles_per_tenant,
                            queue_depth=self.tenant_queue_depth, max_streams=self.max_streams_per_tenant,
                            max_video_jobs=self.max_video_jobs_per_tenant)

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

"""The FastAPI application: ``create_app(settings)``, or ``app`` for ``uvicorn service.app:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser

from model.stylizer import Stylizer
from service import errors
from service.context import RequestContextMiddleware
from service.engine import Engine
from service.limits import BodyLimitMiddleware, EarlyBusyMiddleware, queued_paths
from service.metrics import MetricsMiddleware
from service.routes import live, ops, styles, stylize, videos
from service.settings import Settings

DESCRIPTION = """Arbitrary artistic style transfer (AdaIN, Huang & Belongie 2017).

`POST /stylize` with a content photo and 1-8 styles (uploads and/or `style_id`s of registered or
preset styles) answers the stylized image, streamed. `POST /styles` registers a style image once
and answers an id, so later requests send a few bytes instead of the painting. `POST /videos`
stylizes a clip as a background job (202 + an id; poll `GET /videos/{id}`, fetch the MP4 from
`GET /videos/{id}/result`). `GET /ws/stylize` is a WebSocket for live camera streams: JSON
settings, then JPEG/WebP frames in, stylized JPEG frames out (docs/live.md).
Who is calling is the `X-API-Key` header's tenant (when the server has keys): registered styles and
video jobs are the tenant's own, another tenant's id answers as an unknown one, and tenants take
turns at the model. Every answer carries `X-Request-ID` (yours if you sent a sane one).
Errors are JSON `{"detail": ...}`: 400 bad combination, 401 API key, 404 unknown id, 413 too large,
415 not an image, 422 malformed field, 429 over the tenant's rate or queue share (honour
`Retry-After`; `RateLimit-*` headers), 503 busy (honour `Retry-After`), 504 timeout."""


def create_app(settings: Settings | None = None, stylizer: Stylizer | None = None) -> FastAPI:
    """Build the app. ``stylizer`` injects an already-loaded model (tests); otherwise the lifespan
    loads the weights named in ``settings`` once."""
    settings = settings or Settings()
    engine = Engine(settings, stylizer)
    # Keep uploads in memory up to the body limit (Starlette spools parts over 1 MB to a temp
    # file otherwise): nothing a user sends is written to disk. The body limit bounds a request's
    # memory, the buffered-bytes budget (BodyLimitMiddleware) all requests' together.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.max_total_bytes + 1)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.load()
        yield
        engine.close()

    app = FastAPI(
        title="adain-service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        root_path=settings.root_path, docs_url=None, redoc_url=None,  # served below, without a CDN
    )
    app.state.engine = engine
    errors.install(app)
    routers = (stylize.router, styles.router, videos.router, live.router, ops.router)
    for router in routers:
        app.include_router(router)
    routes = [route for router in routers for route in router.routes]
    install_docs(app, settings.root_path)
    if settings.frontend_dir.is_dir():
        # The page is the router's fallback rather than a mount at "/": a mount there matches every
        # path, so e.g. OPTIONS /stylize would get the static files' "405, Allow: GET, HEAD".
        app.router.default = StaticFiles(directory=settings.frontend_dir, html=True)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"],
                           expose_headers=["Server-Timing", "X-Image-Width", "X-Image-Height", "Retry-After", "Location",
                                           "Content-Range", "Accept-Ranges", "X-Request-ID", "RateLimit-Limit",
                                           "RateLimit-Remaining", "RateLimit-Reset"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_total_bytes, body_timeout=settings.body_timeout,
                       per_path={"/videos": (settings.max_video_bytes + settings.max_total_bytes,
                                             "ADAIN_MAX_VIDEO_BYTES + ADAIN_MAX_TOTAL_BYTES")},
                       budget=engine.buffered, held={"/videos": settings.max_total_bytes})
    model_paths = queued_paths(routes, "model")  # the POSTs marked @queues_for("model")
    app.add_middleware(EarlyBusyMiddleware, retry_after=engine.queue.retry_after_if_full, paths=model_paths)
    app.add_middleware(EarlyBusyMiddleware, retry_after=engine.videos.retry_after_if_full,
                       paths=queued_paths(routes, "video"))
    app.add_middleware(MetricsMiddleware, metrics=engine.metrics, paths=model_paths)  # sees every status
    app.add_middleware(RequestContextMiddleware)  # outermost: every answer carries its request id
    return app


# ReDoc draws its maker's logo from their CDN in the side menu (no option turns it off): served here
# with that one address pointing at our own icon, so /redoc asks nothing of another host
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def install_docs(app: FastAPI, root: str) -> None:
    """/docs and /redoc with Swagger UI / ReDoc assets from the fastapi-offline wheel: FastAPI's
    defaults load them from a CDN, which leaves a blank page for users without internet."""
    assets = f"{root}/docs-static"
    static = resources.files("fastapi_offline") / "static"
    redoc_js = (static / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, f"{root}/favicon.svg".encode())

    @app.get("/docs-static/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(redoc_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/docs-static", StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - docs",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - reference",
                              redoc_js_url=f"{assets}/redoc.standalone.js", redoc_favicon_url=f"{assets}/favicon.png",
                              with_google_fonts=False)


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.app:app` builds the app on first access, from the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)

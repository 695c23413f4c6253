"""Error types of the service, the table of error responses the routes document, and how each
error becomes a JSON ``{"detail": ...}`` response.

The model's input errors (``model.errors``) map to 400 / 413 / 415 / 422; any other exception is
a bug: a 500 whose traceback the server logs."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from model.errors import ImageTooLarge, InputError, InvalidImage, InvalidVideo, OutOfRange, VideoTooLarge
from model.images import INPUT_FORMATS
from service.schemas import ErrorBody

log = logging.getLogger("adain.errors")
FORMATS = ", ".join(INPUT_FORMATS[:-1]) + " or " + INPUT_FORMATS[-1]  # "PNG, JPEG, ... or AVIF"


class ServiceError(Exception):
    status = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class ContentGone(NotFound):
    def __init__(self) -> None:
        super().__init__("content_id: that content is not kept (any more); send the content file again")


class TooLarge(ServiceError):
    status = 413


class TooManyRequests(ServiceError):
    status = 429


class Busy(ServiceError):
    status = 503


class TimedOut(ServiceError):
    status = 504


class Conflict(ServiceError):
    status = 409


class RangeNotSatisfiable(ServiceError):
    status = 416


class Cancelled(Exception):
    """The request is gone (timed out or client disconnected): stop working on it."""


# The error responses the routes document in OpenAPI, by status: what it means, and an example
# of what a client really gets (so /docs shows each status's own message).
RESPONSES: dict[int | str, dict[str, Any]] = {code: {
    "model": ErrorBody, "description": text, "content": {"application/json": {"example": {"detail": example}}},
} for code, (text, example) in {
    400: ("bad combination (e.g. a mask without exactly two styles, unknown style_id, bad weights)",
          "a mask needs exactly two styles (white = first, black = second); 1 given"),
    401: ("API key missing or wrong (only when the server requires keys)",
          "missing or wrong API key: send it in the X-API-Key header"),
    404: ("no such id (another tenant's id answers the same)", "no style with id '3f9a0c1e2b7d4a5f6e8c9b0a'"),
    409: ("the video job has not finished (or failed): no result yet", "the job is running (40/120 frames)"),
    413: ("a file, the body, an image's pixel count, or a video's length or frame size is over the limit",
          "content is 31457280 bytes; the limit per file is 20971520"),
    415: ("an upload is not an image (or not a video that can be decoded)",
          "content: not a readable image (format not recognised) - send a PNG, JPEG, WebP, GIF, BMP, TIFF, HEIC, "
          "HEIF or AVIF image"),
    416: ("the Range asked for is outside the result", "the result is 81234 bytes; range 'bytes=90000-' is outside it"),
    422: ("a field is malformed or out of range", "alpha: Input should be less than or equal to 1 (got '3')"),
    429: ("over the tenant's request rate (RateLimit-* headers) or its share of the queue: retry after the "
          "Retry-After header's seconds", "tenant 'acme' is over its rate limit (10/second); retry in 1 s"),
    503: ("the server is busy, still loading, or its style store is down: retry after the Retry-After header's "
          "seconds", "the server is busy (9 requests ahead); retry shortly"),
    504: ("the request took longer than the server's timeout",
          "the request took longer than 60 s; try a smaller image"),
    507: ("the style store, or the tenant's quota of registered styles, is full: delete styles before registering "
          "more", "tenant 'acme' has 1000 registered styles, its quota: delete some before registering more"),
}.items()}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: RESPONSES[code] for code in codes}


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """One readable sentence instead of pydantic's list: "alpha: Input should be ... (got '3')"."""
    parts = []
    for err in errors:
        field = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        got = f" (got {str(err['input'])[:40]!r})" if isinstance(err.get("input"), (str, int, float)) else ""
        parts.append(f"{field or 'request'}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts)


def _answer(status: int) -> Any:
    async def handler(_: Request, e: Exception) -> JSONResponse:
        return _json(status, str(e))
    return handler


def install(app: FastAPI) -> None:
    # Handlers are looked up along the exception's class hierarchy: the most specific one answers.
    for kind, status in ((InputError, 400), (OutOfRange, 422), (ImageTooLarge, 413), (VideoTooLarge, 413),
                         (InvalidVideo, 415)):
        app.add_exception_handler(kind, _answer(status))

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, e: ServiceError) -> JSONResponse:
        return _json(e.status, e.detail, e.headers)

    @app.exception_handler(InvalidImage)
    async def invalid_image(_: Request, e: InvalidImage) -> JSONResponse:
        return _json(415, f"{e} - send a {FORMATS} image")

    @app.exception_handler(RequestValidationError)
    async def invalid_field(_: Request, e: RequestValidationError) -> JSONResponse:
        return _json(422, validation_detail(list(e.errors())))

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, _: Exception) -> JSONResponse:
        # Starlette's Allow lists only the first route on the path (POST /styles hid GET /styles);
        # the OpenAPI paths know every method of a path.
        path = request.scope["path"]
        methods = sorted({m.upper() for template, ops in app.openapi()["paths"].items()
                          if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path) for m in ops})
        return _json(405, f"{request.method} is not allowed on {path}; use {', '.join(methods)}",
                     {"Allow": ", ".join(methods)})

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server's log gets the traceback.
        return _json(500, f"internal error while serving {request.url.path}; it has been logged")

"""Error types of the service and how each becomes a JSON ``{"detail": ...}`` response."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from model.images import ImageTooLarge, InvalidImage

log = logging.getLogger("adain.errors")


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


class TooLarge(ServiceError):
    status = 413


class UnsupportedMedia(ServiceError):
    status = 415


class Busy(ServiceError):
    status = 503


class TimedOut(ServiceError):
    status = 504


class Cancelled(Exception):
    """The request is gone (timed out or client disconnected): stop working on it."""


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, e: ServiceError) -> JSONResponse:
        return _json(e.status, e.detail, e.headers)

    @app.exception_handler(InvalidImage)
    async def invalid_image(_: Request, e: InvalidImage) -> JSONResponse:
        return _json(415, f"{e} - send a PNG, JPEG, WebP, GIF, BMP or TIFF image")

    @app.exception_handler(ImageTooLarge)
    async def image_too_large(_: Request, e: ImageTooLarge) -> JSONResponse:
        return _json(413, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid_field(_: Request, e: RequestValidationError) -> JSONResponse:
        # One readable sentence instead of pydantic's list: "alpha: Input should be ... (got '3')".
        parts = []
        for err in e.errors():
            field = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            got = f" (got {str(err['input'])[:40]!r})" if isinstance(err.get("input"), (str, int, float)) else ""
            parts.append(f"{field or 'request'}: {err.get('msg', 'invalid')}{got}")
        return _json(422, "; ".join(parts))

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, _: Exception) -> JSONResponse:
        # Starlette's Allow lists only the first route on the path (POST /styles hid GET /styles);
        # the OpenAPI paths know every method of a path.
        path = request.scope["path"]
        methods = sorted({m.upper() for template, ops in app.openapi()["paths"].items()
                          if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path) for m in ops})
        return _json(405, f"{request.method} is not allowed on {path}; use {', '.join(methods)}",
                     {"Allow": ", ".join(methods)})

    @app.exception_handler(ValueError)
    async def bad_combination(_: Request, e: ValueError) -> JSONResponse:
        # The Stylizer raises ValueError for combinations it cannot do (mask with 3 styles, ...).
        return _json(400, str(e))

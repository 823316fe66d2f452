"""The one table mapping service errors (:mod:`cim.errors`) to HTTP status codes, with JSON bodies.

Example::

    app = FastAPI()
    add_exception_handlers(app)          # NotFoundError -> 404 {"error": "NotFoundError", "detail": "..."}
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cim.errors import CIMError, InvalidInputError, NotFoundError, UnsupportedError
from cim.security.limits import RateLimitedError, RequestTooLargeError
from cim.security.policy import AuthenticationError, ForbiddenError


class AssetsMissingError(CIMError):
    """Files the web service serves (CesiumJS, the tileset) are not installed or not built."""


#: Most specific class wins (looked up along the exception's MRO); anything else from ``cim`` is a 500.
STATUS_CODES: dict[type[Exception], int] = {
    NotFoundError: 404,
    InvalidInputError: 400,
    UnsupportedError: 415,
    AuthenticationError: 401,
    ForbiddenError: 403,
    RequestTooLargeError: 413,
    RateLimitedError: 429,
    AssetsMissingError: 503,
    CIMError: 500,
}


def status_for(exc: Exception, table: dict[type[Exception], int] = STATUS_CODES) -> int:
    """The HTTP status of ``exc``: the entry of its nearest class in ``table``, else 500."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def error_body(exc: Exception) -> dict[str, str]:
    """The JSON body of an error response."""
    return {"error": type(exc).__name__, "detail": str(exc)}


def add_exception_handlers(app: FastAPI, table: dict[type[Exception], int] = STATUS_CODES) -> None:
    """Answer every :class:`~cim.errors.CIMError` with its status from ``table`` and a JSON body."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc, table))

    app.add_exception_handler(CIMError, handler)

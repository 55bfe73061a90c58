"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with a 4xx/5xx.

Every failure a client can cause ends here, and the server goes on serving. The `openai`
package maps the status to its exception: 400 BadRequestError, 404 NotFoundError,
429 RateLimitError (it honours Retry-After), 5xx InternalServerError.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from lmforge.engine.scheduler import QueueFullError, SchedulerClosed
from lmforge.errors import LmforgeError

_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error"}


class APIError(Exception):
    """An error answered as OpenAI does."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "api_error")
        self.headers = headers

    def body(self) -> dict:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.body()}, status_code=self.status, headers=self.headers)

    @classmethod
    def from_validation(cls, err: ValidationError | RequestValidationError) -> APIError:
        """400 naming the first bad field, e.g. param "messages.0.content" (FastAPI's own
        checks of a route's body, path and query too: 400 as OpenAI answers, never 422)."""
        first = err.errors()[0]
        if isinstance(err, RequestValidationError) and first["loc"][:1] == ("body",):
            first = {**first, "loc": first["loc"][1:]}
        path = []  # the field's path, without pydantic's union-member tags ("str", "list[str]")
        for part in first["loc"]:
            if isinstance(part, str) and (part in _TYPE_TAGS or "[" in part):
                break
            path.append(str(part))
        param = ".".join(path) or None
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field; see the OpenAI API reference for the accepted ones"
        elif first["type"] == "missing":
            message = "this field is required"
        return cls(400, f"{param}: {message}" if param else message, param, first["type"])


def from_exception(err: Exception) -> APIError:
    """The APIError for any exception raised while serving a request."""
    if isinstance(err, APIError):
        return err
    if isinstance(err, ValidationError | RequestValidationError):
        return APIError.from_validation(err)
    if isinstance(err, QueueFullError):
        return APIError(
            429,
            str(err),
            code="queue_full",
            type="rate_limit_error",
            headers={"Retry-After": str(err.retry_after)},
        )
    if isinstance(err, SchedulerClosed):
        return APIError(503, str(err), code="shutting_down", type="server_error")
    if isinstance(err, LmforgeError):
        return APIError(400, str(err))
    if isinstance(err, ClientDisconnect):  # nobody reads the answer; no traceback in the log
        return APIError(400, "the client left while sending its request", code="client_left")
    return APIError(500, f"internal error: {type(err).__name__}: {err}")


def install(app: FastAPI) -> None:
    """Answer every error, ours and the framework's (404 route, 405 method), as OpenAI does."""

    async def on_error(request: Request, err: Exception) -> JSONResponse:
        return from_exception(err).response()

    async def on_http(request: Request, err: HTTPException) -> JSONResponse:
        code = getattr(err, "code", None)  # e.g. auth.BodyTooLarge's "body_too_large"
        return APIError(err.status_code, str(err.detail), code=code, headers=err.headers).response()

    kinds = (APIError, ValidationError, RequestValidationError, LmforgeError, ClientDisconnect)
    for kind in (*kinds, Exception):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(HTTPException, on_http)

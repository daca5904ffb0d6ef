"""Domain errors and their HTTP shape: ``{"error": {"code", "message"}}``.

Services raise these; routes never build error responses by hand. The exception handler
installed by ``create_app`` turns any ``ApiError`` into the contract's JSON shape.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request is valid but the current state does not allow it (illegal transition)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "too_large"


class Unprocessable(ApiError):
    """Valid JSON that breaks a rule of the domain."""

    status = 422
    code = "unprocessable"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

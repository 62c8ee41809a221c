"""Exceptions: one class per kind of failure, the server's JSON error carried along.

Every error the server answers has the body ``{"error": {"code", "message", "field"}}``;
:class:`ApiError` and its subclasses keep all three, plus the HTTP status.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

from .models import Job, Run

__all__ = [
    "ZenithError",
    "Unreachable",
    "ProtocolError",
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "WaitTimeout",
    "JobFailed",
    "RunFailed",
]


class ZenithError(Exception):
    """Base of every exception this package raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(ZenithError):
    """No server could be reached (or, for a request that is not safe to repeat, the
    connection broke after it was sent, so its outcome is unknown)."""

    def __init__(self, servers: str, reason: str) -> None:
        super().__init__(f"cannot reach the server at {servers}: {reason}")
        self.servers = servers
        self.reason = reason


class ProtocolError(ZenithError):
    """The server answered something this client does not understand."""


class ApiError(ZenithError):
    """The server answered with an error status."""

    def __init__(
        self, status: int, code: str, message: str, field: Optional[str] = None
    ) -> None:
        text = f"{field}: {message}" if field else message
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )


class BadRequest(ApiError):
    """400: the request was invalid (``field`` names the offending field when known)."""


class Unauthorized(ApiError):
    """401: the token is missing, unknown, revoked or expired."""


class Forbidden(ApiError):
    """403: the token may not do this (role, namespace, or a namespace quota)."""


class NotFound(ApiError):
    """404: no such job, run, flow or route (or one the token may not see)."""


class Conflict(ApiError):
    """409: the request conflicts with the current state (e.g. cancelling an ended job)."""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class RateLimited(ApiError):
    """429: too many requests (or too many live jobs); ``retry_after`` in seconds."""

    retry_after: Optional[float] = None


class ServerError(ApiError):
    """5xx other than 503: a bug on the server's side."""


class Unavailable(ServerError):
    """503: the server cannot take this now (shutting down, no leader, store refusing
    writes); safe requests are retried on the next server before this is raised."""


class WaitTimeout(ZenithError, TimeoutError):
    """A wait ran out of time before the job or run ended (it goes on)."""


class JobFailed(ZenithError):
    """``wait(..., check=True)``: the job ended other than succeeded; ``job`` is its view."""

    def __init__(self, job: Job) -> None:
        why = f": {job.reason}" if job.reason else ""
        super().__init__(f"job {job.id} {job.state}{why}")
        self.job = job


class RunFailed(ZenithError):
    """``wait_run(..., check=True)``: the run ended other than succeeded; ``run`` is its view."""

    def __init__(self, run: Run) -> None:
        why = f": {run.reason}" if run.reason else ""
        super().__init__(f"run {run.id} {run.state}{why}")
        self.run = run


_BY_STATUS: Dict[int, Type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, body: bytes, retry_after: Optional[str] = None) -> ApiError:
    """The exception for an error answer: its class from the status, its text from the
    server's ``{"error": ...}`` body (or the raw body when it is not one)."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    detail: Any = None
    try:
        detail = json.loads(body.decode("utf-8")).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        err = cls(
            status,
            str(detail.get("code", "http")),
            detail["message"],
            detail.get("field") or None,
        )
    else:
        text = body.decode("utf-8", "replace").strip()
        err = cls(status, "http", f"HTTP {status}: {text}" if text else f"HTTP {status}")
    if isinstance(err, RateLimited) and retry_after:
        try:
            err.retry_after = float(retry_after)
        except ValueError:
            pass
    return err

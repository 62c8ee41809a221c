"""Transport: one request description (:class:`Call`) sent through httpx, with failover
across several server URLs and retries that never repeat an unsafe request.

The rules (the Rust client's, ``crates/client``, which applies the retries to idempotent
submissions only; here they cover every request that is safe to repeat):

* A connection that could not be made (refused, DNS, TLS handshake) sent nothing: any
  request goes on to the next server at once. When every server refuses, the request fails
  at once with :class:`~zenith_client.errors.Unreachable`.
* A *safe* request (GET/PUT, or a POST carrying an ``Idempotency-Key``) is also
  retried, with jittered exponential backoff and on the next server, after a broken
  connection or timeout (the request may have been processed), a 503 (no leader yet, store
  refusing writes) or a 429 (after its ``Retry-After``), until ``retry_for`` seconds pass.
* Anything else is answered as it came; an unsafe request whose connection broke after it
  was sent raises ``Unreachable`` saying its outcome is unknown. DELETE counts as unsafe
  here: its effect could be repeated, but the server answers a repeated delete 404, which
  would report a delete that worked as a failure.

The server that answered last is used first next time.
"""

from __future__ import annotations

import os
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, TypeVar, Union

import anyio
import httpx

from .config import Settings
from .errors import ProtocolError, Unreachable, error_for

T = TypeVar("T")

#: First backoff between retries, doubled each time up to ``MAX_DELAY`` (seconds).
FIRST_DELAY = 0.1
MAX_DELAY = 2.0

Verify = Union[bool, str, ssl.SSLContext]


class _ClientDefault:
    """``Call.read_timeout``: the client's own."""


CLIENT_DEFAULT = _ClientDefault()
#: ``Call.read_timeout``: wait for the next byte as long as it takes.
NO_READ_TIMEOUT = None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Optional[Mapping[str, str]] = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    read_timeout: Union[float, None, _ClientDefault] = CLIENT_DEFAULT
    """Seconds between bytes of the answer, instead of the client's (``NO_READ_TIMEOUT``
    for a followed log, which may be quiet for as long as its job)."""
    idempotent: bool = False
    """A POST that changes nothing (validation), safe to repeat."""

    @property
    def safe(self) -> bool:
        """May be sent again when its outcome is unknown."""
        return self.idempotent or self.method in ("GET", "HEAD", "PUT") or any(
            k.lower() == "idempotency-key" for k in self.headers
        )


def json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError as e:
        raise ProtocolError(f"unexpected answer from the server: {e}") from e


def ssl_context(ca_cert: Optional[str], verify: Verify) -> Verify:
    """What httpx verifies https:// servers with: the system's roots plus ``ca_cert``."""
    if verify is False or isinstance(verify, ssl.SSLContext):
        return verify
    ctx = ssl.create_default_context()
    try:  # httpx's own roots (certifi, one of its dependencies) as well as the system's
        import certifi

        ctx.load_verify_locations(cafile=certifi.where())
    except ImportError:  # pragma: no cover
        pass
    for path in (ca_cert, verify if isinstance(verify, str) else None):
        if path:
            try:
                ctx.load_verify_locations(cafile=os.fspath(path))
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"CA certificate {path}: {e}") from e
    return ctx


class _Attempts:
    """The retry decisions for one call; the sync and async senders share them."""

    def __init__(self, router: "Router", call: Call[Any]) -> None:
        self.router = router
        self.call = call
        self.index = router.current
        self.refused = 0  # servers that refused in a row
        self.delay = FIRST_DELAY
        self.deadline = time.monotonic() + router.retry_for

    def url(self) -> str:
        return self.router.servers[self.index] + self.call.path

    def _next_server(self) -> None:
        self.index = (self.index + 1) % len(self.router.servers)

    def _backoff(self, at_least: float = 0.0) -> Optional[float]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        d = max(self.delay * random.uniform(0.5, 1.5), at_least)
        self.delay = min(self.delay * 2, MAX_DELAY)
        return min(d, left)

    def on_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before the next try; raises when there is none."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            self.refused += 1
            self._next_server()
            if self.refused < len(self.router.servers):
                return 0.0
            raise Unreachable(self.router.shown, reason) from exc
        self.refused = 0
        wait = self._backoff() if self.call.safe else None
        if wait is None:
            if not self.call.safe:
                reason += f" (the {self.call.method} was sent: its outcome is unknown)"
            raise Unreachable(self.router.shown, reason) from exc
        self._next_server()
        return wait

    def on_response(self, resp: httpx.Response) -> Optional[float]:
        """``None`` to take the answer, else seconds to wait before trying again."""
        self.refused = 0
        self.router.current = self.index
        if not self.call.safe or resp.status_code not in (429, 503):
            return None
        if resp.status_code == 503:
            wait = self._backoff()
            if wait is not None:
                self._next_server()
            return wait
        try:
            retry_after = float(resp.headers.get("retry-after", "0"))
        except ValueError:
            retry_after = 0.0
        return self._backoff(at_least=retry_after)


class Router:
    """The server list and which one to use first."""

    def __init__(self, settings: Settings, retry_for: float) -> None:
        self.servers: List[str] = list(settings.servers)
        self.current = 0
        self.retry_for = retry_for
        self.shown = ",".join(self.servers)
        self.headers: Dict[str, str] = {"user-agent": "zenith-client-python"}
        if settings.token:
            self.headers["authorization"] = f"Bearer {settings.token}"

    @property
    def base(self) -> str:
        """The server requests go to now."""
        return self.servers[self.current]


def _timeout(default: httpx.Timeout, call: Call[Any]) -> httpx.Timeout:
    if isinstance(call.read_timeout, _ClientDefault):
        return default
    return httpx.Timeout(
        connect=default.connect, read=call.read_timeout, write=default.write, pool=default.pool
    )


def _check(resp: httpx.Response, body: bytes) -> None:
    if resp.status_code >= 400:
        raise error_for(resp.status_code, body, resp.headers.get("retry-after"))


class SyncTransport(Router):
    def __init__(self, settings: Settings, http: httpx.Client, retry_for: float) -> None:
        super().__init__(settings, retry_for)
        self.http = http

    def send(self, call: Call[Any], stream: bool = False) -> httpx.Response:
        """The answer to ``call`` (its body read unless ``stream``); error statuses raise."""
        tries = _Attempts(self, call)
        while True:
            req = self.http.build_request(
                call.method,
                tries.url(),
                params=call.params,
                json=call.json,
                headers={**self.headers, **call.headers},
                timeout=_timeout(self.http.timeout, call),
            )
            resp: Optional[httpx.Response] = None
            try:
                resp = self.http.send(req, stream=True)
                wait = tries.on_response(resp)
                if wait is None:
                    if stream and resp.status_code < 400:
                        return resp
                    body = resp.read()
                    resp.close()
                    _check(resp, body)
                    return resp
                resp.close()
            except httpx.TransportError as e:
                if resp is not None:
                    resp.close()
                wait = tries.on_error(e)
            time.sleep(wait)

    def run(self, call: Call[T]) -> T:
        return call.parse(self.send(call))


class AsyncTransport(Router):
    def __init__(self, settings: Settings, http: httpx.AsyncClient, retry_for: float) -> None:
        super().__init__(settings, retry_for)
        self.http = http

    async def send(self, call: Call[Any], stream: bool = False) -> httpx.Response:
        """The answer to ``call`` (its body read unless ``stream``); error statuses raise."""
        tries = _Attempts(self, call)
        while True:
            req = self.http.build_request(
                call.method,
                tries.url(),
                params=call.params,
                json=call.json,
                headers={**self.headers, **call.headers},
                timeout=_timeout(self.http.timeout, call),
            )
            resp: Optional[httpx.Response] = None
            try:
                resp = await self.http.send(req, stream=True)
                wait = tries.on_response(resp)
                if wait is None:
                    if stream and resp.status_code < 400:
                        return resp
                    body = await resp.aread()
                    await resp.aclose()
                    _check(resp, body)
                    return resp
                await resp.aclose()
            except httpx.TransportError as e:
                if resp is not None:
                    await resp.aclose()
                wait = tries.on_error(e)
            await anyio.sleep(wait)

    async def run(self, call: Call[T]) -> T:
        return call.parse(await self.send(call))


def httpx_options(
    settings: Settings, verify: Verify, timeout: float, connect_timeout: float
) -> Dict[str, Any]:
    """Keyword arguments of ``httpx.Client``/``httpx.AsyncClient`` for these settings."""
    return {
        "verify": ssl_context(settings.ca_cert, verify),
        "timeout": httpx.Timeout(timeout, connect=connect_timeout),
        "follow_redirects": False,
    }

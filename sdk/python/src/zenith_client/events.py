"""The live event stream (``GET /api/v1/events``, server-sent events, one JSON object per
``data:`` line): committed transitions of jobs, attempts, nodes, flow runs and their steps.

:class:`EventStream` (sync) and :class:`AsyncEventStream` open the connection when their
``with`` block is entered (or at the first iteration): from then on no transition is missed,
so enter the block first, then submit, then iterate. A subscriber that falls behind gets a
:class:`LaggedEvent` and should re-read the state it cares about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, ClassVar, Dict, Iterator, List, Optional, Union

import httpx

from .errors import ProtocolError, Unreachable
from .models import TaskCounts

#: Longest SSE line accepted.
MAX_LINE = 16 << 20
KINDS = ("job", "attempt", "node", "run", "step")


@dataclass(frozen=True)
class JobEvent:
    kind: ClassVar[str] = "job"
    job: int
    state: str
    tasks: TaskCounts
    reason: Optional[str] = None


@dataclass(frozen=True)
class AttemptEvent:
    kind: ClassVar[str] = "attempt"
    job: int
    task: int
    attempt: int
    node: str
    state: str
    exit_code: Optional[int] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class NodeEvent:
    kind: ClassVar[str] = "node"
    node: str
    state: str


@dataclass(frozen=True)
class RunEvent:
    kind: ClassVar[str] = "run"
    run: int
    flow: str
    state: str
    reason: Optional[str] = None


@dataclass(frozen=True)
class StepEvent:
    kind: ClassVar[str] = "step"
    run: int
    step: str
    state: str
    reason: Optional[str] = None


@dataclass(frozen=True)
class LaggedEvent:
    """This subscriber missed ``missed`` batches of events; re-read state to resync."""

    kind: ClassVar[str] = "lagged"
    missed: int


@dataclass(frozen=True)
class UnknownEvent:
    """An event of a kind this client does not know (a newer server)."""

    kind: str
    data: Dict[str, Any] = field(default_factory=dict)


Event = Union[JobEvent, AttemptEvent, NodeEvent, RunEvent, StepEvent, LaggedEvent, UnknownEvent]


def parse_event(d: Dict[str, Any]) -> Event:
    """An event from its JSON object (``KeyError`` when a field it needs is missing)."""
    kind = d.get("kind")
    if kind == "job":
        return JobEvent(d["job"], d["state"], TaskCounts.from_json(d.get("tasks") or {}),
                        d.get("reason"))
    if kind == "attempt":
        return AttemptEvent(d["job"], d["task"], d["attempt"], d["node"], d["state"],
                            d.get("exit_code"), d.get("reason"))
    if kind == "node":
        return NodeEvent(d["node"], d["state"])
    if kind == "run":
        return RunEvent(d["run"], d["flow"], d["state"], d.get("reason"))
    if kind == "step":
        return StepEvent(d["run"], d["step"], d["state"], d.get("reason"))
    if kind == "lagged":
        return LaggedEvent(d["missed"])
    return UnknownEvent(str(kind), d)


class SSEDecoder:
    """Incremental server-sent-events parser: bytes in, events out (comments such as the
    server's ``: keepalive`` are skipped)."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: List[str] = []

    def feed(self, chunk: bytes) -> List[Event]:
        self._buf += chunk
        out: List[Event] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raise ProtocolError(f"event stream line over {MAX_LINE} bytes")
                return out
            line = self._buf[:end].rstrip(b"\r")
            self._buf = self._buf[end + 1 :]
            if not line:
                if self._data:
                    text = "\n".join(self._data)
                    self._data = []
                    try:
                        out.append(parse_event(json.loads(text)))
                    except (ValueError, AttributeError, KeyError, TypeError) as e:
                        raise ProtocolError(f"bad event {text[:200]!r}: {e}") from e
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                self._data.append(value[1:].decode() if value.startswith(b" ") else value.decode())


def events_query(job: Optional[int], run: Optional[int], kinds: Optional[List[str]]) -> Dict[str, str]:
    q: Dict[str, str] = {}
    if job is not None:
        q["job"] = str(job)
    if run is not None:
        q["run"] = str(run)
    if kinds:
        q["kind"] = ",".join(kinds)
    return q


class EventStream:
    """Iterator of :data:`Event` s; a context manager that closes the connection."""

    def __init__(self, open_: Callable[[], httpx.Response]) -> None:
        self._open = open_
        self._resp: Optional[httpx.Response] = None
        self._it: Optional[Iterator[Event]] = None

    def open(self) -> "EventStream":
        if self._resp is None:
            self._resp = self._open()
        return self

    def _events(self) -> Iterator[Event]:
        assert self._resp is not None
        dec = SSEDecoder()
        try:
            for chunk in self._resp.iter_bytes():
                yield from dec.feed(chunk)
        except httpx.TransportError as e:
            raise Unreachable(str(self._resp.url), f"event stream broke: {e}") from e

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._it is None:
            self.open()
            self._it = self._events()
        return next(self._it)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()

    def __enter__(self) -> "EventStream":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEventStream:
    """Async iterator of :data:`Event` s; an async context manager that closes the connection."""

    def __init__(self, open_: Callable[[], Any]) -> None:
        self._open = open_
        self._resp: Optional[httpx.Response] = None
        self._it: Optional[AsyncIterator[Event]] = None

    async def open(self) -> "AsyncEventStream":
        if self._resp is None:
            self._resp = await self._open()
        return self

    async def _events(self) -> AsyncIterator[Event]:
        assert self._resp is not None
        dec = SSEDecoder()
        try:
            async for chunk in self._resp.aiter_bytes():
                for ev in dec.feed(chunk):
                    yield ev
        except httpx.TransportError as e:
            raise Unreachable(str(self._resp.url), f"event stream broke: {e}") from e

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __anext__(self) -> Event:
        if self._it is None:
            await self.open()
            self._it = self._events()
        return await self._it.__anext__()

    async def aclose(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()

    async def __aenter__(self) -> "AsyncEventStream":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

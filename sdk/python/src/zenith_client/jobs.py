"""Jobs: the spec users submit (``JobSpec``, the API's field names) and the job calls.

Each function returns a :class:`~zenith_client._http.Call`; ``Client`` and ``AsyncClient``
send the same calls, one synchronously and one with ``await``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from ._http import CLIENT_DEFAULT, NO_READ_TIMEOUT, Call, json_body
from .models import Explanation, Job, JobControlled, JobList

Duration = Union[str, int, float]
"""Seconds as a number, or the server's text form: ``"250ms"``, ``"30s"``, ``"1m 30s"``."""


def duration(d: Duration) -> str:
    if isinstance(d, str):
        return d
    if isinstance(d, bool) or d < 0:
        raise ValueError(f"a duration must be a non-negative number of seconds, not {d!r}")
    return f"{round(d * 1000)}ms"


def new_idempotency_key() -> str:
    """A fresh random key (128 bits, hex), as the CLI makes one for each ``zenith submit``."""
    return secrets.token_hex(16)


@dataclass
class JobSpec:
    """A job to submit. ``command`` is an argv list run without a shell (use
    ``["sh", "-c", "..."]`` for one). Fields left ``None`` take the server's defaults."""

    command: Sequence[str]
    name: Optional[str] = None
    env: Optional[Mapping[str, str]] = None
    cwd: Optional[str] = None
    cpus: Optional[float] = None
    memory: Union[int, str, None] = None
    """Bytes, or a size such as ``"512M"``."""
    gpus: Optional[int] = None
    custom_resources: Optional[Mapping[str, int]] = None
    queue: Optional[str] = None
    priority: Optional[int] = None
    retries: Optional[int] = None
    backoff: Optional[str] = None
    """``fixed`` or ``exponential``."""
    retry_delay: Optional[Duration] = None
    max_retry_delay: Optional[Duration] = None
    timeout: Optional[Duration] = None
    array: Optional[str] = None
    """A task array: ``"1-100"``, ``"1-99:2"``, ``"1,7,20-29"``, ``"1-1000%10"``."""
    after: Optional[Sequence[Union[int, str]]] = None
    """Jobs that must end first: ``12`` or ``"12:ok"``, ``"12:fail"``, ``"12:any"``."""
    hold: bool = False
    constraints: Optional[Sequence[str]] = None
    prefer: Optional[Sequence[str]] = None
    spread: Optional[str] = None
    labels: Optional[Mapping[str, str]] = None
    namespace: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    """Further spec fields, sent as given (e.g. ``failure_policy``, ``gang``)."""

    def to_json(self) -> Dict[str, Any]:
        """The spec as the API takes it."""
        if isinstance(self.command, str):
            raise TypeError("command is a list of arguments, not a string")
        spec: Dict[str, Any] = {"command": [str(a) for a in self.command]}
        res: Dict[str, Any] = {}
        if self.cpus is not None:
            res["cpus"] = self.cpus
        if self.memory is not None:
            res["memory"] = self.memory
        if self.gpus is not None:
            res["gpus"] = self.gpus
        if self.custom_resources:
            res["custom"] = dict(self.custom_resources)
        if res:
            spec["resources"] = res
        retry: Dict[str, Any] = {}
        if self.retries is not None:
            retry["limit"] = self.retries
        if self.backoff is not None:
            retry["backoff"] = self.backoff
        if self.retry_delay is not None:
            retry["delay"] = duration(self.retry_delay)
        if self.max_retry_delay is not None:
            retry["max_delay"] = duration(self.max_retry_delay)
        if retry:
            spec["retry"] = retry
        if self.timeout is not None:
            spec["timeout"] = duration(self.timeout)
        if self.after:
            spec["after"] = [str(a) for a in self.after]
        if self.hold:
            spec["hold"] = True
        for key in ("name", "cwd", "queue", "priority", "array", "spread", "namespace"):
            value = getattr(self, key)
            if value is not None:
                spec[key] = value
        for key in ("env", "labels"):
            value = getattr(self, key)
            if value:
                spec[key] = dict(value)
        for key in ("constraints", "prefer"):
            value = getattr(self, key)
            if value:
                spec[key] = list(value)
        spec.update(self.extra)
        return spec


SpecLike = Union[JobSpec, Mapping[str, Any]]


def spec_json(spec: SpecLike, namespace: Optional[str]) -> Dict[str, Any]:
    """A spec as JSON, in the client's namespace unless it names one."""
    d = spec.to_json() if isinstance(spec, JobSpec) else dict(spec)
    if namespace and not d.get("namespace"):
        d["namespace"] = namespace
    return d


def _key_header(key: Optional[str]) -> Dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def submit(spec: Dict[str, Any], key: Optional[str]) -> Call[int]:
    return Call("POST", "/api/v1/jobs", lambda r: int(json_body(r)["id"]), json=spec,
                headers=_key_header(key))


def submit_batch(specs: List[Dict[str, Any]], key: Optional[str]) -> Call[List[int]]:
    return Call("POST", "/api/v1/jobs", lambda r: [int(i) for i in json_body(r)["ids"]],
                json=specs, headers=_key_header(key))


def get(job_id: int, attempts_limit: Optional[int] = None) -> Call[Job]:
    params = {} if attempts_limit is None else {"attempts_limit": str(attempts_limit)}
    return Call("GET", f"/api/v1/jobs/{int(job_id)}", lambda r: Job.from_json(json_body(r)),
                params=params)


def list_jobs(
    state: Optional[str], queue: Optional[str], namespace: Optional[str],
    before: Optional[int], limit: int,
) -> Call[JobList]:
    q = {"limit": str(limit)}
    for k, v in (("state", state), ("queue", queue), ("namespace", namespace), ("before", before)):
        if v is not None:
            q[k] = str(v)
    return Call("GET", "/api/v1/jobs", lambda r: JobList.from_json(json_body(r)), params=q)


def cancel(job_id: int) -> Call[None]:
    return Call("POST", f"/api/v1/jobs/{int(job_id)}/cancel", lambda r: None)


def hold(job_id: int, held: bool) -> Call[JobControlled]:
    verb = "hold" if held else "release"
    return Call("POST", f"/api/v1/jobs/{int(job_id)}/{verb}",
                lambda r: JobControlled.from_json(json_body(r)))


def delete(job_id: int) -> Call[None]:
    return Call("DELETE", f"/api/v1/jobs/{int(job_id)}", lambda r: None)


def explain(job_id: int) -> Call[Explanation]:
    return Call("GET", f"/api/v1/jobs/{int(job_id)}/explain",
                lambda r: Explanation.from_json(json_body(r)))


def logs(
    job_id: int, task: Optional[int], stream: str, attempt: Optional[int], follow: bool,
) -> Call[bytes]:
    """A task's stdout or stderr (its latest attempt unless ``attempt``); with ``follow``
    the server keeps the answer open until the attempt ends (no read timeout then)."""
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
    q = {"follow": "true" if follow else "false", "stream": stream}
    if task is not None:
        q["task"] = str(task)
    if attempt is not None:
        q["attempt"] = str(attempt)
    return Call("GET", f"/api/v1/jobs/{int(job_id)}/logs", lambda r: r.content, params=q,
                read_timeout=NO_READ_TIMEOUT if follow else CLIENT_DEFAULT)


def poll_delays(first: float = 0.05, most: float = 0.5) -> Iterator[float]:
    """Pauses between polls of a waited-for job or run: 50 ms, doubling to 500 ms."""
    d = first
    while True:
        yield d
        d = min(d * 2, most)

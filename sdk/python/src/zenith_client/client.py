"""The synchronous client (``AsyncClient`` in ``aio.py`` has the same methods, awaited)."""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import httpx

from . import flows, jobs
from ._http import Call, SyncTransport, Verify, httpx_options, json_body
from .config import PathLike, resolve
from .errors import JobFailed, RunFailed, WaitTimeout
from .events import EventStream, events_query
from .models import (
    AppliedFlow, Explanation, FlowCheck, FlowList, Job, JobControlled, JobList, Run,
    RunSummary, Version,
)

#: Read timeout of the event stream: the server sends a keepalive every 15 s.
EVENTS_READ_TIMEOUT = 60.0


def _spec(command: Union[Sequence[str], jobs.SpecLike], fields: Dict[str, Any]) -> jobs.SpecLike:
    if isinstance(command, (jobs.JobSpec, Mapping)):
        if fields:
            raise TypeError("give either a spec or a command with options, not both")
        return command
    if isinstance(command, str):
        raise TypeError("command is a list of arguments; use ['sh', '-c', '...'] for a shell")
    return jobs.JobSpec(command=list(command), **fields)


def events_call(
    job: Optional[int], run: Optional[int], kinds: Optional[List[str]], read_timeout: float
) -> Call[None]:
    return Call("GET", "/api/v1/events", lambda r: None, params=events_query(job, run, kinds),
                read_timeout=read_timeout)


def version_call() -> Call[Version]:
    return Call("GET", "/api/v1/version", lambda r: Version.from_json(json_body(r)))


def _chunks(resp: httpx.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_bytes()
    finally:
        resp.close()


class Client:
    """A client of one Zenith server, or of several sharing a store (failover).

    ``server``: a URL, a comma-separated list or a list of URLs; ``token``, ``ca_cert`` and
    ``namespace`` are found as the CLI finds them when not given (see :mod:`.config`).
    ``verify=False`` turns TLS verification off; ``retry_for`` bounds how long a safe request
    is retried (seconds)."""

    def __init__(
        self,
        server: Union[str, Sequence[str], None] = None,
        *,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
        verify: Verify = True,
        namespace: Optional[str] = None,
        data_dir: Optional[PathLike] = None,
        context: Optional[str] = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry_for: float = 30.0,
    ) -> None:
        s = resolve(server, token, ca_cert, namespace, data_dir, context=context)
        self.namespace = s.namespace
        self._http = httpx.Client(**httpx_options(s, verify, timeout, connect_timeout))
        self._t = SyncTransport(s, self._http, retry_for)

    @property
    def servers(self) -> List[str]:
        return list(self._t.servers)

    @property
    def base_url(self) -> str:
        """The server requests go to first (the one that answered last)."""
        return self._t.base

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> Version:
        return self._t.run(version_call())

    # Jobs

    def submit(
        self,
        command: Union[Sequence[str], jobs.SpecLike],
        *,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> int:
        """Submits a job; returns its ID. ``command`` is an argv list (with ``JobSpec``
        fields as keywords: ``cpus=0.5, array="1-10"``), a :class:`JobSpec` or a spec dict.
        A random idempotency key is sent unless one is given, so the request is retried
        safely; the same key (and spec) again returns the same job."""
        spec = jobs.spec_json(_spec(command, fields), self.namespace)
        key = idempotency_key or jobs.new_idempotency_key()
        return self._t.run(jobs.submit(spec, key))

    def submit_batch(
        self, specs: Sequence[jobs.SpecLike], *, idempotency_key: Optional[str] = None
    ) -> List[int]:
        """Submits several jobs at once (all or none); their IDs in order."""
        body = [jobs.spec_json(s, self.namespace) for s in specs]
        return self._t.run(jobs.submit_batch(body, idempotency_key or jobs.new_idempotency_key()))

    def get_job(self, job_id: int, attempts_limit: Optional[int] = None) -> Job:
        return self._t.run(jobs.get(job_id, attempts_limit))

    def list_jobs(
        self,
        state: Optional[str] = None,
        queue: Optional[str] = None,
        namespace: Optional[str] = None,
        before: Optional[int] = None,
        limit: int = 100,
    ) -> JobList:
        """Jobs newest first (``namespace="*"``: every one the token reads)."""
        return self._t.run(jobs.list_jobs(state, queue, namespace or self.namespace, before, limit))

    def wait(self, job_id: int, timeout: Optional[float] = None, check: bool = False) -> Job:
        """Blocks until the job ends; returns it with its attempts. ``WaitTimeout`` after
        ``timeout`` seconds; with ``check``, ``JobFailed`` unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for pause in jobs.poll_delays():
            if self.get_job(job_id, attempts_limit=0).is_final:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} still live after {timeout}s")
                pause = min(pause, left)
            time.sleep(pause)
        job = self.get_job(job_id)
        if check and not job.ok:
            raise JobFailed(job)
        return job

    def logs_bytes(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout",
        attempt: Optional[int] = None,
    ) -> bytes:
        """A task's output so far (its latest attempt unless ``attempt`` is given)."""
        return self._t.run(jobs.logs(job_id, task, stream, attempt, follow=False))

    def logs(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout",
        attempt: Optional[int] = None,
    ) -> str:
        """:meth:`logs_bytes` decoded as UTF-8 (bad bytes replaced)."""
        return self.logs_bytes(job_id, task, stream, attempt).decode("utf-8", "replace")

    def follow_logs(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout"
    ) -> Iterator[bytes]:
        """A task's output as it is written, waiting for it to start, until its attempt ends."""
        resp = self._t.send(jobs.logs(job_id, task, stream, None, follow=True), stream=True)
        return _chunks(resp)

    def cancel(self, job_id: int) -> None:
        """Cancels a live job (``Conflict`` when it has already ended)."""
        self._t.run(jobs.cancel(job_id))

    def hold(self, job_id: int) -> JobControlled:
        """Keeps a live job's queued tasks from starting until :meth:`release`."""
        return self._t.run(jobs.hold(job_id, True))

    def release(self, job_id: int) -> JobControlled:
        return self._t.run(jobs.hold(job_id, False))

    def delete_job(self, job_id: int) -> None:
        """Forgets an ended job with its attempts and logs."""
        self._t.run(jobs.delete(job_id))

    def explain(self, job_id: int) -> Explanation:
        """Why a job is not running yet."""
        return self._t.run(jobs.explain(job_id))

    def events(
        self, job: Optional[int] = None, run: Optional[int] = None,
        kinds: Optional[List[str]] = None, read_timeout: float = EVENTS_READ_TIMEOUT,
    ) -> EventStream:
        """Live events (optionally of one job or run, of some kinds: job, attempt, node,
        run, step). Use as ``with client.events() as ev:``; subscribed once entered. The
        server sends a keepalive every 15 s: ``read_timeout`` must be longer."""
        call = events_call(job, run, kinds, read_timeout)
        return EventStream(lambda: self._t.send(call, stream=True))

    # Flows

    def validate_flow(self, flow_yaml: str) -> FlowCheck:
        return self._t.run(flows.validate(flow_yaml))

    def apply_flow(self, flow_yaml: str, name: Optional[str] = None) -> AppliedFlow:
        """Stores a flow under its name (the server reads it from the YAML when ``name`` is
        not given) and arms its schedule."""
        if name is None:
            name = self.validate_flow(flow_yaml).name
        return self._t.run(flows.apply(name, flow_yaml, self.namespace))

    def delete_flow(self, name: str) -> None:
        self._t.run(flows.delete(name, self.namespace))

    def run_flow(self, name: str, params: Optional[flows.Params] = None) -> int:
        """Starts a run of an applied flow; returns the run ID."""
        return self._t.run(flows.start_run(None, name, params, self.namespace))

    def run_flow_yaml(self, flow_yaml: str, params: Optional[flows.Params] = None) -> int:
        """Starts a run of a flow given as YAML text; returns the run ID."""
        return self._t.run(flows.start_run(flow_yaml, None, params, self.namespace))

    def get_run(self, run_id: int) -> Run:
        return self._t.run(flows.get_run(run_id))

    def wait_run(self, run_id: int, timeout: Optional[float] = None, check: bool = False) -> Run:
        """Blocks until the run ends; like :meth:`wait` (``RunFailed`` with ``check``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for pause in jobs.poll_delays():
            run = self.get_run(run_id)
            if run.is_final:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"run {run_id} still {run.state} after {timeout}s")
                pause = min(pause, left)
            time.sleep(pause)
        if check and not run.ok:
            raise RunFailed(run)
        return run

    def list_runs(
        self, name: Optional[str] = None, before: Optional[int] = None, limit: int = 100
    ) -> List[RunSummary]:
        return self._t.run(flows.list_runs(name, self.namespace, before, limit))

    def list_flows(self) -> FlowList:
        return self._t.run(flows.list_flows(self.namespace))

    def cancel_run(self, run_id: int) -> None:
        self._t.run(flows.cancel_run(run_id))

    def approve(self, run_id: int, step: str) -> None:
        self._t.run(flows.approve(run_id, step))

    def step_logs(
        self, run_id: int, step: str, instance: int = 0, stream: str = "stdout"
    ) -> str:
        """The output of a run's step (fan-out instance ``instance``)."""
        job = flows.step_job(self.get_run(run_id), step, instance)
        return self.logs(job, stream=stream)

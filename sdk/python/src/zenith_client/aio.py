"""The asynchronous client: :class:`AsyncClient`, the methods of ``Client`` awaited."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, List, Optional, Sequence, Union

import anyio
import httpx

from . import flows, jobs
from ._http import AsyncTransport, Verify, httpx_options
from .client import EVENTS_READ_TIMEOUT, _spec, events_call, version_call
from .config import PathLike, resolve
from .errors import JobFailed, RunFailed, WaitTimeout
from .events import AsyncEventStream
from .models import (
    AppliedFlow, Explanation, FlowCheck, FlowList, Job, JobControlled, JobList, Run,
    RunSummary, Version,
)


async def _chunks(resp: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.aiter_bytes():
            yield chunk
    finally:
        await resp.aclose()


class AsyncClient:
    """Like :class:`~zenith_client.Client`, for asyncio (or trio, through anyio)."""

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
        self._http = httpx.AsyncClient(**httpx_options(s, verify, timeout, connect_timeout))
        self._t = AsyncTransport(s, self._http, retry_for)

    @property
    def servers(self) -> List[str]:
        return list(self._t.servers)

    @property
    def base_url(self) -> str:
        return self._t.base

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def version(self) -> Version:
        return await self._t.run(version_call())

    # Jobs

    async def submit(
        self,
        command: Union[Sequence[str], jobs.SpecLike],
        *,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> int:
        spec = jobs.spec_json(_spec(command, fields), self.namespace)
        key = idempotency_key or jobs.new_idempotency_key()
        return await self._t.run(jobs.submit(spec, key))

    async def submit_batch(
        self, specs: Sequence[jobs.SpecLike], *, idempotency_key: Optional[str] = None
    ) -> List[int]:
        body = [jobs.spec_json(s, self.namespace) for s in specs]
        key = idempotency_key or jobs.new_idempotency_key()
        return await self._t.run(jobs.submit_batch(body, key))

    async def get_job(self, job_id: int, attempts_limit: Optional[int] = None) -> Job:
        return await self._t.run(jobs.get(job_id, attempts_limit))

    async def list_jobs(
        self,
        state: Optional[str] = None,
        queue: Optional[str] = None,
        namespace: Optional[str] = None,
        before: Optional[int] = None,
        limit: int = 100,
    ) -> JobList:
        call = jobs.list_jobs(state, queue, namespace or self.namespace, before, limit)
        return await self._t.run(call)

    async def wait(self, job_id: int, timeout: Optional[float] = None, check: bool = False) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        for pause in jobs.poll_delays():
            if (await self.get_job(job_id, attempts_limit=0)).is_final:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} still live after {timeout}s")
                pause = min(pause, left)
            await anyio.sleep(pause)
        job = await self.get_job(job_id)
        if check and not job.ok:
            raise JobFailed(job)
        return job

    async def logs_bytes(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout",
        attempt: Optional[int] = None,
    ) -> bytes:
        return await self._t.run(jobs.logs(job_id, task, stream, attempt, follow=False))

    async def logs(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout",
        attempt: Optional[int] = None,
    ) -> str:
        return (await self.logs_bytes(job_id, task, stream, attempt)).decode("utf-8", "replace")

    async def follow_logs(
        self, job_id: int, task: Optional[int] = None, stream: str = "stdout"
    ) -> AsyncIterator[bytes]:
        call = jobs.logs(job_id, task, stream, None, follow=True)
        return _chunks(await self._t.send(call, stream=True))

    async def cancel(self, job_id: int) -> None:
        await self._t.run(jobs.cancel(job_id))

    async def hold(self, job_id: int) -> JobControlled:
        return await self._t.run(jobs.hold(job_id, True))

    async def release(self, job_id: int) -> JobControlled:
        return await self._t.run(jobs.hold(job_id, False))

    async def delete_job(self, job_id: int) -> None:
        await self._t.run(jobs.delete(job_id))

    async def explain(self, job_id: int) -> Explanation:
        return await self._t.run(jobs.explain(job_id))

    def events(
        self, job: Optional[int] = None, run: Optional[int] = None,
        kinds: Optional[List[str]] = None, read_timeout: float = EVENTS_READ_TIMEOUT,
    ) -> AsyncEventStream:
        """Use as ``async with client.events() as ev:``; subscribed once entered."""
        call = events_call(job, run, kinds, read_timeout)
        return AsyncEventStream(lambda: self._t.send(call, stream=True))

    # Flows

    async def validate_flow(self, flow_yaml: str) -> FlowCheck:
        return await self._t.run(flows.validate(flow_yaml))

    async def apply_flow(self, flow_yaml: str, name: Optional[str] = None) -> AppliedFlow:
        if name is None:
            name = (await self.validate_flow(flow_yaml)).name
        return await self._t.run(flows.apply(name, flow_yaml, self.namespace))

    async def delete_flow(self, name: str) -> None:
        await self._t.run(flows.delete(name, self.namespace))

    async def run_flow(self, name: str, params: Optional[flows.Params] = None) -> int:
        return await self._t.run(flows.start_run(None, name, params, self.namespace))

    async def run_flow_yaml(self, flow_yaml: str, params: Optional[flows.Params] = None) -> int:
        return await self._t.run(flows.start_run(flow_yaml, None, params, self.namespace))

    async def get_run(self, run_id: int) -> Run:
        return await self._t.run(flows.get_run(run_id))

    async def wait_run(
        self, run_id: int, timeout: Optional[float] = None, check: bool = False
    ) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        for pause in jobs.poll_delays():
            run = await self.get_run(run_id)
            if run.is_final:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"run {run_id} still {run.state} after {timeout}s")
                pause = min(pause, left)
            await anyio.sleep(pause)
        if check and not run.ok:
            raise RunFailed(run)
        return run

    async def list_runs(
        self, name: Optional[str] = None, before: Optional[int] = None, limit: int = 100
    ) -> List[RunSummary]:
        return await self._t.run(flows.list_runs(name, self.namespace, before, limit))

    async def list_flows(self) -> FlowList:
        return await self._t.run(flows.list_flows(self.namespace))

    async def cancel_run(self, run_id: int) -> None:
        await self._t.run(flows.cancel_run(run_id))

    async def approve(self, run_id: int, step: str) -> None:
        await self._t.run(flows.approve(run_id, step))

    async def step_logs(
        self, run_id: int, step: str, instance: int = 0, stream: str = "stdout"
    ) -> str:
        job = flows.step_job(await self.get_run(run_id), step, instance)
        return await self.logs(job, stream=stream)

"""The async client: the sync tests' scenarios, awaited."""

from __future__ import annotations

import anyio
import pytest
from conftest import Server, dead_url

from zenith_client import AsyncClient, Conflict, JobEvent, JobSpec, NotFound, Unreachable

pytestmark = pytest.mark.anyio

FLOW = """
name: sdk-async
params: {n: "1"}
steps:
  - name: count
    run: [sh, -c, 'echo $(( $0 + 1 )) > $ZENITH_OUTPUTS/next', "{{ params.n }}"]
    outputs: {params: [next]}
"""


async def test_submit_wait_logs(aclient: AsyncClient) -> None:
    job_id = await aclient.submit(["sh", "-c", "echo async $ZENITH_TASK_INDEX"])
    job = await aclient.wait(job_id, timeout=30, check=True)
    assert job.ok and job.attempts[0].exit_code == 0
    assert await aclient.logs(job_id) == "async 0\n"
    chunks = [c async for c in await aclient.follow_logs(job_id)]
    assert b"".join(chunks) == b"async 0\n"


async def test_cancel_and_errors(aclient: AsyncClient) -> None:
    job_id = await aclient.submit(["sleep", "60"])
    with anyio.fail_after(15):
        while (await aclient.get_job(job_id)).state != "running":
            await anyio.sleep(0.05)
    await aclient.cancel(job_id)
    assert (await aclient.wait(job_id, timeout=15)).state == "cancelled"
    with pytest.raises(Conflict):
        await aclient.cancel(job_id)
    with pytest.raises(NotFound) as e:
        await aclient.get_job(987654321)
    assert e.value.message == "job 987654321 not found"


async def test_array_and_idempotency(aclient: AsyncClient) -> None:
    spec = JobSpec(["sh", "-c", "echo t$ZENITH_TASK_INDEX"], array="0-3", cpus=0.25)
    a = await aclient.submit(spec, idempotency_key="sdk-async-key")
    assert await aclient.submit(spec, idempotency_key="sdk-async-key") == a
    job = await aclient.wait(a, timeout=30, check=True)
    assert job.task_count == 4 and job.tasks.succeeded == 4
    assert await aclient.logs(a, task=2) == "t2\n"


async def test_failover(server: Server) -> None:
    async with AsyncClient([dead_url(), server.url], token=server.token) as c:
        job_id = await c.submit(["true"])
        assert c.base_url == server.url and (await c.wait(job_id, timeout=30)).ok
    async with AsyncClient(dead_url(), token=server.token) as c:
        with pytest.raises(Unreachable):
            await c.version()


async def test_flow_run_and_events(aclient: AsyncClient) -> None:
    await aclient.apply_flow(FLOW)
    run = await aclient.wait_run(await aclient.run_flow("sdk-async", {"n": 41}), timeout=30)
    assert run.ok and run.outputs("count") == {"next": "42"}
    assert await aclient.step_logs(run.id, "count") == ""

    states = []
    async with aclient.events(kinds=["job"], read_timeout=10) as events:
        job_id = await aclient.submit(["true"])
        with anyio.fail_after(15):
            async for ev in events:
                if isinstance(ev, JobEvent) and ev.job == job_id:
                    states.append(ev.state)
                    if ev.state == "succeeded":
                        break
    assert states[-1] == "succeeded"

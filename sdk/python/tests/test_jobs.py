"""Jobs through the sync client against a real server."""

from __future__ import annotations

import pytest
from conftest import wait_until

from zenith_client import (
    BadRequest, Conflict, JobFailed, JobSpec, NotFound, Unauthorized, WaitTimeout, Client,
)


def test_submit_wait_logs(client: Client) -> None:
    job_id = client.submit(
        ["sh", "-c", 'echo "hello $ZENITH_JOB_ID $GREETING"; echo oops >&2'],
        name="greet", env={"GREETING": "from-sdk"}, cpus=0.5,
    )
    job = client.wait(job_id, timeout=30, check=True)
    assert job.id == job_id and job.state == "succeeded" and job.ok
    assert job.name == "greet" and job.task_count == 1 and job.tasks.succeeded == 1
    assert job.spec["resources"]["cpus"] == 0.5
    assert [a.exit_code for a in job.attempts] == [0]
    assert client.logs(job_id) == f"hello {job_id} from-sdk\n"
    assert client.logs(job_id, stream="stderr") == "oops\n"
    assert client.logs_bytes(job_id) == f"hello {job_id} from-sdk\n".encode()


def test_failed_job_raises_with_check(client: Client) -> None:
    job_id = client.submit(["sh", "-c", "exit 3"])
    job = client.wait(job_id, timeout=30)
    assert job.state == "failed" and not job.ok
    assert job.attempts[-1].exit_code == 3
    with pytest.raises(JobFailed) as e:
        client.wait(job_id, timeout=30, check=True)
    assert e.value.job.id == job_id and "failed" in str(e.value)


def test_spec_fields_reach_the_server(client: Client) -> None:
    job_id = client.submit(
        ["sleep", "5"], timeout=0.3, retries=1, retry_delay=0.05, backoff="fixed",
        labels={"team": "sdk"}, priority=3, memory="64M",
    )
    job = client.wait(job_id, timeout=30)
    assert job.state == "failed" and "timed_out" in (job.reason or "")
    assert job.attempts_total == 2 and [a.reason for a in job.attempts] == ["timed_out"] * 2
    assert job.spec["timeout"] == "300ms" and job.spec["retry"]["delay"] == "50ms"
    assert job.spec["labels"] == {"team": "sdk"} and job.priority == 3
    assert job.spec["resources"]["memory"] == 64 << 20


def test_cancel_running_sleep(client: Client) -> None:
    job_id = client.submit(["sleep", "60"])
    wait_until("the job to run",
               lambda: True if client.get_job(job_id).state == "running" else None)
    with pytest.raises(WaitTimeout):
        client.wait(job_id, timeout=0.2)
    client.cancel(job_id)
    job = client.wait(job_id, timeout=15)
    assert job.state == "cancelled"
    assert job.attempts[-1].state == "cancelled"
    with pytest.raises(Conflict) as e:
        client.cancel(job_id)
    assert e.value.status == 409 and "already cancelled" in e.value.message


def test_array_job(client: Client) -> None:
    job_id = client.submit(
        JobSpec(["sh", "-c", "echo task $ZENITH_TASK_INDEX"], array="1-5", cpus=0.25)
    )
    job = client.wait(job_id, timeout=30, check=True)
    assert job.task_count == 5 and job.tasks.succeeded == 5
    assert sorted(a.task for a in job.attempts) == [1, 2, 3, 4, 5]
    assert client.logs(job_id, task=3) == "task 3\n"
    assert client.logs(job_id, task=5) == "task 5\n"
    with pytest.raises(BadRequest) as e:
        client.logs(job_id, task=9)
    assert e.value.field == "task"


def test_idempotency_key_returns_same_job(client: Client) -> None:
    spec = JobSpec(["echo", "once"], name="idem")
    first = client.submit(spec, idempotency_key="sdk-test-key-1")
    again = client.submit(spec, idempotency_key="sdk-test-key-1")
    other = client.submit(spec, idempotency_key="sdk-test-key-2")
    assert again == first and other != first
    assert [j.id for j in client.list_jobs(limit=1000).jobs].count(first) == 1
    with pytest.raises(Conflict) as e:  # the same key for another request
        client.submit(["echo", "different"], idempotency_key="sdk-test-key-1")
    assert "sdk-test-key-1" in e.value.message


def test_batch_hold_release_explain_list_delete(client: Client) -> None:
    a, b = client.submit_batch([JobSpec(["true"]), {"command": ["echo", "b"], "hold": True}])
    assert b == a + 1
    client.wait(a, timeout=30, check=True)
    assert client.get_job(b).state == "queued"
    assert "held" in (client.explain(b).blocked or "")
    assert client.release(b).hold is False
    client.wait(b, timeout=30, check=True)
    assert client.logs(b) == "b\n"
    ids = [j.id for j in client.list_jobs(state="succeeded", limit=1000).jobs]
    assert a in ids and b in ids
    client.delete_job(a)
    with pytest.raises(NotFound):
        client.get_job(a)


def test_hold_keeps_job_queued(client: Client) -> None:
    job_id = client.submit(["sleep", "60"], hold=True)
    assert client.get_job(job_id).state == "queued"
    assert client.hold(job_id).hold is True
    client.cancel(job_id)
    assert client.wait(job_id, timeout=15).state == "cancelled"


def test_follow_logs(client: Client) -> None:
    job_id = client.submit(["sh", "-c", "echo one; sleep 0.3; echo two"])
    assert b"".join(client.follow_logs(job_id)) == b"one\ntwo\n"


def test_errors_carry_the_servers_message(client: Client, server) -> None:
    with pytest.raises(NotFound) as e:
        client.get_job(987654321)
    assert (e.value.status, e.value.code) == (404, "not_found")
    assert e.value.message == "job 987654321 not found"
    with pytest.raises(BadRequest) as bad:
        client.submit(["true"], cpus=-1)
    assert bad.value.status == 400 and bad.value.field
    with Client(server.url, token="not-a-token") as wrong:
        with pytest.raises(Unauthorized) as u:
            wrong.get_job(1)
    assert u.value.status == 401 and u.value.message == "missing or invalid token"
    with pytest.raises(TypeError):
        client.submit("echo hi")  # type: ignore[arg-type]


def test_version(client: Client) -> None:
    v = client.version()
    assert v.version and v.protocol >= 1

"""The event stream: the SSE parser alone, then live events of jobs and flow runs."""

from __future__ import annotations

from typing import List

from zenith_client import AttemptEvent, Client, JobEvent, LaggedEvent, RunEvent, StepEvent
from zenith_client.events import SSEDecoder, UnknownEvent

FLOW = """
name: sdk-events
steps:
  - name: one
    run: ["true"]
  - name: two
    depends: [one]
    run: ["true"]
"""


def test_sse_decoder_handles_split_chunks_comments_and_crlf() -> None:
    stream = (
        b": keepalive\n\n"
        b'data: {"kind":"job","job":7,"state":"running","tasks":{"running":1}}\n\n'
        b'data: {"kind":"lagged",\r\ndata: "missed":3}\r\n\r\n'
        b'event: x\ndata:{"kind":"brand_new","x":1}\n\n'
    )
    dec = SSEDecoder()
    events = []
    for i in range(0, len(stream), 5):  # every 5 bytes: lines and events split anywhere
        events += dec.feed(stream[i : i + 5])
    assert events[0] == JobEvent(7, "running", events[0].tasks) and events[0].tasks.running == 1
    assert events[1] == LaggedEvent(3)
    assert isinstance(events[2], UnknownEvent) and events[2].kind == "brand_new"
    assert len(events) == 3


def test_events_see_a_submitted_jobs_transitions(client: Client) -> None:
    seen: List[object] = []
    with client.events(kinds=["job", "attempt"], read_timeout=10) as events:
        job_id = client.submit(["echo", "evt"])  # after subscribing: nothing can be missed
        for ev in events:
            if getattr(ev, "job", None) == job_id:
                seen.append(ev)
            if isinstance(ev, JobEvent) and ev.job == job_id and ev.state == "succeeded":
                break
    job_states = [e.state for e in seen if isinstance(e, JobEvent)]
    # One committed batch may carry several transitions: "queued" can be folded into "running".
    assert job_states[0] in ("queued", "running") and job_states[-1] == "succeeded"
    attempts = [e for e in seen if isinstance(e, AttemptEvent)]
    assert attempts and attempts[-1].state == "succeeded" and attempts[-1].exit_code == 0


def test_events_of_one_job(client: Client) -> None:
    job_id = client.submit(["echo", "held"], hold=True)
    with client.events(job=job_id, read_timeout=10) as events:
        client.release(job_id)
        states = []
        for ev in events:
            assert getattr(ev, "job", None) == job_id  # the server filters to this job
            if isinstance(ev, JobEvent):
                states.append(ev.state)
                if ev.state == "succeeded":
                    break
    assert states[-1] == "succeeded"


def test_events_of_a_flow_run(client: Client) -> None:
    steps = {}
    with client.events(kinds=["run", "step"], read_timeout=10) as events:
        run_id = client.run_flow_yaml(FLOW)
        for ev in events:
            if isinstance(ev, StepEvent) and ev.run == run_id:
                steps[ev.step] = ev.state
            if isinstance(ev, RunEvent) and ev.run == run_id and ev.state == "succeeded":
                assert ev.flow == "sdk-events"
                break
    assert steps == {"one": "succeeded", "two": "succeeded"}

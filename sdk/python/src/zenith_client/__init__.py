"""Python client of the Zenith job scheduler and workflow engine (HTTP API v1).

    from zenith_client import Client

    with Client() as zc:                       # finds the server and token as the CLI does
        job = zc.submit(["echo", "hello"])
        zc.wait(job, check=True)
        print(zc.logs(job))
"""

from .aio import AsyncClient
from .client import Client
from .config import DEFAULT_SERVER, Settings, default_data_dir, resolve
from .errors import (
    ApiError, BadRequest, Conflict, Forbidden, JobFailed, NotFound, PayloadTooLarge,
    ProtocolError, RateLimited, RunFailed, ServerError, Unauthorized, Unavailable,
    Unreachable, WaitTimeout, ZenithError,
)
from .events import (
    AsyncEventStream, AttemptEvent, Event, EventStream, JobEvent, LaggedEvent, NodeEvent,
    RunEvent, StepEvent, UnknownEvent,
)
from .jobs import JobSpec, new_idempotency_key
from .models import (
    FINAL_STATES, AppliedFlow, Attempt, Explanation, FlowCheck, FlowDef, FlowList, Job,
    JobControlled, JobList, Run, RunSummary, Step, TaskCounts, Version,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client", "DEFAULT_SERVER", "Settings", "default_data_dir", "resolve",
    "ApiError", "BadRequest", "Conflict", "Forbidden", "JobFailed", "NotFound",
    "PayloadTooLarge", "ProtocolError", "RateLimited", "RunFailed", "ServerError",
    "Unauthorized", "Unavailable", "Unreachable", "WaitTimeout", "ZenithError",
    "AsyncEventStream", "AttemptEvent", "Event", "EventStream", "JobEvent", "LaggedEvent",
    "NodeEvent", "RunEvent", "StepEvent", "UnknownEvent", "JobSpec", "new_idempotency_key",
    "FINAL_STATES", "AppliedFlow", "Attempt", "Explanation", "FlowCheck", "FlowDef",
    "FlowList", "Job", "JobControlled", "JobList", "Run", "RunSummary", "Step", "TaskCounts",
    "Version",
]

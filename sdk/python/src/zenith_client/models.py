"""Typed views of the server's answers (``crates/protocol/src/api.rs`` and ``flows.rs``).

Each dataclass is built by ``from_json``; fields the server adds later are kept in ``raw``.
Times are milliseconds since the Unix epoch, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
RunState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepState = Literal[
    "pending", "running", "succeeded", "failed", "skipped", "cancelled", "waiting_approval"
]

#: States a job or run does not leave.
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class TaskCounts:
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.succeeded + self.failed + self.cancelled

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "TaskCounts":
        return cls(**{k: int(d.get(k, 0)) for k in ("queued", "running", "succeeded", "failed", "cancelled")})


@dataclass(frozen=True)
class Attempt:
    """One attempt of one task."""

    id: int
    task: int
    node: str
    started_at: int
    state: str
    """``running``, ``succeeded``, ``failed``, ``cancelled``, ``lost``, ``evicted``, ..."""
    finished_at: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    outcome: Optional[Dict[str, Any]] = None
    reason: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Attempt":
        return cls(
            id=d["id"],
            task=d["task"],
            node=d["node"],
            started_at=d["started_at"],
            state=d["state"],
            finished_at=d.get("finished_at"),
            exit_code=d.get("exit_code"),
            signal=d.get("signal"),
            outcome=d.get("outcome"),
            reason=d.get("reason"),
        )


@dataclass(frozen=True)
class Job:
    """A job: its summary (as in listings) and, from ``get``, its spec and attempts."""

    id: int
    name: str
    state: str
    queue: str
    namespace: str
    priority: int
    tasks: TaskCounts
    task_count: int
    created_at: int
    submitter: str = ""
    reason: Optional[str] = None
    finished_at: Optional[int] = None
    spec: Dict[str, Any] = field(default_factory=dict)
    attempts: List[Attempt] = field(default_factory=list)
    attempts_total: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Job":
        return cls(
            id=d["id"],
            name=d.get("name", ""),
            state=d["state"],
            queue=d.get("queue", ""),
            namespace=d.get("namespace", ""),
            priority=d.get("priority", 0),
            tasks=TaskCounts.from_json(d.get("tasks") or {}),
            task_count=d.get("task_count", 0),
            created_at=d.get("created_at", 0),
            submitter=d.get("submitter", ""),
            reason=d.get("reason"),
            finished_at=d.get("finished_at"),
            spec=d.get("spec") or {},
            attempts=[Attempt.from_json(a) for a in d.get("attempts") or []],
            attempts_total=d.get("attempts_total", 0),
            raw=d,
        )


@dataclass(frozen=True)
class JobList:
    """A page of jobs, newest first; pass ``next_before`` as ``before`` for the next."""

    jobs: List[Job]
    next_before: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "JobList":
        return cls([Job.from_json(j) for j in d.get("jobs", [])], d.get("next_before"))


@dataclass(frozen=True)
class JobControlled:
    """The answer to hold and release: the job's state and place after the change."""

    id: int
    state: str
    hold: bool
    priority: int
    queue: str

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "JobControlled":
        return cls(d["id"], d["state"], d["hold"], d["priority"], d["queue"])


@dataclass(frozen=True)
class Explanation:
    """Why a job waits (``GET /jobs/{id}/explain``)."""

    id: int
    state: str
    message: str
    nodes: int
    feasible: int
    rejections: Dict[str, int]
    quota: Optional[str] = None
    blocked: Optional[str] = None
    reservation: Optional[str] = None
    gang: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Explanation":
        return cls(
            d["id"], d["state"], d["message"], d["nodes"], d["feasible"],
            d.get("rejections") or {}, d.get("quota"), d.get("blocked"),
            d.get("reservation"), d.get("gang"),
        )


@dataclass(frozen=True)
class Version:
    version: str
    protocol: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Version":
        return cls(d["version"], d["protocol"])


@dataclass(frozen=True)
class Step:
    """A step of a run, or one instance of a fan-out step (same ``name``, with ``index``)."""

    name: str
    state: str
    step_state: str
    attempts: int
    outputs: Dict[str, str]
    reason: Optional[str] = None
    index: Optional[int] = None
    item: Any = None
    job: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Step":
        return cls(
            name=d["name"],
            state=d["state"],
            step_state=d.get("step_state", d["state"]),
            attempts=d.get("attempts", 0),
            outputs=d.get("outputs") or {},
            reason=d.get("reason"),
            index=d.get("index"),
            item=d.get("item"),
            job=d.get("job"),
        )


@dataclass(frozen=True)
class Run:
    """A flow run with its steps (``GET /flows/runs/{id}``)."""

    id: int
    name: str
    state: str
    trigger: str
    params: Dict[str, str]
    retries_used: int
    created_at: int
    steps: List[Step]
    reason: Optional[str] = None
    finished_at: Optional[int] = None
    expires_at: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def step(self, name: str, index: Optional[int] = None) -> Step:
        """The step ``name`` (for a fan-out step, its instance ``index``, default the first)."""
        found = [s for s in self.steps if s.name == name]
        if index is not None:
            found = [s for s in found if s.index == index]
        if not found:
            which = name if index is None else f"{name}[{index}]"
            raise KeyError(f"run {self.id} has no step {which}")
        return found[0]

    def outputs(self, name: str, index: Optional[int] = None) -> Dict[str, str]:
        """The output parameters step ``name`` (instance ``index``) produced."""
        return dict(self.step(name, index).outputs)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Run":
        return cls(
            id=d["id"],
            name=d["name"],
            state=d["state"],
            trigger=d.get("trigger", ""),
            params=d.get("params") or {},
            retries_used=d.get("retries_used", 0),
            created_at=d.get("created_at", 0),
            steps=[Step.from_json(s) for s in d.get("steps", [])],
            reason=d.get("reason"),
            finished_at=d.get("finished_at"),
            expires_at=d.get("expires_at"),
            raw=d,
        )


@dataclass(frozen=True)
class RunSummary:
    id: int
    name: str
    state: str
    trigger: str
    created_at: int
    reason: Optional[str] = None
    finished_at: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "RunSummary":
        return cls(
            d["id"], d["name"], d["state"], d.get("trigger", ""), d.get("created_at", 0),
            d.get("reason"), d.get("finished_at"),
        )


@dataclass(frozen=True)
class FlowDef:
    """An applied flow."""

    name: str
    steps: int
    updated_at: int
    schedule: Optional[str] = None
    timezone: Optional[str] = None
    next_fire: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FlowDef":
        return cls(
            d["name"], d.get("steps", 0), d.get("updated_at", 0), d.get("schedule"),
            d.get("timezone"), d.get("next_fire"),
        )


@dataclass(frozen=True)
class FlowList:
    """Applied flows and the latest runs (``GET /flows``)."""

    flows: List[FlowDef]
    runs: List[RunSummary]

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FlowList":
        return cls(
            [FlowDef.from_json(f) for f in d.get("flows", [])],
            [RunSummary.from_json(r) for r in d.get("runs", [])],
        )


@dataclass(frozen=True)
class AppliedFlow:
    """The answer to ``apply_flow``."""

    name: str
    namespace: str


@dataclass(frozen=True)
class FlowCheck:
    """The answer to ``validate_flow``: the flow's name and how many steps it has."""

    name: str
    steps: int

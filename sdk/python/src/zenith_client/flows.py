"""Flows: apply a YAML flow, start runs with parameters, read runs and their outputs.

Each function returns a :class:`~zenith_client._http.Call` (see ``jobs.py``). Flow calls act
in the client's namespace when it has one (``?namespace=``), else the flow's or the token's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote

from ._http import Call, json_body
from .models import AppliedFlow, FlowCheck, FlowList, Run, RunSummary

Params = Mapping[str, Any]


def _ns(namespace: Optional[str]) -> Dict[str, str]:
    return {"namespace": namespace} if namespace else {}


def param_text(v: Any) -> str:
    """A parameter value as the API takes it (every value is a string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise TypeError(f"flow parameters are strings or numbers, not {type(v).__name__}")


def validate(text: str) -> Call[FlowCheck]:
    def parse(r: Any) -> FlowCheck:
        d = json_body(r)
        return FlowCheck(d["name"], d["steps"])

    return Call("POST", "/api/v1/flows/validate", parse, json={"flow": text}, idempotent=True)


def apply(name: str, text: str, namespace: Optional[str]) -> Call[AppliedFlow]:
    def parse(r: Any) -> AppliedFlow:
        d = json_body(r)
        return AppliedFlow(d["name"], d["namespace"])

    return Call("PUT", f"/api/v1/flows/{quote(name, safe='')}", parse,
                params=_ns(namespace), json={"flow": text})


def delete(name: str, namespace: Optional[str]) -> Call[None]:
    return Call("DELETE", f"/api/v1/flows/{quote(name, safe='')}", lambda r: None,
                params=_ns(namespace))


def start_run(
    text: Optional[str], name: Optional[str], params: Optional[Params], namespace: Optional[str],
) -> Call[int]:
    body: Dict[str, Any] = {"params": {k: param_text(v) for k, v in (params or {}).items()}}
    if text is not None:
        body["flow"] = text
    if name is not None:
        body["name"] = name
    return Call("POST", "/api/v1/flows/runs", lambda r: int(json_body(r)["id"]),
                params=_ns(namespace), json=body)


def get_run(run_id: int) -> Call[Run]:
    return Call("GET", f"/api/v1/flows/runs/{int(run_id)}", lambda r: Run.from_json(json_body(r)))


def list_runs(
    name: Optional[str], namespace: Optional[str], before: Optional[int], limit: int,
) -> Call[List[RunSummary]]:
    q = {"limit": str(limit), **_ns(namespace)}
    if name is not None:
        q["name"] = name
    if before is not None:
        q["before"] = str(before)
    return Call("GET", "/api/v1/flows/runs",
                lambda r: [RunSummary.from_json(x) for x in json_body(r)], params=q)


def list_flows(namespace: Optional[str]) -> Call[FlowList]:
    return Call("GET", "/api/v1/flows", lambda r: FlowList.from_json(json_body(r)),
                params=_ns(namespace))


def cancel_run(run_id: int) -> Call[None]:
    return Call("POST", f"/api/v1/flows/runs/{int(run_id)}/cancel", lambda r: None)


def approve(run_id: int, step: str) -> Call[None]:
    return Call("POST", f"/api/v1/flows/runs/{int(run_id)}/steps/{quote(step, safe='')}/approve",
                lambda r: None)


def step_job(run: Run, step: str, instance: int) -> int:
    """The job that ran ``step`` (fan-out instance ``instance``) of ``run``, as ``zenith flow
    logs`` finds it; ``KeyError`` when the step has not run."""
    entries = [s for s in run.steps if s.name == step]
    if not entries:
        raise KeyError(f"run {run.id} has no step {step!r}")
    match = [s for s in entries if (s.index or 0) == instance]
    if not match or match[0].job is None:
        state = match[0].state if match else entries[0].state
        raise KeyError(f"step {step} (instance {instance}) of run {run.id} has not run: it is {state}")
    return match[0].job

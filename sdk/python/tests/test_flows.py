"""Flows through the sync client: apply, run with parameters, wait, outputs, logs."""

from __future__ import annotations

import pytest

from zenith_client import BadRequest, Client, NotFound, RunFailed

GREET = """
name: sdk-greet
params: {who: world}
steps:
  - name: hello
    run: [sh, -c, 'printf "hello %s" "$0" > $ZENITH_OUTPUTS/line; echo "said hello $0"', "{{ params.who }}"]
    outputs: {params: [line]}
  - name: fan
    depends: [hello]
    forEach: [1, 2, 3]
    run: [echo, "{{ item }}: {{ steps.hello.outputs.line }}"]
"""

FAILING = """
name: sdk-fails
steps:
  - name: boom
    run: [sh, -c, "exit 4"]
  - name: after
    depends: [boom]
    run: ["true"]
"""


def test_apply_run_with_params_wait_outputs(client: Client) -> None:
    assert client.validate_flow(GREET).name == "sdk-greet"
    applied = client.apply_flow(GREET)
    assert (applied.name, applied.namespace) == ("sdk-greet", "default")
    assert "sdk-greet" in [f.name for f in client.list_flows().flows]

    run_id = client.run_flow("sdk-greet", {"who": "sdk"})
    run = client.wait_run(run_id, timeout=30, check=True)
    assert run.id == run_id and run.state == "succeeded" and run.name == "sdk-greet"
    assert run.params == {"who": "sdk"}
    assert run.outputs("hello") == {"line": "hello sdk"}
    fan = [s for s in run.steps if s.name == "fan"]
    assert [s.index for s in fan] == [0, 1, 2] and all(s.state == "succeeded" for s in fan)
    assert client.step_logs(run_id, "hello") == "said hello sdk\n"
    assert client.step_logs(run_id, "fan", instance=1) == "2: hello sdk\n"
    assert run_id in [r.id for r in client.list_runs(name="sdk-greet")]

    default = client.wait_run(client.run_flow("sdk-greet"), timeout=30)
    assert default.outputs("hello") == {"line": "hello world"}


def test_run_yaml_without_applying(client: Client) -> None:
    run_id = client.run_flow_yaml(GREET.replace("sdk-greet", "sdk-inline"), {"who": 42})
    run = client.wait_run(run_id, timeout=30, check=True)
    assert run.outputs("hello") == {"line": "hello 42"}


def test_failed_run_and_flow_errors(client: Client) -> None:
    run_id = client.run_flow_yaml(FAILING)
    run = client.wait_run(run_id, timeout=30)
    assert run.state == "failed"
    assert run.step("boom").state == "failed" and run.step("after").state == "skipped"
    with pytest.raises(RunFailed):
        client.wait_run(run_id, timeout=30, check=True)
    with pytest.raises(BadRequest) as e:
        client.run_flow_yaml(GREET, {"nobody": "x"})
    assert e.value.field == "params.nobody"
    with pytest.raises(BadRequest) as e:
        client.validate_flow("name: x\nsteps: []\n")
    assert e.value.field and e.value.field.startswith("flow")
    with pytest.raises(NotFound):
        client.get_run(987654321)
    client.apply_flow(FAILING)
    client.delete_flow("sdk-fails")
    assert "sdk-fails" not in [f.name for f in client.list_flows().flows]

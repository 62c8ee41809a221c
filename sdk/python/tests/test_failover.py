"""Several server URLs: failover, and which requests may be sent twice.

A fake server in front of the real one either drops each request after reading it (the
answer is lost: the request may have been processed) or answers 503; safe requests go on to
the real server, unsafe ones must not.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List

import httpx
import pytest
from conftest import Server, dead_url

from zenith_client import Client, RateLimited, Unavailable, Unreachable
from zenith_client._http import Call, SyncTransport
from zenith_client.config import Settings


class Fake:
    """An HTTP server that drops every request (``mode="drop"``) or answers 503."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: List[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                fake.requests.append(f"{self.command} {self.path}")
                if mode == "drop":
                    self.close_connection = True
                    return
                body = json.dumps({"error": {"code": "unavailable", "message": "no leader"}})
                self.send_response(503)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=["drop", "503"])
def fake(request: pytest.FixtureRequest) -> Iterator[Fake]:
    f = Fake(request.param)
    yield f
    f.close()


def test_fails_over_from_a_dead_url(server: Server) -> None:
    with Client([dead_url(), server.url], token=server.token) as c:
        job_id = c.submit(["echo", "failover"])
        assert c.base_url == server.url  # the server that answered is used from now on
        assert c.wait(job_id, timeout=30).ok
        assert c.logs(job_id) == "failover\n"


def test_every_url_dead_fails_at_once(server: Server) -> None:
    started = time.monotonic()
    with Client(f"{dead_url()},{dead_url()}", token=server.token) as c:
        with pytest.raises(Unreachable) as e:
            c.get_job(1)
    assert time.monotonic() - started < 5
    assert "127.0.0.1" in str(e.value)


def test_safe_requests_go_on_to_the_next_server(server: Server, fake: Fake) -> None:
    with Client([fake.url, server.url], token=server.token) as c:
        job_id = c.submit(["echo", "once"])  # carries an idempotency key: safe
        assert fake.requests == ["POST /api/v1/jobs"]
        assert c.base_url == server.url
        assert c.wait(job_id, timeout=30).ok
    with Client(server.url, token=server.token) as direct:
        # Exactly one job: the fake only saw the request, the real server got it once.
        assert [j.id for j in direct.list_jobs(limit=5).jobs][0] == job_id
    with Client([fake.url, server.url], token=server.token) as c:
        assert c.get_job(job_id).ok
        assert fake.requests[-1] == f"GET /api/v1/jobs/{job_id}"


def test_unsafe_requests_are_not_repeated(server: Server, fake: Fake) -> None:
    with Client(server.url, token=server.token) as direct:
        job_id = direct.submit(["sleep", "60"], hold=True)
        expected = Unreachable if fake.mode == "drop" else Unavailable
        with Client([fake.url, server.url], token=server.token) as c:
            with pytest.raises(expected) as e:
                c.cancel(job_id)  # a POST without a key: not sent again
        assert fake.requests == [f"POST /api/v1/jobs/{job_id}/cancel"]
        if fake.mode == "drop":
            assert "outcome is unknown" in str(e.value)
        else:
            assert e.value.status == 503 and e.value.message == "no leader"
        assert direct.get_job(job_id).state == "queued"  # the real server never saw it
        direct.cancel(job_id)


def test_rate_limited_safe_request_waits_and_retries() -> None:
    answers = iter([
        httpx.Response(429, headers={"retry-after": "0.2"},
                       json={"error": {"code": "resource_exhausted", "message": "slow down"}}),
        httpx.Response(200, json={"version": "x", "protocol": 1}),
    ])
    http = httpx.Client(transport=httpx.MockTransport(lambda req: next(answers)))
    t = SyncTransport(Settings(["http://a"], None, None, None), http, retry_for=5)
    started = time.monotonic()
    assert t.run(Call("GET", "/v", lambda r: r.json()["version"])) == "x"
    assert time.monotonic() - started >= 0.2
    # An unsafe request gets the 429 as an error, with its Retry-After.
    http = httpx.Client(transport=httpx.MockTransport(lambda req: httpx.Response(
        429, headers={"retry-after": "1"},
        json={"error": {"code": "resource_exhausted", "message": "slow down"}})))
    t = SyncTransport(Settings(["http://a"], None, None, None), http, retry_for=5)
    with pytest.raises(RateLimited) as e:
        t.run(Call("POST", "/x", lambda r: None))
    assert e.value.retry_after == 1.0 and e.value.message == "slow down"


def test_safe_request_gives_up_after_retry_for() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda req: httpx.Response(
        503, json={"error": {"code": "unavailable", "message": "store full"}})))
    t = SyncTransport(Settings(["http://a", "http://b"], None, None, None), http, retry_for=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable) as e:
        t.run(Call("GET", "/v", lambda r: None))
    assert 0.4 < time.monotonic() - started < 3 and e.value.message == "store full"


def test_which_requests_count_as_safe_to_repeat() -> None:
    from zenith_client import flows, jobs

    assert jobs.get(1).safe and jobs.logs(1, None, "stdout", None, False).safe
    assert jobs.submit({"command": ["true"]}, "key").safe
    assert not jobs.submit({"command": ["true"]}, None).safe
    assert not jobs.cancel(1).safe and not jobs.hold(1, True).safe
    assert not jobs.delete(1).safe  # a repeated delete answers 404
    assert flows.apply("f", "name: f", None).safe and flows.validate("x").safe
    assert not flows.start_run(None, "f", None, None).safe
    assert not flows.cancel_run(1).safe

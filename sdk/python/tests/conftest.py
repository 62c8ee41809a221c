"""Fixtures: a real ``zenith up`` (server and local agent) per test session, on a free
loopback port with a data directory of its own.

The binary: ``ZENITH_BIN``, else ``$CARGO_TARGET_DIR/debug/zenith`` (``CARGO_TARGET_DIR``
defaulting to ``~/.cache/zenith-target``). The server listens on port 0 and writes the
address it got to ``server.url``; readiness is ``/readyz`` answering 200, polled against a
deadline.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import httpx
import pytest

from zenith_client import AsyncClient, Client

T = TypeVar("T")
START_DEADLINE = 30.0

# The tests say where the server is; settings of the person running them must not leak in.
for _var in ("ZENITH_SERVER", "ZENITH_TOKEN", "ZENITH_CA_CERT", "ZENITH_NAMESPACE",
             "ZENITH_CONTEXT", "ZENITH_DATA_DIR"):
    os.environ.pop(_var, None)
# The user's own CLI config (contexts) is never read by the tests.
os.environ["ZENITH_CONFIG"] = "/nonexistent/zenith-sdk-tests/config.toml"


def zenith_bin() -> str:
    path = os.environ.get("ZENITH_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/zenith-target"),
        "debug",
        "zenith",
    )
    if not os.access(path, os.X_OK):
        pytest.exit(f"no zenith binary at {path} (cargo build --bin zenith, or set ZENITH_BIN)", 2)
    return path


@dataclass
class Server:
    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen
    log: Path

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_until(what: str, probe: Callable[[], Optional[T]], timeout: float = 15.0) -> T:
    """Polls ``probe`` (50 ms apart) until it returns something other than ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_server(root: Path, extra: List[str], cpus: int = 16) -> Server:
    data = root / "data"
    log = root / "zenith.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENITH_")}
    env["ZENITH_LOG"] = "warn"
    env["NO_COLOR"] = "1"
    # `zenith up` records itself as the CLI's context `local`: in this server's own config
    # file, never the user's.
    env["ZENITH_CONFIG"] = str(root / "config.toml")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [zenith_bin(), "up", "--data-dir", str(data), "--listen", "127.0.0.1:0",
             "--cpus", str(cpus), "--memory", "8G", "--kill-grace", "1s", *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    server = Server("", "", data, proc, log)

    def ready() -> Optional[bool]:
        if proc.poll() is not None:
            raise AssertionError(f"zenith up exited with {proc.returncode}:\n{server.log_tail()}")
        url_file, token_file = data / "server.url", data / "admin.token"
        if not (url_file.exists() and token_file.exists()):
            return None
        url = url_file.read_text().strip()
        try:
            verify = ssl.create_default_context(cafile=str(data / "tls" / "ca.pem")) \
                if url.startswith("https") else True
            r = httpx.get(f"{url}/readyz", verify=verify, timeout=2)
        except httpx.TransportError:
            return None
        if r.status_code != 200:
            return None
        server.url, server.token = url, token_file.read_text().strip()
        return True

    try:
        wait_until("zenith up to be ready", ready, START_DEADLINE)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="zenith-sdk-test-"))
    srv = start_server(root, [])
    try:
        yield srv
    finally:
        stop_server(srv)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_server() -> Iterator[Server]:
    """A second ``zenith up`` serving HTTPS with the certificates it makes (``--tls``)."""
    root = Path(tempfile.mkdtemp(prefix="zenith-sdk-tls-"))
    srv = start_server(root, ["--tls"], cpus=1)
    try:
        yield srv
    finally:
        stop_server(srv)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, token=server.token, data_dir=server.data_dir) as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def aclient(server: Server) -> "AsyncClient":
    async with AsyncClient(server.url, token=server.token, data_dir=server.data_dir) as c:
        yield c


def dead_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"

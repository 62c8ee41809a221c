"""Finding the server, token and CA as the CLI does; TLS against ``zenith up --tls``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Server

from zenith_client import Client, Unauthorized, Unreachable, resolve
from zenith_client.config import DEFAULT_SERVER, parse_servers


def test_resolve_order(tmp_path: Path) -> None:
    none = {"ZENITH_CONFIG": str(tmp_path / "no-config.toml")}
    empty = resolve(data_dir=tmp_path, env=none)
    assert empty.servers == [DEFAULT_SERVER] and empty.token is None and empty.ca_cert is None
    (tmp_path / "server.url").write_text("https://here:7700\n")
    (tmp_path / "admin.token").write_text("  file-token\n")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_text("pem")
    found = resolve(data_dir=tmp_path, env=none)
    assert found.servers == ["https://here:7700"] and found.token == "file-token"
    assert found.ca_cert == str(tmp_path / "tls" / "ca.pem")
    env = {"ZENITH_SERVER": "http://a:1/, http://b:2", "ZENITH_TOKEN": "env-token",
           "ZENITH_CA_CERT": "/env/ca.pem", "ZENITH_NAMESPACE": "ml", **none}
    from_env = resolve(data_dir=tmp_path, env=env)
    assert from_env.servers == ["http://a:1", "http://b:2"] and from_env.token == "env-token"
    assert from_env.ca_cert == "/env/ca.pem" and from_env.namespace == "ml"
    given = resolve("http://c:3", "arg-token", "/arg/ca.pem", "ns", tmp_path, env)
    assert (given.servers, given.token, given.ca_cert, given.namespace) == (
        ["http://c:3"], "arg-token", "/arg/ca.pem", "ns")
    with pytest.raises(ValueError):
        parse_servers("ftp://x")


def test_contexts_of_the_cli_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    (tmp_path / "t").write_text("ctx-token\n")
    cfg.write_text(
        'current-context = "local"\n'
        '[contexts.local]\nserver = "http://127.0.0.1:7811"\n'
        f'token-file = "{tmp_path / "t"}"\n'
        '[contexts.prod]\nserver = "https://prod:7700"\ntoken = "p"\n'
        'ca-cert = "/etc/ca.pem"\nnamespace = "ml"\n'
    )
    env = {"ZENITH_CONFIG": str(cfg)}
    cur = resolve(env=env)
    assert cur.servers == ["http://127.0.0.1:7811"] and cur.token == "ctx-token"
    prod = resolve(env=env, context="prod")
    assert (prod.servers, prod.token, prod.ca_cert, prod.namespace) == (
        ["https://prod:7700"], "p", "/etc/ca.pem", "ml")
    assert resolve(env={**env, "ZENITH_CONTEXT": "prod"}).token == "p"
    # A server given outright: the context's token is not sent there.
    other = resolve("http://elsewhere:1", env=env)
    assert other.servers == ["http://elsewhere:1"] and other.token is None
    with pytest.raises(ValueError, match="no context named 'nope'"):
        resolve(env=env, context="nope")
    # ZENITH_DATA_DIR: where the server's files are, when no context is current.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "server.url").write_text("http://d:1\n")
    found = resolve(env={"ZENITH_CONFIG": str(tmp_path / "none"), "ZENITH_DATA_DIR": str(tmp_path / "d")})
    assert found.servers == ["http://d:1"]


def test_client_finds_the_server_zenith_up_recorded_as_a_context(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENITH_CONFIG", str(server.data_dir.parent / "config.toml"))
    with Client() as c:
        assert c.base_url == server.url
        assert c.wait(c.submit(["true"]), timeout=30).ok


def test_client_finds_server_and_token_in_the_data_dir(server: Server) -> None:
    with Client(data_dir=server.data_dir) as c:
        assert c.base_url == server.url
        job_id = c.submit(["echo", "found"])
        assert c.wait(job_id, timeout=30).ok and c.logs(job_id) == "found\n"


def test_zenith_token_env_wins_over_the_token_file(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENITH_TOKEN", "wrong-token")
    with Client(data_dir=server.data_dir) as c:
        with pytest.raises(Unauthorized):
            c.list_jobs()


def test_tls_with_the_clusters_ca(tls_server: Server, tmp_path: Path) -> None:
    assert tls_server.url.startswith("https://")
    with Client(tls_server.url, token=tls_server.token, ca_cert=tls_server.ca_cert) as c:
        job_id = c.submit(["echo", "over tls"])
        assert c.wait(job_id, timeout=30).ok and c.logs(job_id) == "over tls\n"
    with Client(data_dir=tls_server.data_dir) as c:  # URL, token and ca.pem found there
        assert c.version().version
    with Client(tls_server.url, token=tls_server.token, data_dir=tmp_path) as c:
        with pytest.raises(Unreachable) as e:  # the system's roots do not know the cluster CA
            c.version()
        assert "certificate" in str(e.value).lower()
    with Client(tls_server.url, token=tls_server.token, verify=False, data_dir=tmp_path) as c:
        assert c.version().version
    with pytest.raises(ValueError):
        Client(tls_server.url, ca_cert=tmp_path / "missing.pem")

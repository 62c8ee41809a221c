"""Where the server is and how to talk to it, found the way the ``zenith`` CLI finds it.

Each setting is taken from the first of: the argument given, the environment
(``ZENITH_SERVER``, ``ZENITH_TOKEN``, ``ZENITH_CA_CERT``, ``ZENITH_NAMESPACE``), the files a
local ``zenith up``/``zenith server`` writes into its data directory (``server.url``,
``admin.token``, ``tls/ca.pem``), and the default ``http://127.0.0.1:7700``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

DEFAULT_SERVER = "http://127.0.0.1:7700"
#: At most this many servers in one list (as the CLI).
MAX_SERVERS = 16

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["Settings", "resolve", "default_data_dir", "parse_servers", "DEFAULT_SERVER"]


@dataclass(frozen=True)
class Settings:
    """What a client connects with, after discovery."""

    servers: List[str]
    token: Optional[str]
    ca_cert: Optional[str]
    namespace: Optional[str]


def default_data_dir() -> Path:
    """``~/.local/share/zenith`` (``$XDG_DATA_HOME/zenith``), or the platform's equivalent,
    as the server and the CLI use it."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home())
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "zenith"


def parse_servers(servers: Union[str, Sequence[str]]) -> List[str]:
    """A comma-separated string or a list of ``http(s)://`` URLs, trailing ``/`` removed."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    urls = [s.strip().rstrip("/") for s in items if s and s.strip()]
    if not urls:
        raise ValueError("no server URL given")
    if len(urls) > MAX_SERVERS:
        raise ValueError(f"{len(urls)} server URLs; at most {MAX_SERVERS}")
    for u in urls:
        if not (u.startswith("http://") or u.startswith("https://")):
            raise ValueError(f"{u!r} is not an http:// or https:// URL")
    return urls


def _read(path: Path) -> Optional[str]:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def resolve(
    server: Union[str, Sequence[str], None] = None,
    token: Optional[str] = None,
    ca_cert: Optional[PathLike] = None,
    namespace: Optional[str] = None,
    data_dir: Optional[PathLike] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Fills each setting not given from the environment, then from ``data_dir`` (default:
    :func:`default_data_dir`)."""
    env = os.environ if env is None else env
    ddir = Path(data_dir) if data_dir is not None else default_data_dir()

    if server is None:
        server = env.get("ZENITH_SERVER") or None
    if server is None:
        url = _read(ddir / "server.url")
        if url and (url.startswith("http://") or url.startswith("https://")):
            server = url
    servers = parse_servers(server if server is not None else DEFAULT_SERVER)

    if token is None:
        token = env.get("ZENITH_TOKEN") or _read(ddir / "admin.token")

    ca: Optional[str] = None
    if ca_cert is not None:
        ca = os.fspath(ca_cert)
    elif env.get("ZENITH_CA_CERT"):
        ca = env["ZENITH_CA_CERT"]
    elif (ddir / "tls" / "ca.pem").is_file():
        ca = str(ddir / "tls" / "ca.pem")

    if namespace is None:
        namespace = env.get("ZENITH_NAMESPACE") or None
    return Settings(servers=servers, token=token, ca_cert=ca, namespace=namespace)

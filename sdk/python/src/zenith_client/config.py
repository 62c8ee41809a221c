"""Where the server is and how to talk to it, found the way the ``zenith`` CLI finds it.

Each setting is taken from the first of: the argument given, the environment
(``ZENITH_SERVER``, ``ZENITH_TOKEN``, ``ZENITH_CA_CERT``, ``ZENITH_NAMESPACE``), the CLI's
context (``context=``/``ZENITH_CONTEXT``, else the current one of ``$ZENITH_CONFIG`` or
``~/.config/zenith/config.toml``, which ``zenith up`` writes; skipped when a server or a
data directory is given and no context is named, so a context's token never goes to another
server), the files a
local ``zenith up``/``zenith server`` writes into its data directory (``$ZENITH_DATA_DIR``;
``server.url``, ``admin.token``, ``tls/ca.pem``), and the default ``http://127.0.0.1:7700``.
Reading contexts needs a TOML parser: ``tomllib`` (Python 3.11+) or ``tomli``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

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


def config_path(env: Mapping[str, str]) -> Path:
    """The CLI's config file: ``$ZENITH_CONFIG``, else ``$XDG_CONFIG_HOME/zenith/config.toml``."""
    if env.get("ZENITH_CONFIG"):
        return Path(env["ZENITH_CONFIG"])
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "zenith" / "config.toml"


def _toml_loads(text: str) -> Any:
    try:
        import tomllib as toml  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        try:
            import tomli as toml  # type: ignore[no-redef]
        except ImportError:
            return None
    return toml.loads(text)


def load_context(name: Optional[str], env: Mapping[str, str]) -> Optional[Mapping[str, Any]]:
    """The context ``name`` (else the current one) of the CLI's config file; ``None`` when
    there is no file, no current context, or no TOML parser. ``ValueError`` for a context
    named that does not exist, or a file that is not valid TOML."""
    path = config_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        if name:
            raise ValueError(f"no context named {name!r}: cannot read {path}") from None
        return None
    try:
        cfg = _toml_loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if cfg is None:
        if name:
            raise ValueError("reading contexts needs Python 3.11+ (tomllib) or the tomli package")
        return None
    chosen = name or cfg.get("current-context")
    if not chosen:
        return None
    ctx = (cfg.get("contexts") or {}).get(chosen)
    if not isinstance(ctx, dict):
        raise ValueError(f"no context named {chosen!r} in {path}")
    return ctx


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
    context: Optional[str] = None,
) -> Settings:
    """Fills each setting not given from the environment, then from the CLI's context, then
    from ``data_dir`` (default: ``$ZENITH_DATA_DIR``, else :func:`default_data_dir`)."""
    env = os.environ if env is None else env
    if data_dir is not None:
        ddir = Path(data_dir)
    elif env.get("ZENITH_DATA_DIR"):
        ddir = Path(env["ZENITH_DATA_DIR"])
    else:
        ddir = default_data_dir()

    if server is None:
        server = env.get("ZENITH_SERVER") or None
    context = context or env.get("ZENITH_CONTEXT") or None
    # A server or data directory given outright wins over the current context (as --server
    # does for the CLI); a context named is always used.
    use_ctx = context is not None or (server is None and data_dir is None)
    ctx = load_context(context, env) if use_ctx else None
    if server is None and ctx is not None:
        server = ctx.get("server")
    if server is None:
        url = _read(ddir / "server.url")
        if url and (url.startswith("http://") or url.startswith("https://")):
            server = url
    servers = parse_servers(server if server is not None else DEFAULT_SERVER)

    if token is None:
        token = env.get("ZENITH_TOKEN") or None
    if token is None and ctx is not None:
        token = ctx.get("token") or (
            _read(Path(ctx["token-file"])) if ctx.get("token-file") else None
        )
    if token is None and ctx is None:
        token = _read(ddir / "admin.token")

    ca: Optional[str] = None
    if ca_cert is not None:
        ca = os.fspath(ca_cert)
    elif env.get("ZENITH_CA_CERT"):
        ca = env["ZENITH_CA_CERT"]
    elif ctx is not None:
        ca = ctx.get("ca-cert")
    elif (ddir / "tls" / "ca.pem").is_file():
        ca = str(ddir / "tls" / "ca.pem")

    if namespace is None:
        namespace = env.get("ZENITH_NAMESPACE") or (ctx.get("namespace") if ctx else None)
    return Settings(servers=servers, token=token, ca_cert=ca, namespace=namespace)

"""The ``ringkv`` command line (typer + rich).

``ringkv serve`` runs a node. Each of its settings comes from, in this order
of precedence: the flag, the ``RINGKV_<NAME>`` environment variable (e.g.
``RINGKV_RESP_PORT``), the TOML file named by ``--config`` (top-level keys
named like the flags, ``resp_port = 6390`` or ``resp-port = 6390``), and the
built-in default. Sizes accept Redis's suffixes: ``100mb``, ``1gb``, ``64kb``
(and ``1k`` = 1000 bytes, as in redis.conf).

The client commands (``get``, ``set``, ``del``, ``ttl``, ``keys``, ``info``)
speak RESP through redis-py to ``--host``/``--port`` (default
127.0.0.1:6380), or to ``--url``: a ``redis://`` URL, or a node's HTTP URL
(``http://127.0.0.1:8380``), whose ``/health`` answer names its RESP port.
RESP, because it carries every command these need (TTL and INFO included)
through the same code path as redis-cli, and redis-py is a dependency anyway.

Exit status: 0 success; 1 the key does not exist (``get``, ``ttl``); 2 a
usage error (unknown flag, bad value); 3 the server could not be reached or
refused the request. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer

from ringkv import __version__

if TYPE_CHECKING:  # the server's imports (asyncio, aiohttp) load only for `serve`
    from ringkv.runtime.server import ServerSettings

__all__ = ["app", "main", "parse_size", "resolve_serve_settings"]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

DEFAULT_CLIENT_HOST = "127.0.0.1"
DEFAULT_CLIENT_PORT = 6380
AUTH_HINT = "pass the server's --requirepass with --password (or RINGKV_PASSWORD)"
START_HINT = "is `ringkv serve` running? start it with `make run` or `ringkv serve`"

app = typer.Typer(
    name="ringkv",
    help="ringkv: a distributed key-value store and cache speaking RESP and HTTP.",
    epilog="Exit status: 0 ok, 1 key not found, 2 usage error, 3 server unreachable or failed.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main() -> None:
    """Entry point of the ``ringkv`` console script and of ``python -m ringkv``."""
    app(prog_name="ringkv")


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"ringkv: {message}", err=True)
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ringkv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """ringkv: a distributed key-value store and cache speaking RESP and HTTP."""


@app.command()
def version() -> None:
    """Print the ringkv version."""
    typer.echo(f"ringkv {__version__}")


# --------------------------------------------------------------------------
# sizes and serve settings
# --------------------------------------------------------------------------

_SIZE_RE = re.compile(r"\s*(\d+)\s*(b|k|kb|m|mb|g|gb)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
    "g": 1000**3, "gb": 1024**3,
}  # fmt: skip


def parse_size(text: str | int) -> int:
    """Bytes from ``123``, ``64kb``, ``100mb``, ``1gb`` (Redis's memtoull units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text} is negative")
        return text
    match = _SIZE_RE.fullmatch(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a size: use bytes, or a suffix as in 100mb or 1gb")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


class EngineChoice(StrEnum):
    memory = "memory"
    lmdb = "lmdb"


class FsyncChoice(StrEnum):
    always = "always"
    batch = "batch"
    never = "never"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@dataclass(frozen=True, slots=True)
class _Knob:
    """One ``serve`` setting: its flag, type, default and allowed range."""

    flag: str
    kind: str  # str | int | float | size | bool | choice
    default: object
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def envvar(self) -> str:
        return "RINGKV_" + self.name.upper()


_KNOBS = {
    knob.name: knob
    for knob in (
        _Knob("--host", "str", "127.0.0.1"),
        _Knob("--resp-port", "int", 6380, 0, 65535),
        _Knob("--http-port", "int", 8380, 0, 65535),
        _Knob("--data-dir", "str", None),  # None: ./.ringkv/<node-id>
        _Knob("--node-id", "str", "n1"),
        _Knob("--engine", "choice", "lmdb", choices=tuple(EngineChoice)),
        _Knob("--fsync", "choice", "always", choices=tuple(FsyncChoice)),
        _Knob("--fsync-interval-ms", "int", 100, 1, 3_600_000),
        _Knob("--commit-thread", "bool", False),
        _Knob("--requirepass", "str", None),
        _Knob("--max-key-bytes", "size", 8 * 1024, 1),
        _Knob("--max-value-bytes", "size", 8 * 1024 * 1024, 1),
        _Knob("--maxmemory", "size", 0, 0),
        _Knob("--max-clients", "int", 10_000, 1, 1_000_000),
        _Knob("--idle-timeout", "float", 300.0, 0),
        _Knob("--log-level", "choice", "info", choices=tuple(LogLevel)),
        _Knob("--log-json", "bool", False),
        _Knob("--ready-file", "str", None),
        _Knob("--peer-port", "int", 7380, 0, 65535),
        _Knob("--join", "str", None),
        _Knob("--advertise-addr", "str", None),
        _Knob("--zone", "str", ""),
        _Knob("--weight", "int", 1, 1, 1000),
        _Knob("--cluster-name", "str", "ringkv"),
        _Knob("--cluster-secret-file", "str", None),
        _Knob("--cluster-secret", "str", None),
        _Knob("--faults", "bool", False),
    )
}


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    json_lines: bool = False


def _check(knob: _Knob, raw: object, where: str) -> object:
    """``raw`` (from typer, or from TOML) as the knob's type; raises ValueError."""
    if isinstance(raw, StrEnum):
        raw = raw.value
    value: object
    if knob.kind == "size":
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise ValueError(f"{where}: expected a size such as 1048576 or 1mb, got {raw!r}")
        try:
            value = parse_size(raw)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    elif knob.kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError(f"{where}: expected a whole number, got {raw!r}")
        value = raw
    elif knob.kind == "float":
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise ValueError(f"{where}: expected a number of seconds, got {raw!r}")
        value = float(raw)
    elif knob.kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"{where}: expected true or false, got {raw!r}")
        value = raw
    else:
        if not isinstance(raw, str):
            raise ValueError(f"{where}: expected text, got {raw!r}")
        value = raw.lower() if knob.kind == "choice" else raw
        if knob.choices and value not in knob.choices:
            raise ValueError(f"{where}: {raw!r} is not one of {', '.join(knob.choices)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if knob.low is not None and value < knob.low:
            raise ValueError(f"{where}: {value} is below the minimum, {knob.low:g}")
        if knob.high is not None and value > knob.high:
            raise ValueError(f"{where}: {value} is above the maximum, {knob.high:g}")
    return value


def _load_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ValueError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}") from exc
    values: dict[str, object] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _KNOBS:
            known = ", ".join(sorted(_KNOBS))
            raise ValueError(f"unknown key {key!r} in {path}; the keys are: {known}")
        values[name] = value
    return values


def resolve_serve_settings(
    given: Mapping[str, object], config_path: str | None = None
) -> tuple[ServerSettings, LogSettings]:
    """The ``ServerSettings`` and log settings from flags/env (``given``, None
    where unset), then the TOML file, then defaults. Raises ValueError."""
    from ringkv.core.config import NodeConfig
    from ringkv.runtime.server import ServerSettings
    from ringkv.storage.base import FsyncPolicy

    from_file = _load_toml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for name, knob in _KNOBS.items():
        if given.get(name) is not None:
            values[name] = _check(knob, given[name], knob.flag)
        elif name in from_file:
            values[name] = _check(knob, from_file[name], f"{name} in {config_path}")
        else:
            values[name] = knob.default
    NodeConfig(
        node_id=values["node_id"],
        max_key_bytes=values["max_key_bytes"],
        max_value_bytes=values["max_value_bytes"],
    ).validate()
    settings = ServerSettings(
        node_id=values["node_id"],
        host=values["host"],
        resp_port=values["resp_port"],
        http_port=values["http_port"],
        data_dir=values["data_dir"] or os.path.join(".", ".ringkv", values["node_id"]),
        engine=values["engine"],
        fsync=FsyncPolicy(values["fsync"]),
        fsync_interval_ms=values["fsync_interval_ms"],
        commit_thread=values["commit_thread"],
        requirepass=values["requirepass"],
        max_key_bytes=values["max_key_bytes"],
        max_value_bytes=values["max_value_bytes"],
        maxmemory=values["maxmemory"],
        max_clients=values["max_clients"],
        idle_timeout_s=values["idle_timeout"],
        ready_file=values["ready_file"],
        peer_port=values["peer_port"],
        join=tuple(s.strip() for s in (values["join"] or "").split(",") if s.strip()),
        advertise_addr=values["advertise_addr"],
        zone=values["zone"],
        weight=values["weight"],
        cluster_name=values["cluster_name"],
        cluster_secret_file=values["cluster_secret_file"],
        cluster_secret=values["cluster_secret"],
        faults=values["faults"],
    )
    settings.validate()
    return settings, LogSettings(values["log_level"], values["log_json"])


# --------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------


class _Formatter(logging.Formatter):
    """Plain lines, or one JSON object per line; secrets never reach the output."""

    def __init__(self, json_lines: bool, secrets: tuple[str, ...]) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.json_lines = json_lines
        self.secrets = tuple(s for s in secrets if s)

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        if not self.json_lines:
            return self._redact(super().format(record))
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self._redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log: LogSettings, secrets: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(log.json_lines, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log.level.upper())


# --------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------


def _opt(flag: str, help_text: str, show: str | bool | None = None) -> Any:
    knob = _KNOBS[flag.removeprefix("--").replace("-", "_")]
    default = show if show is not None else str(knob.default)
    return typer.Option(
        flag, envvar=knob.envvar, help=help_text, show_default=default, case_sensitive=False
    )


@app.command()
def serve(
    host: Annotated[str | None, _opt("--host", "Address to bind.")] = None,
    resp_port: Annotated[int | None, _opt("--resp-port", "RESP port; 0 picks a free one.")] = None,
    http_port: Annotated[int | None, _opt("--http-port", "HTTP port; 0 picks a free one.")] = None,
    data_dir: Annotated[
        str | None, _opt("--data-dir", "Where LMDB keeps data.", "./.ringkv/<node-id>")
    ] = None,
    node_id: Annotated[str | None, _opt("--node-id", "This node's id.")] = None,
    engine: Annotated[EngineChoice | None, _opt("--engine", "Storage engine.")] = None,
    fsync: Annotated[
        FsyncChoice | None, _opt("--fsync", "When a write is fsynced before it is acknowledged.")
    ] = None,
    fsync_interval_ms: Annotated[
        int | None, _opt("--fsync-interval-ms", "fsync period under --fsync batch.")
    ] = None,
    requirepass: Annotated[
        str | None,
        _opt(
            "--requirepass",
            "Password clients must AUTH with (a flag shows in `ps`: prefer the env var).",
            False,
        ),
    ] = None,
    max_key_bytes: Annotated[str | None, _opt("--max-key-bytes", "Largest key.", "8kb")] = None,
    max_value_bytes: Annotated[
        str | None, _opt("--max-value-bytes", "Largest value.", "8mb")
    ] = None,
    maxmemory: Annotated[
        str | None, _opt("--maxmemory", "Memory engine limit (LRU eviction); 0 = none.")
    ] = None,
    max_clients: Annotated[int | None, _opt("--max-clients", "Most RESP clients at once.")] = None,
    idle_timeout: Annotated[
        float | None, _opt("--idle-timeout", "Close idle clients after seconds; 0 = never.")
    ] = None,
    log_level: Annotated[LogLevel | None, _opt("--log-level", "Log threshold.")] = None,
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--no-log-json",
            envvar="RINGKV_LOG_JSON",
            help="Log one JSON object per line.",
            show_default="plain lines",
        ),
    ] = None,
    ready_file: Annotated[
        str | None,
        _opt("--ready-file", "Write the bound ports as JSON here once listening.", False),
    ] = None,
    peer_port: Annotated[
        int | None, _opt("--peer-port", "Node-to-node port; 0 picks a free one.")
    ] = None,
    join: Annotated[
        str | None, _opt("--join", "Seeds to join: host:port of peers, comma-separated.", False)
    ] = None,
    advertise_addr: Annotated[
        str | None,
        _opt("--advertise-addr", "host:port peers use to reach this node.", "host:peer-port"),
    ] = None,
    zone: Annotated[
        str | None, _opt("--zone", "This node's zone (replicas spread over zones).")
    ] = None,
    weight: Annotated[
        int | None, _opt("--weight", "Share of the ring (virtual nodes x weight).")
    ] = None,
    cluster_name: Annotated[
        str | None, _opt("--cluster-name", "Peers must name the same cluster.")
    ] = None,
    cluster_secret_file: Annotated[
        str | None,
        _opt("--cluster-secret-file", "File holding the cluster secret (peers prove it).", False),
    ] = None,
    cluster_secret: Annotated[
        str | None,
        _opt("--cluster-secret", "The secret itself (for tests; shows in `ps`).", False),
    ] = None,
    commit_thread: Annotated[
        bool | None,
        typer.Option(
            "--commit-thread",
            envvar="RINGKV_COMMIT_THREAD",
            help="fsync on a thread of its own (--fsync always; see the README).",
            show_default="off",
        ),
    ] = None,
    faults: Annotated[
        bool | None,
        typer.Option(
            "--faults/--no-faults",
            envvar="RINGKV_FAULTS",
            help="Enable /v1/admin/faults (partitions, delays, clock skew) for tests; "
            "never in production.",
            show_default="off",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", envvar="RINGKV_CONFIG", help="TOML file with these settings as keys."
        ),
    ] = None,
) -> None:
    """Run a node: RESP and HTTP, until SIGTERM or SIGINT (then flush and exit 0)."""
    given = {k: v for k, v in locals().items() if k in _KNOBS}  # parameters are named as knobs
    try:
        settings, log_settings = resolve_serve_settings(given, config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    configure_logging(
        log_settings, secrets=(settings.requirepass or "", settings.cluster_secret or "")
    )
    _run_server(settings)


def _run_server(settings: ServerSettings) -> None:
    from ringkv.runtime.server import run_server
    from ringkv.storage.base import StorageError

    log = logging.getLogger("ringkv.cli")
    try:
        run_server(settings)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except StorageError as exc:
        log.error("cannot start: %s", exc)
        _fail(f"storage error: {exc}")
    except ValueError as exc:  # a cluster setting the server checks at start
        log.error("cannot start: %s", exc)
        _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        _fail(
            f"cannot listen on {settings.host}: {exc.strerror or exc}; is another server on "
            "that port? pick others with --resp-port/--http-port (0 picks a free one)"
        )


# --------------------------------------------------------------------------
# client commands
# --------------------------------------------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="RINGKV_URL",
        help="Node to talk to: redis://host:port, or a node's HTTP URL (http://host:8380).",
    ),
]
HostOption = Annotated[str, typer.Option("--host", help="RESP host (without --url).")]
PortOption = Annotated[int, typer.Option("--port", "-p", help="RESP port (without --url).")]
PasswordOption = Annotated[
    str | None, typer.Option("--password", "-a", envvar="RINGKV_PASSWORD", help="AUTH password.")
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the server.")]


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    password: str | None
    timeout_s: float
    url: str | None = None

    @property
    def where(self) -> str:
        return self.url or f"{self.host}:{self.port}"


def _resp_port_from_http(url: str, timeout_s: float) -> tuple[str, int]:
    """The RESP address of the node whose HTTP API is at ``url`` (from ``/health``)."""
    host = urlsplit(url).hostname or DEFAULT_CLIENT_HOST
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as reply:
            health = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(f"cannot reach {url}: {reason}; {START_HINT}")
    port = health.get("resp_port") if isinstance(health, dict) else None
    if not isinstance(port, int):
        _fail(f"{url}/health does not name the node's RESP port; use --host and --port instead")
    return host, port


def _connect(target: _Target) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        # One attempt: redis-py's default retries with backoff would make a
        # refused connection take seconds to report.
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": target.timeout_s,
        "socket_timeout": target.timeout_s,
        "password": target.password,
    }
    url = target.url
    if url is None:
        return redis.Redis(host=target.host, port=target.port, **options)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        if target.password is None:
            del options["password"]
        return redis.Redis.from_url(url, **options)
    if scheme in ("http", "https"):
        host, port = _resp_port_from_http(url, target.timeout_s)
        return redis.Redis(host=host, port=port, **options)
    _fail(f"--url {url!r}: use redis://host:port or http://host:port", EXIT_USAGE)


@contextlib.contextmanager
def _client(target: _Target) -> Iterator[Any]:
    """A redis-py client; every failure becomes a one-line message and exit 3."""
    import redis

    client = _connect(target)
    try:
        yield client
    except redis.AuthenticationError:
        _fail(f"authentication failed at {target.where}: {AUTH_HINT}")
    except redis.ConnectionError as exc:
        _fail(f"cannot connect to {target.where} ({exc}): {START_HINT}")
    except redis.TimeoutError:
        _fail(f"{target.where} did not answer within {target.timeout_s:g} s; is it overloaded?")
    except redis.ResponseError as exc:
        text = str(exc)
        if text.startswith(("NOAUTH", "WRONGPASS")):
            _fail(f"authentication failed at {target.where}: {AUTH_HINT}")
        _fail(f"server error: {text}")
    except redis.RedisError as exc:
        _fail(f"request to {target.where} failed: {exc}")
    finally:
        client.close()


def _target(
    url: str | None, host: str, port: int, password: str | None, timeout_s: float
) -> _Target:
    if not 0 < port <= 65535:
        raise typer.BadParameter(f"{port} is not a TCP port", param_hint="--port")
    if timeout_s <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    return _Target(host, port, password, timeout_s, url)


def _arg_bytes(text: str) -> bytes:
    """A command-line argument as the bytes the user typed (not only UTF-8)."""
    return os.fsencode(text)


def _show(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="Key to read.")],
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Print the value of KEY (exit 1 if it does not exist)."""
    with _client(_target(url, host, port, password, timeout)) as client:
        value = client.get(_arg_bytes(key))
    if value is None:
        _fail(f"no such key: {key}", EXIT_NOT_FOUND)
    typer.echo(value)


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="Key to write.")],
    value: Annotated[str, typer.Argument(help="Value to store.")],
    ttl_ms: Annotated[
        int | None, typer.Option("--ttl-ms", min=1, help="Expire after this many ms.")
    ] = None,
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Set KEY to VALUE (optionally expiring after --ttl-ms); prints OK."""
    with _client(_target(url, host, port, password, timeout)) as client:
        client.set(_arg_bytes(key), _arg_bytes(value), px=ttl_ms)
    typer.echo("OK")


@app.command("del")
def del_(
    keys: Annotated[list[str], typer.Argument(help="Keys to delete.")],
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Delete KEYS; prints how many existed."""
    with _client(_target(url, host, port, password, timeout)) as client:
        deleted = client.delete(*(_arg_bytes(k) for k in keys))
    typer.echo(str(deleted))


@app.command()
def ttl(
    key: Annotated[str, typer.Argument(help="Key to inspect.")],
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Print the ms until KEY expires, -1 if it never does (exit 1 if it does not exist)."""
    with _client(_target(url, host, port, password, timeout)) as client:
        remaining = client.pttl(_arg_bytes(key))
    if remaining == -2:
        _fail(f"no such key: {key}", EXIT_NOT_FOUND)
    typer.echo(str(remaining))


@app.command()
def keys(
    pattern: Annotated[str, typer.Argument(help="Glob pattern, as in Redis KEYS.")] = "*",
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List the keys matching PATTERN, one per line (walks with SCAN, never blocks the server)."""
    with _client(_target(url, host, port, password, timeout)) as client:
        for key in client.scan_iter(match=_arg_bytes(pattern), count=1000):
            typer.echo(_show(key))


def parse_info(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """INFO's text as ``[(section, [(field, value), ...]), ...]``."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("#"):
            sections.append((line.lstrip("# ").strip(), []))
        elif ":" in line:
            if not sections:
                sections.append(("Info", []))
            field, _, value = line.partition(":")
            sections[-1][1].append((field, value))
    return sections


@app.command()
def info(
    section: Annotated[
        str | None, typer.Argument(help="Section (server, memory, ...; all for every one).")
    ] = None,
    url: UrlOption = None,
    host: HostOption = DEFAULT_CLIENT_HOST,
    port: PortOption = DEFAULT_CLIENT_PORT,
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Show the server's INFO fields as a table, grouped by section."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    target = _target(url, host, port, password, timeout)
    with _client(target) as client:
        client.set_response_callback("INFO", lambda response, **_: response)
        raw = client.execute_command("INFO", *([section] if section else []))
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    table = Table(title=f"ringkv INFO {target.where}", title_justify="left")
    table.add_column("section", style="bold cyan")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, fields in parse_info(text):
        for index, (field, value) in enumerate(fields):
            table.add_row(
                Text(name if index == 0 else ""),
                Text(field),
                Text(value),
                end_section=index == len(fields) - 1,
            )
    Console(highlight=False).print(table)


@app.command()
def sim(
    seed: Annotated[
        int | None, typer.Option(help="Seed of the run (default: a random one, printed).")
    ] = None,
    nodes: Annotated[int, typer.Option(min=1, max=64, help="Number of nodes.")] = 5,
    time_s: Annotated[
        float, typer.Option("--time", min=0.1, help="Seconds of simulated time with faults.")
    ] = 60.0,
    keyspace_mode: Annotated[
        str, typer.Option(help="Conflict mode of the keyspace: lww or causal.")
    ] = "causal",
    drop: Annotated[float, typer.Option(min=0.0, max=1.0, help="Message loss rate.")] = 0.0,
    dup: Annotated[float, typer.Option(min=0.0, max=1.0, help="Message duplication rate.")] = 0.0,
    faults: Annotated[
        str, typer.Option(help="Comma-separated: partition,cut,crash,drop,dup,skew, or all.")
    ] = "",
    fsync: Annotated[
        str, typer.Option(help="Simulated disk policy: always, batch, never.")
    ] = "always",
) -> None:
    """Run a seeded simulation of a cluster and check it; the seed replays it exactly.

    Exits 3 when a check fails (an acknowledged write lost, replicas not converged)."""
    from ringkv.sim.cli import main as sim_main
    from ringkv.sim.cli import parse_faults
    from ringkv.sim.run import RunOptions

    if keyspace_mode not in ("lww", "causal"):
        _fail("--keyspace-mode must be lww or causal", EXIT_USAGE)
    if fsync not in ("always", "batch", "never"):
        _fail("--fsync must be always, batch or never", EXIT_USAGE)
    try:
        kinds = parse_faults(faults)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    options = RunOptions(
        seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
        nodes=nodes,
        time_s=time_s,
        mode=keyspace_mode,
        drop=drop,
        dup=dup,
        faults=kinds,
        fsync=fsync,
    )
    if sim_main(options) != 0:
        raise typer.Exit(EXIT_FAILED)


# --------------------------------------------------------------------------
# keyspaces (over HTTP: PUT /v1/keyspaces/{name}, GET /v1/keyspaces)
# --------------------------------------------------------------------------

keyspace_app = typer.Typer(help="Create and list keyspaces (like Riak bucket types).")
app.add_typer(keyspace_app, name="keyspace")

HttpUrlOption = Annotated[
    str,
    typer.Option("--url", envvar="RINGKV_HTTP_URL", help="A node's HTTP address."),
]


class _Mode(StrEnum):
    lww = "lww"
    causal = "causal"
    strong = "strong"


class _Level(StrEnum):
    one = "one"
    quorum = "quorum"
    all = "all"
    local_quorum = "local_quorum"
    linearizable = "linearizable"


def _http_json(
    method: str, url: str, password: str | None, timeout: float, body: object = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if password:
        request.add_header("Authorization", f"Bearer {password}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        _fail(f"{method} {url}: {exc.code}: {message}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"cannot reach {url}: {exc}; is `ringkv serve` running (HTTP port, e.g. 8380)?")


@keyspace_app.command("create")
def keyspace_create(
    name: Annotated[str, typer.Argument(help="Keyspace name.")],
    mode: Annotated[
        _Mode,
        typer.Option(
            "--mode",
            help="Conflict mode: lww (newest write wins), causal (concurrent writes kept as "
            "siblings) or strong (linearizable registers through CASPaxos: compare-and-set, "
            "locks, atomic INCR/SETNX; writable only where a majority of a key's replicas is).",
        ),
    ] = _Mode.lww,
    n: Annotated[int, typer.Option("--n", min=1, max=15, help="Replicas per key.")] = 3,
    level: Annotated[
        _Level | None,
        typer.Option(
            "--level",
            help="Default level of requests (default: quorum; linearizable for --mode "
            "strong, whose reads at other levels are possibly stale).",
            show_default=False,
        ),
    ] = None,
    url: HttpUrlOption = "http://127.0.0.1:8380",
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Create keyspace NAME; its mode, n and level are fixed for good."""
    body: dict[str, object] = {"mode": mode.value, "n": n}
    if level is not None:
        body["level"] = level.value
    status, spec = _http_json(
        "PUT", f"{url.rstrip('/')}/v1/keyspaces/{name}", password, timeout, body
    )
    verb = "created" if status == 201 else "exists"
    typer.echo(f"{verb}: {spec['name']} mode={spec['mode']} n={spec['n']} level={spec['level']}")


@keyspace_app.command("list")
def keyspace_list(
    url: HttpUrlOption = "http://127.0.0.1:8380",
    password: PasswordOption = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List every keyspace as a table."""
    from rich.console import Console
    from rich.table import Table

    _, body = _http_json("GET", f"{url.rstrip('/')}/v1/keyspaces", password, timeout)
    table = Table("keyspace", "mode", "n", "level")
    for spec in body["keyspaces"]:
        table.add_row(spec["name"], spec["mode"], str(spec["n"]), spec["level"])
    Console().print(table)


def _register_cluster_commands() -> None:
    from ringkv.cluster_cli import cluster_app

    app.add_typer(cluster_app, name="cluster")


_register_cluster_commands()


def _register_verify_command() -> None:
    from ringkv.verify.cli import verify

    app.command("verify")(verify)


_register_verify_command()

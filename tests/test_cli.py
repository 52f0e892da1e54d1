"""The ``ringkv`` command line: settings resolution in-process, then real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ServerProcess, spawn_server
from ringkv import __version__, cli
from ringkv.storage.base import FsyncPolicy

runner = CliRunner()
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(autouse=True)
def _no_ringkv_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RINGKV_"):
            monkeypatch.delenv(name)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run ``serve`` without a server: capture the settings it would run with."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "_run_server", lambda settings: seen.update(settings=settings))
    monkeypatch.setattr(
        cli, "configure_logging", lambda log, secrets=(): seen.update(log=log, secrets=secrets)
    )
    return seen


# -- in-process: help, version, settings -------------------------------------


def test_version_command_and_flag() -> None:
    for args in (["version"], ["--version"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0
        assert result.output.strip() == f"ringkv {__version__}"


def test_help_lists_commands_and_serve_flags() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "get", "set", "del", "ttl", "keys", "info", "version"):
        assert command in result.output
    result = runner.invoke(cli.app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--resp-port", "--fsync", "--maxmemory", "--config", "RINGKV_RESP_PORT"):
        assert flag in result.output


def test_serve_defaults(captured: dict[str, Any]) -> None:
    result = runner.invoke(cli.app, ["serve"])
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert (s.host, s.resp_port, s.http_port) == ("127.0.0.1", 6380, 8380)
    assert (s.engine, s.fsync, s.node_id) == ("lmdb", FsyncPolicy.ALWAYS, "n1")
    assert s.data_dir == os.path.join(".", ".ringkv", "n1")
    assert (s.max_key_bytes, s.max_value_bytes, s.maxmemory) == (8192, 8 * 1024 * 1024, 0)
    assert s.requirepass is None and s.ready_file is None
    assert captured["log"] == cli.LogSettings("info", False)


def test_serve_flags(captured: dict[str, Any]) -> None:
    result = runner.invoke(
        cli.app,
        [
            "serve", "--host", "0.0.0.0", "--resp-port", "0", "--http-port", "9000",
            "--node-id", "n7", "--engine", "MEMORY", "--fsync", "batch",
            "--fsync-interval-ms", "50", "--requirepass", PASSWORD, "--max-key-bytes", "1kb",
            "--max-value-bytes", "2mb", "--maxmemory", "100mb", "--max-clients", "12",
            "--idle-timeout", "1.5", "--log-level", "debug", "--log-json",
            "--ready-file", "r.json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert (s.host, s.resp_port, s.http_port, s.node_id) == ("0.0.0.0", 0, 9000, "n7")
    assert s.data_dir == os.path.join(".", ".ringkv", "n7")  # follows the node id
    assert (s.engine, s.fsync, s.fsync_interval_ms) == ("memory", FsyncPolicy.BATCH, 50)
    assert (s.max_key_bytes, s.max_value_bytes) == (1024, 2 * 1024 * 1024)
    assert (s.maxmemory, s.max_clients, s.idle_timeout_s) == (100 * 1024 * 1024, 12, 1.5)
    assert (s.requirepass, s.ready_file) == (PASSWORD, "r.json")
    assert captured["log"] == cli.LogSettings("debug", True)
    assert PASSWORD in captured["secrets"]  # handed to the log redactor


def test_precedence_flag_then_env_then_toml_then_default(
    captured: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "ringkv.toml"
    config.write_text(
        'resp_port = 7001\nhttp-port = 7002\nmaxmemory = "1gb"\nlog_json = true\n'
        'engine = "memory"\nidle_timeout = 10\n'
    )
    env = {"RINGKV_RESP_PORT": "7101", "RINGKV_HTTP_PORT": "7102", "RINGKV_CONFIG": str(config)}
    result = runner.invoke(cli.app, ["serve", "--resp-port", "7201"], env=env)
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert s.resp_port == 7201  # flag beats env and file
    assert s.http_port == 7102  # env beats file
    assert s.maxmemory == 1024**3 and s.engine == "memory" and s.idle_timeout_s == 10.0  # file
    assert s.max_clients == 10_000  # default
    assert captured["log"].json_lines is True
    result = runner.invoke(cli.app, ["serve", "--config", str(config), "--no-log-json"])
    assert result.exit_code == 0, result.output
    assert captured["settings"].resp_port == 7001
    assert captured["log"].json_lines is False


def test_env_sizes_and_booleans(captured: dict[str, Any]) -> None:
    env = {"RINGKV_MAXMEMORY": "64KB", "RINGKV_LOG_JSON": "1", "RINGKV_ENGINE": "memory"}
    result = runner.invoke(cli.app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    assert captured["settings"].maxmemory == 65536
    assert captured["log"].json_lines is True


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (["--engine", "rocksdb"], {}, None, "--engine"),
        (["--resp-port", "70000"], {}, None, "--resp-port"),
        (["--resp-port", "many"], {}, None, "--resp-port"),
        (["--maxmemory", "10zb"], {}, None, "not a size"),
        ([], {"RINGKV_FSYNC": "sometimes"}, None, "--fsync"),
        ([], {"RINGKV_MAX_CLIENTS": "0"}, None, "below the minimum"),
        (["--node-id", "bad id"], {}, None, "node id"),
        (["--max-key-bytes", "0"], {}, None, "below the minimum"),
        ([], {}, "resp_port = 'x'\n", "resp_port in"),
        ([], {}, "colour = 'blue'\n", "unknown key 'colour'"),
        ([], {}, "engine = 'tape'\n", "not one of"),
        ([], {}, "this is not toml", "cannot read config file"),
        (["--config", "/nonexistent/ringkv.toml"], {}, None, "does not exist"),
        (["--no-such-flag"], {}, None, "No such option"),
    ],
)
def test_bad_serve_settings_exit_2(
    captured: dict[str, Any],
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    toml: str | None,
    message: str,
) -> None:
    if toml is not None:
        config = tmp_path / "bad.toml"
        config.write_text(toml)
        args = [*args, "--config", str(config)]
    result = runner.invoke(cli.app, ["serve", *args], env=env, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "settings" not in captured  # the server never started


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("123", 123), ("1k", 1000), ("1kb", 1024), ("100mb", 100 * 2**20),
     ("1GB", 2**30), ("2g", 2 * 10**9), ("7b", 7), (42, 42)],
)  # fmt: skip
def test_parse_size(text: str | int, size: int) -> None:
    assert cli.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "mb", "1.5mb", "-1", "1tb", "1 m b"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cli.parse_size(text)


def test_parse_info_groups_fields_by_section() -> None:
    text = "# Server\r\nredis_version:7.2.0\r\nos:Linux\r\n\r\n# Keyspace\r\ndb0:keys=1\r\n"
    assert cli.parse_info(text) == [
        ("Server", [("redis_version", "7.2.0"), ("os", "Linux")]),
        ("Keyspace", [("db0", "keys=1")]),
    ]


def test_client_usage_errors_exit_2() -> None:
    result = runner.invoke(cli.app, ["set", "k", "v", "--ttl-ms", "0"])
    assert result.exit_code == 2
    result = runner.invoke(cli.app, ["get"])
    assert result.exit_code == 2
    result = runner.invoke(cli.app, ["get", "k", "--url", "ftp://x"])
    assert result.exit_code == 2
    assert "redis://" in result.output


# -- real processes ----------------------------------------------------------


def ringkv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}
    return subprocess.run(
        [sys.executable, "-m", "ringkv", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One LMDB server with a password for the client-command tests of this module."""
    proc = spawn_server(tmp_path_factory.mktemp("cli"), "--requirepass", PASSWORD)
    yield proc
    assert proc.terminate() == 0


def at(node: ServerProcess) -> list[str]:
    return ["--port", str(node.resp_port), "--password", PASSWORD]


def test_client_commands_against_a_real_server(node: ServerProcess) -> None:
    assert ringkv("set", "cli:a", "héllo", *at(node)).stdout == "OK\n"
    assert ringkv("set", "cli:b", "2", "--ttl-ms", "60000", *at(node)).returncode == 0
    got = ringkv("get", "cli:a", *at(node))
    assert (got.returncode, got.stdout) == (0, "héllo\n")
    ttl = ringkv("ttl", "cli:b", *at(node))
    assert ttl.returncode == 0 and 0 < int(ttl.stdout) <= 60_000
    assert ringkv("ttl", "cli:a", *at(node)).stdout == "-1\n"
    keys = ringkv("keys", "cli:*", *at(node))
    assert sorted(keys.stdout.split()) == ["cli:a", "cli:b"]
    deleted = ringkv("del", "cli:a", "cli:b", "cli:none", *at(node))
    assert deleted.stdout == "2\n"
    missing = ringkv("get", "cli:a", *at(node))
    assert missing.returncode == 1 and missing.stdout == ""
    assert "no such key: cli:a" in missing.stderr
    assert ringkv("ttl", "cli:a", *at(node)).returncode == 1


def test_info_prints_a_table_grouped_by_section(node: ServerProcess) -> None:
    result = ringkv("info", *at(node), env={"COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    for text in ("Server", "Memory", "Persistence", "ringkv_version", __version__, "lmdb"):
        assert text in result.stdout
    only_memory = ringkv("info", "memory", *at(node), env={"COLUMNS": "160"})
    assert "used_memory" in only_memory.stdout and "redis_version" not in only_memory.stdout


def test_password_from_env_and_auth_errors(node: ServerProcess) -> None:
    port = str(node.resp_port)
    assert ringkv("set", "k", "v", "-p", port, env={"RINGKV_PASSWORD": PASSWORD}).returncode == 0
    for extra in ([], ["--password", "wrong"]):
        result = ringkv("get", "k", "-p", port, *extra)
        assert result.returncode == 3
        assert "authentication failed" in result.stderr and "--password" in result.stderr
        assert "Traceback" not in result.stderr


def test_url_forms(node: ServerProcess) -> None:
    ringkv("set", "via-url", "yes", *at(node))
    redis_url = f"redis://:{PASSWORD}@127.0.0.1:{node.resp_port}/0"
    assert ringkv("get", "via-url", "--url", redis_url).stdout == "yes\n"
    # An HTTP URL: the CLI asks the node's /health for its RESP port.
    http_url = f"http://127.0.0.1:{node.http_port}"
    result = ringkv("get", "via-url", "--url", http_url, "--password", PASSWORD)
    assert (result.returncode, result.stdout) == (0, "yes\n"), result.stderr
    health = {"status": "ok", "resp_port": node.resp_port}
    with fake_http(json.dumps(health).encode()) as url:
        result = ringkv("get", "via-url", "--url", url, "--password", PASSWORD)
        assert (result.returncode, result.stdout) == (0, "yes\n"), result.stderr
    with fake_http(b'{"status": "ok"}') as url:
        result = ringkv("get", "via-url", "--url", url)
        assert result.returncode == 3 and "--host and --port" in result.stderr


def test_unreachable_server_is_one_clear_line() -> None:
    port = free_port()
    for args in (["get", "k", "--port", str(port)], ["keys", "--url", f"http://127.0.0.1:{port}"]):
        result = ringkv(*args)
        assert result.returncode == 3
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "ringkv serve" in lines[0] and "make run" in lines[0]


def test_serve_logs_plain_lines_and_sigterm_exits_0_after_flushing(tmp_path: Path) -> None:
    proc = spawn_server(tmp_path, "--requirepass", PASSWORD)
    assert ringkv("set", "durable", "yes", *at(proc)).returncode == 0
    assert proc.terminate() == 0
    log = proc.log_path.read_text()
    assert f"RESP on 127.0.0.1:{proc.resp_port}" in log
    assert "stopped cleanly" in log
    assert PASSWORD not in log
    again = spawn_server(tmp_path, "--requirepass", PASSWORD)  # same data dir
    try:
        assert ringkv("get", "durable", *at(again)).stdout == "yes\n"
    finally:
        assert again.terminate() == 0


def test_serve_log_json_is_one_object_per_line_without_the_password(tmp_path: Path) -> None:
    proc = spawn_server(
        tmp_path, "--engine", "memory", "--log-json", "--log-level", "debug",
        "--requirepass", PASSWORD,
    )  # fmt: skip
    assert ringkv("set", "k", "v", *at(proc)).returncode == 0
    assert proc.terminate() == 0
    text = proc.log_path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any("RESP on" in r["msg"] for r in records)
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert PASSWORD not in text


def test_serve_with_a_bad_flag_value_exits_2_without_starting(tmp_path: Path) -> None:
    result = ringkv("serve", "--engine", "tape", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "--engine" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_serve_on_a_busy_port_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ringkv(
            "serve", "--engine", "memory", "--resp-port", str(port), "--http-port", "0",
            "--data-dir", str(tmp_path / "d"),
        )  # fmt: skip
    assert result.returncode == 3
    assert "cannot listen" in result.stderr and "--resp-port" in result.stderr
    assert "Traceback" not in result.stderr


# -- helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class fake_http:
    """A one-route HTTP server that answers every GET with ``body`` (as JSON)."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

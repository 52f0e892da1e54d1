"""The Redis command table: arguments in, core requests and reply values out.

Each handler takes the connection's ``Session`` and the command's arguments
and returns either a reply value (see ``resp.encode``) for commands the front
end answers itself, or a ``Call``: the core requests to submit and a function
that turns their results into the reply. Argument parsing, option rules and
error texts follow Redis 7 (t_string.c, expire.c, db.c, networking.c).
Multi-key commands (MGET, MSET, DEL, EXISTS) become one request per key: they
are per key, not atomic, as DESIGN.md states.

In a ``strong`` keyspace (core/strong.py) a read answers a ``RegisterValue``
and a write a ``Versioned(result, version)``; the finishers below read both
shapes through ``_plain`` and ``_live``, so every Redis command replies as
Redis does there too. The ringkv extensions RINGKV.CAS, RINGKV.LOCK and
RINGKV.UNLOCK exist only for strong keyspaces and reply versions and fencing
tokens as integers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ringkv.core import ops
from ringkv.core.config import DEFAULT_KEYSPACE, LOCKS_KEYSPACE, KeyspaceSpec, Level
from ringkv.core.errors import ErrorKind, OpError, invalid
from ringkv.core.node import (
    Cas,
    Count,
    Flush,
    ListKeyspaces,
    Lock,
    LockGranted,
    LockReleased,
    Mutate,
    PutMany,
    RandomKey,
    Read,
    ReadResult,
    RegisterValue,
    Request,
    Scan,
    ScanResult,
    Unlock,
    Versioned,
)
from ringkv.core.strong import wrong_level
from ringkv.frontend.context import decode_context, encode_context, version_tag
from ringkv.frontend.glob import glob_matcher
from ringkv.frontend.resp import OK, Double, RespMap, SimpleString, Verbatim

__all__ = ["COMMANDS", "Call", "Close", "ServerView", "Session", "dispatch"]

VERSION_TEXT = "7.2.0"  # the Redis version whose behaviour these commands follow


@dataclass(slots=True)
class Session:
    """Per-connection state."""

    id: int
    addr: str = ""
    laddr: str = ""
    created_ms: int = 0
    authenticated: bool = True
    proto: int = 2
    name: bytes = b""
    lib_name: bytes = b""
    lib_ver: bytes = b""
    keyspace: str = DEFAULT_KEYSPACE
    last_command: str = "NULL"
    last_active_ms: int = 0
    db: int = 0
    # RINGKV.CONSISTENCY: None = the keyspace's level; r/w > 0 = explicit counts.
    level: Level | None = None
    r: int = 0
    w: int = 0

    def read(self, key: bytes) -> Read:
        return Read(self.keyspace, key, self.level, self.r)

    def write(self, key: bytes, mutation: ops.Mutation) -> Mutate:
        return Mutate(self.keyspace, key, mutation, self.level, self.w)


class ServerView(Protocol):
    """What introspection commands need from the running server."""

    requirepass: str | None
    started_ms: int  # when this server process started (names default lock owners)

    def now_ms(self) -> int: ...

    def now_us(self) -> int: ...

    def info_sections(self, sections: list[str]) -> str: ...

    def client_list(self) -> list[Session]: ...

    def config_values(self) -> dict[str, str]: ...


@dataclass(slots=True)
class Call:
    """Core requests to run, and how to make the reply from their results."""

    requests: list[Request]
    finish: Callable[[list[object]], object]


@dataclass(slots=True)
class Close:
    """Answer ``reply``, then close the connection (QUIT)."""

    reply: object


Handler = Callable[[Session, list[bytes], ServerView], object]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    arity: int  # Redis convention: n exact, -n at least n (name included)
    flags: tuple[str, ...] = ()
    first_key: int = 1
    last_key: int = 1
    step: int = 1
    group: str = "string"
    summary: str = ""
    no_auth: bool = False


COMMANDS: dict[bytes, CommandSpec] = {}


def command(
    name: str,
    arity: int,
    *flags: str,
    keys: tuple[int, int, int] = (1, 1, 1),
    group: str = "string",
    summary: str = "",
    no_auth: bool = False,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name.lower().encode()] = CommandSpec(
            name.lower(), handler, arity, flags, *keys, group, summary, no_auth
        )
        return handler

    return register


def dispatch(session: Session, args: list[bytes], server: ServerView) -> object:
    """Run one command; returns a reply value, a ``Call`` or a ``Close``."""
    name = args[0].lower()
    spec = COMMANDS.get(name)
    if spec is None:
        return _unknown_command(args)
    session.last_command = spec.name
    if not session.authenticated and not spec.no_auth:
        return OpError(ErrorKind.INVALID, "Authentication required.", code="NOAUTH")
    arity = spec.arity
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return _wrong_args(spec.name)
    return spec.handler(session, args, server)


def _unknown_command(args: list[bytes]) -> OpError:
    """Redis's text: the arguments shown add up to about 128 bytes, each cut
    at a NUL as C's "%.*s" does; bytes that are not UTF-8 pass through as
    they came (surrogateescape, undone by the encoder)."""
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + arg.split(b"\0", 1)[0][: 128 - len(shown)] + b"' "
    name = args[0].split(b"\0", 1)[0][:128]
    text = b"unknown command '" + name + b"', with args beginning with: " + shown
    return invalid(text.decode("utf-8", "surrogateescape"))


def _wrong_args(name: str) -> OpError:
    return invalid(f"wrong number of arguments for '{name}' command")


SYNTAX_ERROR = invalid("syntax error")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
NOT_INTEGER = invalid("value is not an integer or out of range")


def _int_arg(raw: bytes) -> int | None:
    return ops.parse_int64(raw)


# -- results to replies ------------------------------------------------------


def _first(results: list[object]) -> object:
    return _plain(results[0])


def _plain(result: object) -> object:
    """A write's result as an lww keyspace answers it: a strong keyspace
    wraps it in ``Versioned(result, version)``."""
    return result.result if isinstance(result, Versioned) else result


def _live(result: ReadResult | RegisterValue) -> tuple[bytes, int] | None:
    """The value a read found and its expiry (0: none), whatever the mode:
    the newest sibling of an lww/causal read, the register of a strong one."""
    if isinstance(result, RegisterValue):
        return None if result.value is None else (result.value, result.expires_at_ms)
    newest = result.newest
    return None if newest is None else (newest.value, newest.expires_at_ms)


def _value_of(result: object) -> object:
    if isinstance(result, ReadResult | RegisterValue):
        live = _live(result)
        return live[0] if live is not None else None
    return _plain(result)


def _get_finish(results: list[object]) -> object:
    return _value_of(results[0])


def _ok_or_error(results: list[object]) -> object:
    for result in results:
        if isinstance(result, OpError):
            return result
    return OK


def _bool_int(results: list[object]) -> object:
    result = _plain(results[0])
    return result if isinstance(result, OpError) else int(bool(result))


def _call1(request: Request, finish: Callable[[list[object]], object] = _first) -> Call:
    return Call([request], finish)


# -- connection ----------------------------------------------------------------


@command("ping", -1, "fast", keys=(0, 0, 0), group="connection", summary="Ping the server")
def _ping(s: Session, args: list[bytes], server: ServerView) -> object:
    if len(args) > 2:
        return _wrong_args("ping")
    return args[1] if len(args) == 2 else SimpleString("PONG")


@command("echo", 2, "fast", keys=(0, 0, 0), group="connection", summary="Echo the argument")
def _echo(s: Session, args: list[bytes], server: ServerView) -> object:
    return args[1]


@command("quit", -1, "fast", keys=(0, 0, 0), group="connection", no_auth=True)
def _quit(s: Session, args: list[bytes], server: ServerView) -> object:
    return Close(OK)


def _check_password(
    user: bytes, password: bytes, server: ServerView, *, legacy: bool = False
) -> OpError | None:
    """Redis's ``default`` user: with no requirepass it is ``nopass`` (any
    password works), except that the one-argument AUTH form is refused."""
    if server.requirepass is None:
        if legacy:
            return invalid(
                "AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        if user == b"default":
            return None
    elif user == b"default" and hmac.compare_digest(password, server.requirepass.encode()):
        return None
    return OpError(
        ErrorKind.INVALID,
        "invalid username-password pair or user is disabled.",
        code="WRONGPASS",
    )


@command("auth", -2, "fast", keys=(0, 0, 0), group="connection", no_auth=True)
def _auth(s: Session, args: list[bytes], server: ServerView) -> object:
    if len(args) > 3:
        return SYNTAX_ERROR
    user, password = (b"default", args[1]) if len(args) == 2 else (args[1], args[2])
    error = _check_password(user, password, server, legacy=len(args) == 2)
    if error is not None:
        return error
    s.authenticated = True
    return OK


@command("hello", -1, "fast", keys=(0, 0, 0), group="connection", no_auth=True)
def _hello(s: Session, args: list[bytes], server: ServerView) -> object:
    proto = s.proto
    i = 1
    if len(args) > 1:
        version = _int_arg(args[1])
        if version is None:
            return invalid("Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return OpError(ErrorKind.INVALID, "unsupported protocol version", code="NOPROTO")
        proto = version
        i = 2
    name: bytes | None = None
    while i < len(args):
        option = args[i].lower()
        if option == b"auth" and i + 2 < len(args):
            error = _check_password(args[i + 1], args[i + 2], server)
            if error is not None:
                return error
            s.authenticated = True
            i += 3
        elif option == b"setname" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return invalid(
                f"Syntax error in HELLO option '{args[i].decode('utf-8', 'surrogateescape')}'"
            )
    if not s.authenticated:
        return OpError(
            ErrorKind.INVALID,
            "HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client "
            "and select the RESP protocol version at the same time",
            code="NOAUTH",
        )
    if name is not None:
        if _bad_client_name(name):
            return _BAD_NAME
        s.name = name
    s.proto = proto
    return RespMap(
        {
            "server": "redis",
            "version": VERSION_TEXT,
            "proto": proto,
            "id": s.id,
            "mode": "standalone",
            "role": "master",
            "modules": [],
        }
    )


@command("select", 2, "fast", keys=(0, 0, 0), group="connection")
def _select(s: Session, args: list[bytes], server: ServerView) -> object:
    db = _int_arg(args[1])
    if db is None:
        return NOT_INTEGER
    if not INT32_MIN <= db <= INT32_MAX:  # Redis reads the index as a C int
        return invalid(f"value is out of range, value must between {INT32_MIN} and {INT32_MAX}")
    if db != 0:
        return invalid("DB index is out of range")
    return OK


_BAD_NAME = invalid("Client names cannot contain spaces, newlines or special characters.")


def _bad_client_name(name: bytes) -> bool:
    return any(c < 33 or c > 126 for c in name)


def _subcommand_error(args: list[bytes], arities: dict[bytes, int]) -> OpError | None:
    """Redis 7's errors for container commands: an unknown subcommand, or the
    wrong number of arguments for ``container|sub`` (arity as in COMMANDS)."""
    container = args[0].decode("utf-8", "surrogateescape").lower()
    sub = args[1].lower()
    arity = arities.get(sub)
    if arity is None:
        shown = args[1][:128].decode("utf-8", "surrogateescape")
        return invalid(f"unknown subcommand '{shown}'. Try {container.upper()} HELP.")
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return _wrong_args(f"{container}|{sub.decode('utf-8', 'surrogateescape')}")
    return None


_CLIENT_ARITIES = {
    b"setname": 3, b"getname": 2, b"id": 2, b"setinfo": 4, b"info": 2, b"list": -2,
    b"no-evict": 3, b"no-touch": 3, b"help": 2,
}  # fmt: skip


@command("client", -2, keys=(0, 0, 0), group="connection", summary="Client connection commands")
def _client(s: Session, args: list[bytes], server: ServerView) -> object:
    error = _subcommand_error(args, _CLIENT_ARITIES)
    if error is not None:
        return error
    sub = args[1].lower()
    if sub == b"setname":
        if _bad_client_name(args[2]):
            return _BAD_NAME
        s.name = args[2]
        return OK
    if sub == b"getname":
        return s.name or None
    if sub == b"id":
        return s.id
    if sub == b"setinfo":
        attr = args[2].lower()
        if attr == b"lib-name":
            if _bad_client_name(args[3]):
                return invalid("lib-name cannot contain spaces, newlines or special characters.")
            s.lib_name = args[3]
        elif attr == b"lib-ver":
            if _bad_client_name(args[3]):
                return invalid("lib-ver cannot contain spaces, newlines or special characters.")
            s.lib_ver = args[3]
        else:
            return invalid(f"Unrecognized option '{args[2].decode('utf-8', 'surrogateescape')}'")
        return OK
    if sub == b"info":
        return Verbatim(_client_line(s, server.now_ms()) + "\n")
    if sub == b"list":
        sessions = _client_list_filter(args[2:], server.client_list())
        if isinstance(sessions, OpError):
            return sessions
        now = server.now_ms()
        return Verbatim("".join(_client_line(c, now) + "\n" for c in sessions))
    if sub == b"help":
        return [SimpleString(line) for line in _CLIENT_HELP]
    return OK  # NO-EVICT, NO-TOUCH: accepted, nothing to do


_CLIENT_HELP = (
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME", "    Return the name of the current connection.",
    "ID", "    Return the ID of the current connection.",
    "INFO", "    Return information about the current client connection.",
    "LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]",
    "    Return information about client connections.",
    "SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client meta attr.",
    "SETNAME <name>", "    Assign the name <name> to the current connection.",
    "HELP", "    Print this help.",
)  # fmt: skip


def _client_list_filter(options: list[bytes], sessions: list[Session]) -> list[Session] | OpError:
    """CLIENT LIST [TYPE type] [ID id ...]: every ringkv client is ``normal``."""
    if not options:
        return sessions
    option = options[0].lower()
    if option == b"type" and len(options) == 2:
        kind = options[1].lower()
        if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
            return invalid(f"Unknown client type '{options[1].decode('utf-8', 'surrogateescape')}'")
        return sessions if kind == b"normal" else []
    if option == b"id" and len(options) >= 2:
        ids = set()
        for raw in options[1:]:
            parsed = _int_arg(raw)
            if parsed is None or parsed <= 0:
                return invalid("Invalid client ID")
            ids.add(parsed)
        return [c for c in sessions if c.id in ids]
    return SYNTAX_ERROR


def _client_line(c: Session, now_ms: int) -> str:
    age = max(0, (now_ms - c.created_ms) // 1000)
    idle = max(0, (now_ms - c.last_active_ms) // 1000)
    return (
        f"id={c.id} addr={c.addr} laddr={c.laddr} fd=0 name={c.name.decode('utf-8', 'replace')} "
        f"age={age} idle={idle} flags=N db={c.db} sub=0 psub=0 ssub=0 multi=-1 qbuf=0 "
        f"qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r "
        f"cmd={c.last_command} user=default redir=-1 resp={c.proto} "
        f"lib-name={c.lib_name.decode('utf-8', 'replace')} "
        f"lib-ver={c.lib_ver.decode('utf-8', 'replace')} keyspace={c.keyspace}"
    )


# -- server -----------------------------------------------------------------------


@command("command", -1, keys=(0, 0, 0), group="server", summary="Command introspection")
def _command(s: Session, args: list[bytes], server: ServerView) -> object:
    if len(args) == 1:
        return [_command_info(spec) for spec in COMMANDS.values()]
    error = _subcommand_error(args, _COMMAND_ARITIES)
    if error is not None:
        return error
    sub = args[1].lower()
    if sub == b"count":
        return len(COMMANDS)
    if sub == b"info":
        names = args[2:] or list(COMMANDS)
        return [
            _command_info(COMMANDS[n.lower()]) if n.lower() in COMMANDS else None for n in names
        ]
    if sub == b"docs":
        names = args[2:] or list(COMMANDS)
        docs = RespMap()
        for raw in names:
            spec = COMMANDS.get(raw.lower())
            if spec is not None:
                docs[spec.name] = RespMap(
                    {"summary": spec.summary or spec.name, "since": "1.0.0", "group": spec.group}
                )
        return docs
    if sub == b"list":
        if len(args) > 2:
            return SYNTAX_ERROR  # FILTERBY is not supported
        return [spec.name for spec in COMMANDS.values()]
    return [
        SimpleString(line)
        for line in (
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)", "    Return details about all commands.",
            "COUNT", "    Return the total number of commands in this server.",
            "DOCS [<command-name> ...]", "    Return documentation details about commands.",
            "INFO [<command-name> ...]", "    Return details about commands.",
            "LIST", "    Return a list of all commands in this server.",
            "HELP", "    Print this help.",
        )
    ]  # fmt: skip


_COMMAND_ARITIES = {b"count": 2, b"docs": -2, b"info": -2, b"list": -2, b"help": 2}


def _command_info(spec: CommandSpec) -> list[object]:
    return [
        spec.name,
        spec.arity,
        [SimpleString(f) for f in spec.flags],
        spec.first_key,
        spec.last_key,
        spec.step,
        [],
        [],
        [],
        [],
    ]


@command("config", -2, keys=(0, 0, 0), group="server", summary="Read configuration")
def _config(s: Session, args: list[bytes], server: ServerView) -> object:
    error = _subcommand_error(args, _CONFIG_ARITIES)
    if error is not None:
        return error
    sub = args[1].lower()
    if sub == b"get":
        values = server.config_values()
        found = RespMap()
        for pattern in args[2:]:
            match = glob_matcher(pattern.lower()).fullmatch
            for name, value in values.items():
                if match(name.encode()):
                    found[name] = value
        return found
    if sub == b"set":
        return invalid("CONFIG SET is not supported: restart ringkv serve with the new setting")
    if sub == b"resetstat":
        return OK
    return [
        SimpleString(line)
        for line in (
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
            "RESETSTAT", "    Accepted; ringkv keeps its counters.",
            "HELP", "    Print this help.",
        )
    ]  # fmt: skip


_CONFIG_ARITIES = {b"get": -3, b"set": -4, b"resetstat": 2, b"help": 2}


@command("info", -1, keys=(0, 0, 0), group="server", summary="Server information")
def _info(s: Session, args: list[bytes], server: ServerView) -> object:
    sections = [a.decode("utf-8", "replace").lower() for a in args[1:]]
    return Verbatim(server.info_sections(sections))


@command("time", 1, "fast", keys=(0, 0, 0), group="server")
def _time(s: Session, args: list[bytes], server: ServerView) -> object:
    now_us = server.now_us()
    return [str(now_us // 1_000_000).encode(), str(now_us % 1_000_000).encode()]


@command("dbsize", 1, "fast", keys=(0, 0, 0), group="server")
def _dbsize(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(Count(s.keyspace))


def _flush(s: Session, args: list[bytes], everything: bool) -> object:
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"async", b"sync")):
        return SYNTAX_ERROR
    return _call1(Flush(None if everything else s.keyspace), _ok_or_error)


@command("flushdb", -1, "write", keys=(0, 0, 0), group="server")
def _flushdb(s: Session, args: list[bytes], server: ServerView) -> object:
    return _flush(s, args, everything=False)


@command("flushall", -1, "write", keys=(0, 0, 0), group="server")
def _flushall(s: Session, args: list[bytes], server: ServerView) -> object:
    return _flush(s, args, everything=True)


# -- keys -------------------------------------------------------------------------


@command("get", 2, "readonly", "fast")
def _get(s: Session, args: list[bytes], server: ServerView) -> object:
    return Call([s.read(args[1])], _get_finish)


def _parse_expiry(
    option: bytes, raw: bytes, now_ms: int, command_name: str
) -> ops.Expiry | OpError:
    amount = _int_arg(raw)
    if amount is None:
        return NOT_INTEGER
    unit = 1000 if option in (b"ex", b"exat") else 1
    bad = invalid(f"invalid expire time in '{command_name}' command")
    if amount <= 0 or amount > ops.INT64_MAX // unit:
        return bad
    ms = amount * unit
    if option in (b"ex", b"px"):
        if ms > ops.INT64_MAX - now_ms:
            return bad
        return ops.Expiry(ttl_ms=ms)
    return ops.Expiry(at_ms=ms)


_EXPIRY_OPTIONS = (b"ex", b"px", b"exat", b"pxat")


@command("set", -3, "write", summary="Set the string value of a key")
def _set(s: Session, args: list[bytes], server: ServerView) -> object:
    # As Redis's parseExtendedStringArgumentsOrReply: an option may repeat
    # (the last expiry wins) but never meet a conflicting one; the expiry is
    # checked only once every option has parsed.
    expiry_option: bytes | None = None
    expiry_raw = b""
    condition: ops.Condition | None = None
    keep_ttl = return_old = False
    i = 3
    while i < len(args):
        option = args[i].lower()
        if option == b"nx" and condition is not ops.Condition.XX:
            condition = ops.Condition.NX
        elif option == b"xx" and condition is not ops.Condition.NX:
            condition = ops.Condition.XX
        elif option == b"get":
            return_old = True
        elif option == b"keepttl" and expiry_option is None:
            keep_ttl = True
        elif (
            option in _EXPIRY_OPTIONS
            and i + 1 < len(args)
            and not keep_ttl
            and expiry_option in (None, option)
        ):
            expiry_option, expiry_raw = option, args[i + 1]
            i += 1
        else:
            return SYNTAX_ERROR
        i += 1
    expiry: ops.Expiry | None = None
    if expiry_option is not None:
        parsed = _parse_expiry(expiry_option, expiry_raw, server.now_ms(), "set")
        if isinstance(parsed, OpError):
            return parsed
        expiry = parsed
    put = ops.Put(args[2], expiry, keep_ttl, condition, return_old)
    finish = _first if return_old else _set_finish
    return Call([s.write(args[1], put)], finish)


def _set_finish(results: list[object]) -> object:
    result = _plain(results[0])
    if isinstance(result, OpError):
        return result
    return OK if result else None


@command("setnx", 3, "write", "fast")
def _setnx(s: Session, args: list[bytes], server: ServerView) -> object:
    put = ops.Put(args[2], condition=ops.Condition.NX)
    return _call1(s.write(args[1], put), _bool_int)


def _setex(s: Session, args: list[bytes], server: ServerView, option: bytes, name: str) -> object:
    expiry = _parse_expiry(option, args[2], server.now_ms(), name)
    if isinstance(expiry, OpError):
        return expiry
    put = ops.Put(args[3], expiry)
    return _call1(s.write(args[1], put), _set_finish)


@command("setex", 4, "write")
def _setex_cmd(s: Session, args: list[bytes], server: ServerView) -> object:
    return _setex(s, args, server, b"ex", "setex")


@command("psetex", 4, "write")
def _psetex(s: Session, args: list[bytes], server: ServerView) -> object:
    return _setex(s, args, server, b"px", "psetex")


@command("getset", 3, "write", "fast")
def _getset(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(s.write(args[1], ops.Put(args[2], return_old=True)))


@command("getdel", 2, "write", "fast")
def _getdel(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(s.write(args[1], ops.Remove(return_old=True)))


@command("getex", -2, "write", "fast")
def _getex(s: Session, args: list[bytes], server: ServerView) -> object:
    expiry_option: bytes | None = None
    expiry_raw = b""
    persist = False
    i = 2
    while i < len(args):
        option = args[i].lower()
        if (
            option in _EXPIRY_OPTIONS
            and i + 1 < len(args)
            and not persist
            and expiry_option in (None, option)
        ):
            expiry_option, expiry_raw = option, args[i + 1]
            i += 2
        elif option == b"persist" and expiry_option is None:
            persist = True
            i += 1
        else:
            return SYNTAX_ERROR
    expiry: ops.Expiry | None = None
    if expiry_option is not None:
        parsed = _parse_expiry(expiry_option, expiry_raw, server.now_ms(), "getex")
        if isinstance(parsed, OpError):
            # Redis looks the key up first: a missing key answers nil.
            return Call([s.read(args[1])], lambda results: _nil_or(results, parsed))
        expiry = parsed
    return _call1(s.write(args[1], ops.GetEx(expiry, persist)))


def _nil_or(results: list[object], error: OpError) -> object:
    value = _value_of(results[0])
    if value is None or isinstance(value, OpError):
        return value
    return error


@command("mget", -2, "readonly", "fast", keys=(1, -1, 1))
def _mget(s: Session, args: list[bytes], server: ServerView) -> object:
    return Call([s.read(key) for key in args[1:]], _mget_finish)


# Errors that mean "could not read", not "absent": a multi-key read answers
# the error rather than a nil that would pass for a missing key.
_READ_FAILURES = (ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT, ErrorKind.WRONG_LEVEL)


def _failed_read(results: list[object]) -> OpError | None:
    for result in results:
        if isinstance(result, OpError) and result.kind in _READ_FAILURES:
            return result
    return None


def _mget_finish(results: list[object]) -> object:
    failed = _failed_read(results)
    if failed is not None:
        return failed
    return [None if isinstance(r, OpError) else _value_of(r) for r in results]


@command("mset", -3, "write", keys=(1, -1, 2))
def _mset(s: Session, args: list[bytes], server: ServerView) -> object:
    if len(args) % 2 == 0:
        return _wrong_args("mset")
    items = tuple(zip(args[1::2], args[2::2], strict=True))
    return _call1(PutMany(s.keyspace, items), _ok_or_error)


@command("msetnx", -3, "write", keys=(1, -1, 2))
def _msetnx(s: Session, args: list[bytes], server: ServerView) -> object:
    if len(args) % 2 == 0:
        return _wrong_args("msetnx")
    items = tuple(zip(args[1::2], args[2::2], strict=True))
    return _call1(PutMany(s.keyspace, items, only_if_all_absent=True), _bool_int)


def _sum_truthy(results: list[object]) -> object:
    total = 0
    for result in results:
        if isinstance(result, OpError):
            return result
        total += 1 if _plain(result) else 0
    return total


@command("del", -2, "write", keys=(1, -1, 1))
def _del(s: Session, args: list[bytes], server: ServerView) -> object:
    return Call([s.write(key, ops.Remove()) for key in args[1:]], _sum_truthy)


@command("unlink", -2, "write", "fast", keys=(1, -1, 1))
def _unlink(s: Session, args: list[bytes], server: ServerView) -> object:
    return _del(s, args, server)


def _exists_finish(results: list[object]) -> object:
    failed = _failed_read(results)
    if failed is not None:
        return failed
    return sum(1 for r in results if isinstance(r, ReadResult | RegisterValue) and _live(r))


@command("exists", -2, "readonly", "fast", keys=(1, -1, 1))
def _exists(s: Session, args: list[bytes], server: ServerView) -> object:
    return Call([s.read(key) for key in args[1:]], _exists_finish)


@command("type", 2, "readonly", "fast", group="generic")
def _type(s: Session, args: list[bytes], server: ServerView) -> object:
    def finish(results: list[object]) -> object:
        result = results[0]
        if isinstance(result, OpError):
            return result
        present = isinstance(result, ReadResult | RegisterValue) and _live(result)
        return SimpleString("string" if present else "none")

    return Call([s.read(args[1])], finish)


def _expire(
    s: Session, args: list[bytes], server: ServerView, unit_ms: int, absolute: bool, name: str
) -> object:
    # As Redis's expireGenericCommand: options first, then the number.
    flags: set[bytes] = set()
    for raw in args[3:]:
        flag = raw.lower()
        if flag not in (b"nx", b"xx", b"gt", b"lt"):
            return invalid(f"Unsupported option {raw.decode('utf-8', 'surrogateescape')}")
        flags.add(flag)
    if b"nx" in flags and flags & {b"xx", b"gt", b"lt"}:
        return invalid("NX and XX, GT or LT options at the same time are not compatible")
    if b"gt" in flags and b"lt" in flags:
        return invalid("GT and LT options at the same time are not compatible")
    amount = _int_arg(args[2])
    if amount is None:
        return NOT_INTEGER
    conditions = frozenset(ops.ExpireCondition(flag.decode()) for flag in flags)
    bad = invalid(f"invalid expire time in '{name}' command")
    # C division truncates toward zero: LLONG_MIN / 1000 == -(2**63 // 1000).
    if amount > ops.INT64_MAX // unit_ms or amount < -(-ops.INT64_MIN // unit_ms):
        return bad
    ms = amount * unit_ms
    if not absolute:
        if ms > ops.INT64_MAX - server.now_ms():
            return bad
        expiry = ops.Expiry(ttl_ms=ms)
    else:
        expiry = ops.Expiry(at_ms=ms)
    return _call1(s.write(args[1], ops.Expire(expiry, conditions)), _bool_int)


@command("expire", -3, "write", "fast", group="generic")
def _expire_cmd(s: Session, args: list[bytes], server: ServerView) -> object:
    return _expire(s, args, server, 1000, False, "expire")


@command("pexpire", -3, "write", "fast", group="generic")
def _pexpire(s: Session, args: list[bytes], server: ServerView) -> object:
    return _expire(s, args, server, 1, False, "pexpire")


@command("expireat", -3, "write", "fast", group="generic")
def _expireat(s: Session, args: list[bytes], server: ServerView) -> object:
    return _expire(s, args, server, 1000, True, "expireat")


@command("pexpireat", -3, "write", "fast", group="generic")
def _pexpireat(s: Session, args: list[bytes], server: ServerView) -> object:
    return _expire(s, args, server, 1, True, "pexpireat")


@command("persist", 2, "write", "fast", group="generic")
def _persist(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(s.write(args[1], ops.Expire(None)), _bool_int)


def _ttl(s: Session, args: list[bytes], server: ServerView, unit_ms: int, absolute: bool) -> object:
    now = server.now_ms()

    def finish(results: list[object]) -> object:
        result = results[0]
        if isinstance(result, OpError):
            return result
        assert isinstance(result, ReadResult | RegisterValue)
        live = _live(result)
        if live is None:
            return -2
        expires_at_ms = live[1]
        if expires_at_ms == 0:
            return -1
        if absolute:
            return expires_at_ms // unit_ms
        remaining = max(0, expires_at_ms - now)
        return (remaining + 500) // 1000 if unit_ms == 1000 else remaining

    return Call([s.read(args[1])], finish)


@command("ttl", 2, "readonly", "fast", group="generic")
def _ttl_cmd(s: Session, args: list[bytes], server: ServerView) -> object:
    return _ttl(s, args, server, 1000, False)


@command("pttl", 2, "readonly", "fast", group="generic")
def _pttl(s: Session, args: list[bytes], server: ServerView) -> object:
    return _ttl(s, args, server, 1, False)


@command("expiretime", 2, "readonly", "fast", group="generic")
def _expiretime(s: Session, args: list[bytes], server: ServerView) -> object:
    return _ttl(s, args, server, 1000, True)


@command("pexpiretime", 2, "readonly", "fast", group="generic")
def _pexpiretime(s: Session, args: list[bytes], server: ServerView) -> object:
    return _ttl(s, args, server, 1, True)


def _incr(s: Session, key: bytes, delta: int) -> Call:
    return _call1(s.write(key, ops.IncrBy(delta)))


@command("incr", 2, "write", "fast")
def _incr_cmd(s: Session, args: list[bytes], server: ServerView) -> object:
    return _incr(s, args[1], 1)


@command("decr", 2, "write", "fast")
def _decr(s: Session, args: list[bytes], server: ServerView) -> object:
    return _incr(s, args[1], -1)


@command("incrby", 3, "write", "fast")
def _incrby(s: Session, args: list[bytes], server: ServerView) -> object:
    delta = _int_arg(args[2])
    return NOT_INTEGER if delta is None else _incr(s, args[1], delta)


@command("decrby", 3, "write", "fast")
def _decrby(s: Session, args: list[bytes], server: ServerView) -> object:
    delta = _int_arg(args[2])
    if delta is None:
        return NOT_INTEGER
    if delta == ops.INT64_MIN:
        return invalid("decrement would overflow")
    return _incr(s, args[1], -delta)


@command("incrbyfloat", 3, "write", "fast")
def _incrbyfloat(s: Session, args: list[bytes], server: ServerView) -> object:
    # The raw argument: the core reads it exactly as Redis's string2ld does
    # (long double precision; "inf" is a float whose sum is refused).
    return _call1(s.write(args[1], ops.IncrByFloat(args[2])))


@command("append", 3, "write")
def _append(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(s.write(args[1], ops.Append(args[2])))


@command("strlen", 2, "readonly", "fast")
def _strlen(s: Session, args: list[bytes], server: ServerView) -> object:
    def finish(results: list[object]) -> object:
        value = _value_of(results[0])
        return (
            value if isinstance(value, OpError) else len(value) if isinstance(value, bytes) else 0
        )

    return Call([s.read(args[1])], finish)


@command("getrange", 4, "readonly")
def _getrange(s: Session, args: list[bytes], server: ServerView) -> object:
    start, end = _int_arg(args[2]), _int_arg(args[3])
    if start is None or end is None:
        return NOT_INTEGER

    def finish(results: list[object]) -> object:
        value = _value_of(results[0])
        if isinstance(value, OpError):
            return value
        return _range(value if isinstance(value, bytes) else b"", start, end)

    return Call([s.read(args[1])], finish)


def _range(value: bytes, start: int, end: int) -> bytes:
    """Redis GETRANGE: inclusive, negative indexes count from the end."""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(0, n + start)
    if end < 0:
        end = max(0, n + end)
    end = min(end, n - 1)
    if start > end or n == 0:
        return b""
    return value[start : end + 1]


@command("setrange", 4, "write")
def _setrange(s: Session, args: list[bytes], server: ServerView) -> object:
    offset = _int_arg(args[2])
    if offset is None:
        return NOT_INTEGER
    if offset < 0:
        return invalid("offset is out of range")
    return _call1(s.write(args[1], ops.SetRange(offset, args[3])))


# -- iteration --------------------------------------------------------------------


@command("scan", -2, "readonly", keys=(0, 0, 0), group="generic")
def _scan(s: Session, args: list[bytes], server: ServerView) -> object:
    cursor = _parse_cursor(args[1])
    if cursor is None:
        return invalid("invalid cursor")
    count, pattern, type_name = 10, None, None
    i = 2
    while i < len(args):
        option = args[i].lower()
        if i + 1 >= len(args):
            return SYNTAX_ERROR
        if option == b"count":
            parsed = _int_arg(args[i + 1])
            if parsed is None:
                return NOT_INTEGER
            if parsed < 1:
                return SYNTAX_ERROR
            count = parsed
        elif option == b"match":
            pattern = args[i + 1]
        elif option == b"type":
            type_name = args[i + 1].lower()
        else:
            return SYNTAX_ERROR
        i += 2
    match = glob_matcher(pattern).fullmatch if pattern not in (None, b"*") else None

    def finish(results: list[object]) -> object:
        result = results[0]
        if isinstance(result, OpError):
            return result
        assert isinstance(result, ScanResult)
        keys = result.keys if type_name in (None, b"string") else []
        if match is not None:
            keys = [k for k in keys if match(k)]
        return [str(result.cursor).encode(), keys]

    return Call([Scan(s.keyspace, cursor, count)], finish)


def _parse_cursor(raw: bytes) -> int | None:
    if not raw.isdigit() or len(raw) > 20:
        return None
    value = int(raw)
    return value if value < 2**64 else None


@command("keys", 2, "readonly", keys=(0, 0, 0), group="generic")
def _keys(s: Session, args: list[bytes], server: ServerView) -> object:
    pattern = args[1]
    match = glob_matcher(pattern).fullmatch if pattern != b"*" else None
    return Call(
        [Scan(s.keyspace, 0, 0, unbounded=True)], lambda results: _keys_finish(results, match)
    )


def _keys_finish(results: list[object], match: Callable[[bytes], object] | None) -> object:
    result = results[0]
    if isinstance(result, OpError):
        return result
    assert isinstance(result, ScanResult)
    return [k for k in result.keys if match is None or match(k)]


@command("randomkey", 1, "readonly", keys=(0, 0, 0), group="generic")
def _randomkey(s: Session, args: list[bytes], server: ServerView) -> object:
    return _call1(RandomKey(s.keyspace))


def command_names() -> Iterable[str]:
    return (spec.name for spec in COMMANDS.values())


_ = Double  # exported for front ends that answer doubles


# -- ringkv extensions (DESIGN.md: RESP extensions) --------------------------------


def _no_keyspace(name: str) -> OpError:
    return OpError(
        ErrorKind.NOT_FOUND,
        f"no keyspace '{name}'; create it with `ringkv keyspace create {name} --mode causal` "
        f"or PUT /v1/keyspaces/{name}",
    )


@command(
    "ringkv.keyspace", -1, "fast", keys=(0, 0, 0), group="ringkv",
    summary="Use a keyspace on this connection (or show which)",
)  # fmt: skip
def _ringkv_keyspace(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.KEYSPACE [name]: use a keyspace on this connection (or show it)."""
    if len(args) == 1:
        return s.keyspace
    if len(args) != 2:
        return _wrong_args("ringkv.keyspace")
    name = args[1].decode("utf-8", "replace")

    def finish(results: list[object]) -> object:
        specs = results[0]
        if isinstance(specs, OpError):
            return specs
        assert isinstance(specs, list)
        for spec in specs:
            assert isinstance(spec, KeyspaceSpec)
            if spec.name == name:
                s.keyspace = name
                return OK
        return _no_keyspace(name)

    return Call([ListKeyspaces()], finish)


@command(
    "ringkv.consistency", -1, "fast", keys=(0, 0, 0), group="ringkv",
    summary="Set (or show) this connection's consistency level",
)  # fmt: skip
def _ringkv_consistency(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.CONSISTENCY [level [R n] [W n]]: the level of this connection's
    requests. ``linearizable`` is accepted only while the connection uses a
    strong keyspace (else WRONGLEVEL, saying how to create one); a strong
    keyspace reads at ``one``/``quorum``/``all`` without a Paxos round
    (possibly stale) and writes linearizably whatever the level."""
    if len(args) == 1:
        shown = s.level.value if s.level is not None else "default"
        return [shown, s.r, s.w]
    try:
        level = Level(args[1].decode("utf-8", "replace").lower())
    except ValueError:
        names = ", ".join(level.value for level in Level)
        return invalid(f"unknown consistency level; use one of {names}")
    r = w = 0
    i = 2
    while i < len(args):
        option = args[i].lower()
        count = _int_arg(args[i + 1]) if i + 1 < len(args) else None
        if option not in (b"r", b"w") or count is None or not 1 <= count <= 15:
            return SYNTAX_ERROR
        if option == b"r":
            r = count
        else:
            w = count
        i += 2
    if level is not Level.LINEARIZABLE:
        s.level, s.r, s.w = level, r, w
        return OK
    keyspace = s.keyspace

    def finish(results: list[object]) -> object:
        specs = results[0]
        if isinstance(specs, OpError):
            return specs
        assert isinstance(specs, list)
        spec = next((k for k in specs if isinstance(k, KeyspaceSpec) and k.name == keyspace), None)
        if spec is None or not spec.strong:
            return wrong_level("linearizable", spec, keyspace)
        s.level, s.r, s.w = level, r, w
        return OK

    return Call([ListKeyspaces()], finish)


def _read_versions(results: list[object]) -> ReadResult | OpError:
    result = results[0]
    if isinstance(result, OpError):
        return result
    assert isinstance(result, ReadResult)
    return result


@command(
    "ringkv.getv", 2, "readonly", group="ringkv",
    summary="Get a key's value, version and causal context",
)  # fmt: skip
def _ringkv_getv(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.GETV key -> [value, version, context]: in an lww/causal keyspace
    the newest sibling, its version as a bulk ``wall_ms.logical.node.counter``
    and the causal context; in a strong keyspace the register's value, its
    version as an integer (the one RINGKV.CAS ... VERSION compares; 0: never
    written) and a nil context (strong keys have none)."""

    def finish(results: list[object]) -> object:
        if isinstance(results[0], RegisterValue):
            register = results[0]
            return [register.value, register.version, None]
        read = _read_versions(results)
        if isinstance(read, OpError):
            return read
        newest = read.newest
        context = encode_context(read.context).encode()
        if newest is None:
            return [None, None, context]
        return [newest.value, version_tag(newest).encode(), context]

    return Call([s.read(args[1])], finish)


@command(
    "ringkv.siblings", 2, "readonly", group="ringkv",
    summary="Get every live sibling of a key and their causal context",
)  # fmt: skip
def _ringkv_siblings(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.SIBLINGS key -> [context, [value ...]] (every live sibling). A
    strong keyspace never has siblings: [nil, [value]] (or [nil, []])."""

    def finish(results: list[object]) -> object:
        if isinstance(results[0], RegisterValue):
            value = results[0].value
            return [None, [] if value is None else [value]]
        read = _read_versions(results)
        if isinstance(read, OpError):
            return read
        return [encode_context(read.context).encode(), [v.value for v in read.versions]]

    return Call([s.read(args[1])], finish)


@command(
    "ringkv.put", -3, "write", group="ringkv",
    summary="Write a value that supersedes what a causal context saw",
)  # fmt: skip
def _ringkv_put(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.PUT key value [CONTEXT ctx]: a write that supersedes what ctx saw."""
    context: dict[str, int] | None = None
    if len(args) == 5 and args[3].lower() == b"context":
        try:
            context = decode_context(args[4])
        except ValueError as exc:
            return invalid(f"{exc}: pass the context RINGKV.GETV or RINGKV.SIBLINGS returned")
    elif len(args) != 3:
        return SYNTAX_ERROR
    request = Mutate(s.keyspace, args[1], ops.Put(args[2]), s.level, s.w, context)
    return _call1(request, _set_finish)


# -- strong keyspaces: compare-and-set and locks (core/strong.py) ------------------


def _version_reply(results: list[object]) -> object:
    """A write's new version as an integer (RINGKV.CAS)."""
    result = results[0]
    if isinstance(result, Versioned):
        return result.version
    return result  # an OpError: MISMATCH, UNAVAILABLE, TIMEOUT, WRONGLEVEL, ...


@command(
    "ringkv.cas", -4, "write", group="ringkv",
    summary="Compare-and-set a key of a strong keyspace; replies the new version",
)  # fmt: skip
def _ringkv_cas(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.CAS key expected new | RINGKV.CAS key VERSION v new -> the new
    version (integer); ``-MISMATCH ...`` (certainly not written) when the
    value is not ``expected`` (absent never is) or the version is not ``v``
    (0: never written; a deleted key keeps counting, see RINGKV.GETV)."""
    if len(args) == 4:
        return _call1(Cas(s.keyspace, args[1], args[2], args[3]), _version_reply)
    if len(args) != 5 or args[2].lower() != b"version":
        return SYNTAX_ERROR
    version = _int_arg(args[3])
    if version is None or version < 0:
        return invalid("version must be an integer >= 0 (RINGKV.GETV tells a key's version)")
    return _call1(Cas(s.keyspace, args[1], None, args[4], version=version), _version_reply)


def _lock_options(options: list[bytes]) -> tuple[str | None, str] | OpError:
    """``[OWNER owner] [KEYSPACE name]`` of RINGKV.LOCK/UNLOCK: the owner
    given (None: not given) and the keyspace (``locks`` unless named)."""
    owner: str | None = None
    keyspace = LOCKS_KEYSPACE
    if len(options) % 2:
        return SYNTAX_ERROR
    for option, raw in zip(options[0::2], options[1::2], strict=True):
        if option.lower() == b"owner" and raw:
            owner = raw.decode("utf-8", "surrogateescape")
        elif option.lower() == b"keyspace":
            keyspace = raw.decode("utf-8", "replace")
        else:
            return SYNTAX_ERROR
    return owner, keyspace


def _default_lock_owner(s: Session, server: ServerView) -> str:
    """The owner of a lock taken without OWNER: this connection, named so that
    no other connection of any node or run can be mistaken for it (client
    ids restart at 1 in every server process)."""
    return f"conn:{s.laddr}:{server.started_ms}:{s.id}"


def _lock_finish(results: list[object]) -> object:
    result = results[0]
    return result.token if isinstance(result, LockGranted) else result


@command(
    "ringkv.lock", -3, "write", group="ringkv",
    summary="Take or renew a lock for ttl_ms; replies its fencing token",
)  # fmt: skip
def _ringkv_lock(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.LOCK name ttl_ms [OWNER owner] [KEYSPACE ks] -> the fencing token
    (an integer, larger than every token the lock had before). Held by
    another owner: ``-MISMATCH the lock is held by another owner``. The
    owner defaults to this connection; a client that renews or releases from
    other connections names one (OWNER, unique per holder). Taking a lock its
    owner holds renews it, with a new token."""
    ttl_ms = _int_arg(args[2])
    if ttl_ms is None or ttl_ms < 1:
        return invalid("ttl_ms must be a positive integer (milliseconds)")
    options = _lock_options(args[3:])
    if isinstance(options, OpError):
        return options
    owner, keyspace = options
    owner = owner if owner is not None else _default_lock_owner(s, server)
    return _call1(Lock(args[1], owner, ttl_ms, keyspace), _lock_finish)


def _unlock_finish(results: list[object]) -> object:
    result = results[0]
    return OK if isinstance(result, LockReleased) else result


@command(
    "ringkv.unlock", -3, "write", group="ringkv",
    summary="Release a lock taken with a fencing token",
)  # fmt: skip
def _ringkv_unlock(s: Session, args: list[bytes], server: ServerView) -> object:
    """RINGKV.UNLOCK name token [OWNER owner] [KEYSPACE ks] -> OK; ``-MISMATCH
    the lock is not held with this token`` when it is not (a later grant or
    renewal, or released already). The token alone names the grant; OWNER,
    when given, must match too."""
    token = _int_arg(args[2])
    if token is None or token < 1:
        return invalid("token must be a fencing token RINGKV.LOCK replied (an integer >= 1)")
    options = _lock_options(args[3:])
    if isinstance(options, OpError):
        return options
    owner, keyspace = options
    return _call1(Unlock(args[1], token, owner, keyspace), _unlock_finish)

"""HTTP API (aiohttp): keys as raw bodies, listing, health, metrics, OpenAPI.

Theory of operation. This is a front end like the RESP server and just as
thin (STYLE.md rule 20): each handler decodes its HTTP request into one core
request (``Read``, ``Mutate``, ``Cas``, ``Scan``, ``Count``), awaits
``NodeHost.call`` (which releases the reply only after the group commit) and
renders the result. An ``OpError`` becomes ``{"error": {"code", "message",
"definite"}}`` with the status of DESIGN.md's error table; the ``code`` is the
error kind (``invalid``, ``not_found``, ``too_large``, ``unavailable``,
``timeout``, ...) plus the HTTP-only ``unauthorized``, ``method_not_allowed``
and ``internal``.

One middleware wraps every route: it checks the bearer password, turns
aiohttp's 404/405 and any unexpected exception into that JSON error (logging
the exception, never sending a traceback) and records the request in the
metrics. A request body is read only after the password, the parameters and
the declared length have been checked; a body over ``max_value_bytes`` is
refused with 413 without being read, and a connection whose request body was
left unread is closed rather than drained (``lingering_time`` 0).

Keys: ``/v1/kv/{key}`` percent-decodes the rest of the path to the key's
bytes (UTF-8 text is expected; any byte may be percent-encoded), and
``/v1/kv?key_b64=`` takes URL-safe base64 for binary keys. Listing walks the
ring with core ``Scan`` steps; its cursor is a ring token (see core/ring.py).

Strong keyspaces (core/strong.py). A read answers ``RegisterValue``: the
value with ``ETag: "<version>"`` (an integer; a 404 carries it too, so that a
deleted key can be written back with If-Match) and ``X-Ringkv-Stale``. A
write answers ``Versioned``: 204 with the new version in ``ETag``. PUT and
DELETE with ``If-Match: "<version>"`` are a core ``Cas`` on the version;
``If-None-Match: *`` is SET NX and ``If-Match: *`` SET XX (in any keyspace
whose mode allows them). A precondition that fails is 412 ``mismatch``.
``?consistency=`` sets the level of any key request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ringkv import __version__
from ringkv.core import ops
from ringkv.core.config import DEFAULT_KEYSPACE, KeyspaceSpec, Level
from ringkv.core.errors import ErrorKind, OpError
from ringkv.core.node import (
    Cas,
    Count,
    CreateKeyspace,
    Inspect,
    ListKeyspaces,
    Mutate,
    Read,
    ReadResult,
    RegisterReport,
    RegisterValue,
    ReplicaReport,
    Request,
    Scan,
    ScanResult,
    Versioned,
)
from ringkv.core.paxos import AcceptorState
from ringkv.core.record import ConflictMode, Version
from ringkv.core.ring import TOKEN_MAX, key_token, ownership
from ringkv.frontend.context import decode_context, encode_context, version_tag
from ringkv.runtime.faults import (
    CLOCK_OFFSET_MS_MAX,
    DELAY_MS_MAX,
    ClockOffset,
    FaultError,
    fault_report,
    parse_fault,
)

if TYPE_CHECKING:
    from ringkv.runtime.server import Server

__all__ = ["create_app", "openapi_document"]

log = logging.getLogger("ringkv.http")

KV_PREFIX = "/v1/kv/"
FAULTS_PATH = "/v1/admin/faults"
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 10_000
# A listing request makes at most this many core Scan steps, each of at least
# SCAN_STEP_KEYS keys, and then answers what it has with a cursor: a sparse
# prefix costs the client more pages, never one unbounded request.
SCAN_STEPS_MAX = 64
SCAN_STEP_KEYS = 256
BODY_SLACK_BYTES = 64 * 1024  # client_max_size = max_value_bytes + this
BODY_CHUNK_BYTES = 64 * 1024
INT64_MAX = 2**63 - 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """A refusal decided by the HTTP layer (bad parameter, bad password, size)."""

    def __init__(self, status: int, code: str, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.definite = definite


def error_response(status: int, code: str, message: str, *, definite: bool = True) -> web.Response:
    body = {"error": {"code": code, "message": message, "definite": definite}}
    return web.json_response(body, status=status)


def _op_error_response(error: OpError) -> web.Response:
    return error_response(
        error.http_status, error.kind.value, error.message, definite=error.definite
    )


def _invalid(message: str) -> HttpError:
    return HttpError(400, "invalid", message)


def _too_large(what: str, size: int, limit: int, option: str) -> HttpError:
    return HttpError(413, "too_large", f"{what} is {size} bytes, over {option} ({limit})")


# -- decoding --------------------------------------------------------------


def _b64decode(text: str, name: str) -> bytes:
    """URL-safe base64, padding optional; the standard alphabet is accepted too."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{name} is not valid base64") from None


def _b64key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or not low <= int(raw) <= high:
        raise _invalid(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _context_header(request: web.Request) -> dict[str, int] | None:
    text = request.headers.get("X-Ringkv-Context")
    if text is None:
        return None
    try:
        return decode_context(text)
    except ValueError as exc:
        raise _invalid(f"X-Ringkv-Context: {exc}; send back the one a GET returned") from None


_LEVEL_NAMES = ", ".join(level.value for level in Level)


def _level(request: web.Request) -> Level | None:
    """``?consistency=``: the request's level (None: the keyspace's)."""
    raw = request.query.get("consistency")
    if raw is None:
        return None
    try:
        return Level(raw)
    except ValueError:
        raise _invalid(f"consistency must be one of {_LEVEL_NAMES}") from None


@dataclass(frozen=True, slots=True)
class _Precondition:
    """A write's HTTP precondition: ``If-Match: "<version>"`` (``version``),
    ``If-Match: *`` (``exists`` True) or ``If-None-Match: *`` (``exists`` False)."""

    version: int | None = None
    exists: bool | None = None


_IF_MATCH_HELP = (
    'If-Match takes one version of a strong keyspace\'s key, as its ETag gave it ("<integer>"), '
    "or *"
)


def _precondition(request: web.Request) -> _Precondition | None:
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    if if_match is not None and if_none_match is not None:
        raise _invalid("give If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise _invalid("If-None-Match takes only * on a write (write only if absent)")
        return _Precondition(exists=False)
    if if_match is None:
        return None
    text = if_match.strip()
    if text == "*":
        return _Precondition(exists=True)
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else ""
    if not inner.isascii() or not inner.isdigit() or len(inner) > 18:
        raise _invalid(_IF_MATCH_HELP)
    return _Precondition(version=int(inner))


async def _read_json(request: web.Request) -> dict[str, object]:
    raw = await _read_body(request, 64 * 1024)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _invalid("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object")
    return body


def _version_json(version: Version) -> dict[str, object]:
    return {
        **_text_or_b64(version.value),
        "hlc": [version.hlc.wall_ms, version.hlc.logical],
        "dvv": {"dot": [version.dot.node, version.dot.counter], "context": dict(version.context)},
        "expires_at_ms": version.expires_at_ms,
        "tombstone": version.tombstone,
    }


def _report_json(report: ReplicaReport) -> dict[str, object]:
    """DESIGN.md's operator JSON for GET /v1/kv/{key}?replicas=true."""
    return {
        "key": report.key.decode("utf-8", "backslashreplace"),
        "replicas": [
            {
                "node": node,
                "home": node in report.homes,
                "reachable": versions is not None,
                "versions": [_version_json(v) for v in versions or []],
            }
            for node, versions in report.replicas.items()
        ],
        "hints": [
            {"for": home, "versions": [_version_json(v) for v in versions]}
            for home, versions in report.hints.items()
        ],
    }


def _acceptor_json(node: str, acceptor: AcceptorState | None) -> dict[str, object]:
    """One home's acceptor row of a strong key, in the operator JSON's shape:
    ``versions`` holds the register state it accepted (none: nothing yet)."""
    row: dict[str, object] = {
        "node": node, "home": True, "reachable": acceptor is not None, "versions": [],
    }  # fmt: skip
    if acceptor is None:
        return row
    state = acceptor.state
    row["acceptor"] = {
        "promised": list(acceptor.promised),
        "accepted": list(acceptor.accepted),
        "version": state.version,
    }
    if state.version:
        value = _text_or_b64(state.value) if state.value is not None else {}
        row["versions"] = [
            {
                **value,
                "version": state.version,
                "expires_at_ms": state.expires_at_ms,
                "tombstone": state.value is None,
            }
        ]
    return row


def _register_report_json(report: RegisterReport) -> dict[str, object]:
    """``?replicas=true`` for a key of a strong keyspace: each home's acceptor."""
    return {
        "key": report.key.decode("utf-8", "backslashreplace"),
        "replicas": [_acceptor_json(node, state) for node, state in report.acceptors.items()],
        "hints": [],
    }


def _keyspace_json(spec: KeyspaceSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "mode": spec.mode.value,
        "n": spec.n_replicas,
        "level": spec.level.value,
    }


def _keyspace(request: web.Request) -> str:
    return request.query.get("keyspace", DEFAULT_KEYSPACE)


def _key(request: web.Request, max_key_bytes: int) -> bytes:
    """The key from the path (percent-decoded bytes) or from ``?key_b64=``."""
    raw_path = request.rel_url.raw_path
    in_path = raw_path.startswith(KV_PREFIX)
    b64 = request.query.get("key_b64")
    if in_path and b64 is not None:
        raise _invalid("give the key in the path or as key_b64, not both")
    if in_path:
        key = unquote_to_bytes(raw_path[len(KV_PREFIX) :])
    elif b64 is not None:
        key = _b64decode(b64, "key_b64")
    else:
        raise _invalid("key_b64 is required on /v1/kv (or use /v1/kv/{key})")
    if len(key) > max_key_bytes:
        raise _too_large("key", len(key), max_key_bytes, "max-key-bytes")
    return key


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` before or while reading it."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large("value", declared, limit, "max-value-bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(BODY_CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise HttpError(413, "too_large", f"value is over max-value-bytes ({limit})")
        chunks.append(chunk)
    return b"".join(chunks)


# -- encoding --------------------------------------------------------------


def _etag(version: Version) -> str:
    return f'"{version_tag(version)}"'


def _text_or_b64(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


def _value_response(read: ReadResult) -> web.Response:
    context = encode_context(read.context)
    if len(read.versions) > 1:
        siblings = [_text_or_b64(v.value) for v in read.versions]
        body = {"siblings": siblings, "context": context}
        return web.json_response(body, status=300, headers={"X-Ringkv-Context": context})
    version = read.versions[0]
    headers = {"ETag": _etag(version), "X-Ringkv-Context": context}
    if version.expires_at_ms:
        headers["X-Ringkv-Expires-At-Ms"] = str(version.expires_at_ms)
    return web.Response(
        body=version.value, content_type="application/octet-stream", headers=headers
    )


def _version_etag(version: int) -> str:
    return f'"{version}"'


def _register_response(register: RegisterValue) -> web.Response:
    """A strong key as read: 200 with the value, or 404; ETag the version."""
    headers = {"ETag": _version_etag(register.version), "X-Ringkv-Stale": _bool(register.stale)}
    if register.value is None:
        response = error_response(404, "not_found", "no such key")
        response.headers.update(headers)
        return response
    if register.expires_at_ms:
        headers["X-Ringkv-Expires-At-Ms"] = str(register.expires_at_ms)
    return web.Response(
        body=register.value, content_type="application/octet-stream", headers=headers
    )


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


def _written(result: object, not_done: OpError) -> web.Response:
    """A write's answer: 204 (with ``ETag: "<version>"`` in a strong keyspace),
    ``not_done`` when it did not apply (a precondition, or nothing to
    delete), or the core's error."""
    if isinstance(result, OpError):
        return _op_error_response(result)
    version = result.version if isinstance(result, Versioned) else None
    done = result.result if isinstance(result, Versioned) else result
    response = web.Response(status=204) if done else _op_error_response(not_done)
    if version is not None:
        response.headers["ETag"] = _version_etag(version)
    return response


def _mismatch(message: str) -> OpError:
    return OpError(ErrorKind.MISMATCH, message, code="MISMATCH")


_ABSENT = OpError(ErrorKind.NOT_FOUND, "no such key")


# -- listing ---------------------------------------------------------------


def _cut_page(matched: list[bytes], room: int) -> tuple[list[bytes], int | None]:
    """Keep ``room`` keys (more only where keys share a ring token, which a
    cursor cannot split); the cursor is the token of the first key left out."""
    if len(matched) <= room:
        return matched, None
    cut = room
    while cut < len(matched) and key_token(matched[cut]) == key_token(matched[cut - 1]):
        cut += 1
    return matched[:cut], (key_token(matched[cut]) if cut < len(matched) else None)


def _list_body(keys: list[bytes], cursor: int) -> dict[str, object]:
    texts: list[str] = []
    binary: list[str] = []
    for key in keys:
        try:
            texts.append(key.decode("utf-8"))
        except UnicodeDecodeError:
            binary.append(_b64key(key))
    return {"keys": texts, "keys_b64": binary, "cursor": str(cursor) if cursor else None}


# -- the API ---------------------------------------------------------------


class _Api:
    """The route handlers; each decodes, makes one or a few core calls, renders."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.settings = server.settings

    async def call(self, request: Request) -> object:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await self.server.host.call(request)
        except TimeoutError:
            raise HttpError(
                504, "timeout", "no answer in time; the outcome is unknown", definite=False
            ) from None

    async def get_key(self, request: web.Request) -> web.Response:
        key = _key(request, self.settings.max_key_bytes)
        keyspace, level = _keyspace(request), _level(request)
        if request.query.get("replicas") in ("true", "1"):
            report = await self.call(Inspect(keyspace, key))
            if isinstance(report, OpError):
                return _op_error_response(report)
            if isinstance(report, RegisterReport):
                return web.json_response(_register_report_json(report))
            assert isinstance(report, ReplicaReport)
            return web.json_response(_report_json(report))
        result = await self.call(Read(keyspace, key, level))
        if isinstance(result, OpError):
            return _op_error_response(result)
        if isinstance(result, RegisterValue):
            return _register_response(result)
        assert isinstance(result, ReadResult)
        if not result.versions:
            return error_response(404, "not_found", "no such key")
        return _value_response(result)

    async def put_key(self, request: web.Request) -> web.Response:
        key = _key(request, self.settings.max_key_bytes)
        ttl_high = INT64_MAX - self.server.now_ms()
        ttl_ms = _int_param(request, "ttl_ms", 0, 1, ttl_high)  # 0: absent, no expiry
        keyspace, level = _keyspace(request), _level(request)
        precondition = _precondition(request)
        context = _context_header(request)
        version = precondition.version if precondition is not None else None
        if version is not None and (ttl_ms or context is not None):
            raise _invalid(
                "If-Match with a version is a compare-and-set: it takes no ttl_ms and no "
                "X-Ringkv-Context"
            )
        value = await _read_body(request, self.settings.max_value_bytes)
        if version is not None:
            return _written(await self.call(Cas(keyspace, key, None, value, version)), _ABSENT)
        expiry = ops.Expiry(ttl_ms=ttl_ms) if ttl_ms else None
        condition: ops.Condition | None = None
        not_done = _ABSENT  # an unconditional PUT always writes
        if precondition is not None and precondition.exists:
            condition, not_done = (
                ops.Condition.XX,
                _mismatch("the key does not exist (If-Match: *)"),
            )
        elif precondition is not None:
            condition, not_done = ops.Condition.NX, _mismatch("the key exists (If-None-Match: *)")
        put = ops.Put(value, expiry=expiry, condition=condition)
        result = await self.call(Mutate(keyspace, key, put, level, context=context))
        return _written(result, not_done)

    async def delete_key(self, request: web.Request) -> web.Response:
        """DELETE: 204, or 404 when there was nothing to delete; with
        ``If-Match: "<version>"`` a compare-and-set to absent, with
        ``If-Match: *`` 412 instead of 404."""
        key = _key(request, self.settings.max_key_bytes)
        keyspace, level = _keyspace(request), _level(request)
        precondition = _precondition(request)
        if precondition is None:
            result = await self.call(Mutate(keyspace, key, ops.Remove(), level))
            return _written(result, _ABSENT)
        if precondition.version is not None:
            cas = Cas(keyspace, key, None, None, precondition.version)
            return _written(await self.call(cas), _ABSENT)
        if not precondition.exists:
            raise _invalid("If-None-Match: * would delete only a key that does not exist")
        result = await self.call(Mutate(keyspace, key, ops.Remove(), level))
        return _written(result, _mismatch("the key does not exist (If-Match: *)"))

    async def cluster(self, request: web.Request) -> web.Response:
        """DESIGN.md's operator JSON: ring epoch, members as this node sees them."""
        node = self.server.node
        shares = ownership(node.ring)
        me = node.config.node_id
        rows: list[dict[str, object]]
        if node.membership is not None:
            members = node.membership.members()
            rows = [
                {"id": m.node_id, "addr": m.addr, "state": m.state.value,
                 "incarnation": m.incarnation, "zone": m.zone, "weight": m.weight}
                for m in members
            ]  # fmt: skip
        else:
            rows = [
                {"id": me, "addr": "", "state": "alive", "incarnation": 0, "zone": "", "weight": 1}
            ]
        for row in rows:
            local = row["id"] == me
            row["keys"] = sum(node.count_keys(ks) for ks in node.keyspaces) if local else None
            row["hints_pending"] = node.hints_pending() if local else None
            row["ring_share"] = round(shares.get(str(row["id"]), 0.0), 6)
        return web.json_response({
            "ring_epoch": node.ring.epoch,
            "node": me,
            "members": rows,
            "transfers": [],
            "keyspaces": [_keyspace_json(spec) for spec in node.keyspaces.values()],
        })  # fmt: skip

    async def list_keyspaces(self, request: web.Request) -> web.Response:
        result = await self.call(ListKeyspaces())
        if isinstance(result, OpError):
            return _op_error_response(result)
        assert isinstance(result, list)
        return web.json_response({"keyspaces": [_keyspace_json(spec) for spec in result]})

    async def put_keyspace(self, request: web.Request) -> web.Response:
        """Create a keyspace: 201 when created, 200 when it exists as asked."""
        name = request.match_info["name"]
        body = await _read_json(request)
        try:
            mode = ConflictMode(body.get("mode", "lww"))
            # A strong keyspace reads linearizably unless asked otherwise
            # (core/config.py: stale reads by default must be chosen).
            default_level = "linearizable" if mode is ConflictMode.STRONG else "quorum"
            spec = KeyspaceSpec(
                name=name,
                mode=mode,
                n_replicas=int(str(body.get("n", 3))),
                level=Level(body.get("level", default_level)),
            )
        except (ValueError, TypeError) as exc:
            raise _invalid(
                f"bad keyspace definition ({exc}): mode lww|causal|strong, n an integer, "
                f"level {'|'.join(level.value for level in Level)}"
            ) from None
        result = await self.call(CreateKeyspace(spec))
        if isinstance(result, OpError):
            return _op_error_response(result)
        return web.json_response(_keyspace_json(spec), status=201 if result else 200)

    async def get_collection(self, request: web.Request) -> web.Response:
        """``GET /v1/kv``: one key with ``?key_b64=``, else a page of keys."""
        if "key_b64" not in request.query:
            return await self.list_keys(request)
        if {"prefix", "prefix_b64", "limit", "cursor"} & request.query.keys():
            raise _invalid("key_b64 reads one key; prefix, limit and cursor are for listing")
        return await self.get_key(request)

    async def list_keys(self, request: web.Request) -> web.Response:
        query = request.query
        if "prefix" in query and "prefix_b64" in query:
            raise _invalid("give prefix or prefix_b64, not both")
        prefix = (
            _b64decode(query["prefix_b64"], "prefix_b64")
            if "prefix_b64" in query
            else query.get("prefix", "").encode("utf-8", "surrogatepass")
        )
        limit = _int_param(request, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
        cursor = _int_param(request, "cursor", 0, 0, TOKEN_MAX)
        keyspace = _keyspace(request)
        keys: list[bytes] = []
        for _ in range(SCAN_STEPS_MAX):
            room = limit - len(keys)
            result = await self.call(Scan(keyspace, cursor, max(room, SCAN_STEP_KEYS)))
            if isinstance(result, OpError):
                return _op_error_response(result)
            assert isinstance(result, ScanResult)
            matched = [k for k in result.keys if k.startswith(prefix)]
            page, cut_at = _cut_page(matched, room)
            keys.extend(page)
            cursor = cut_at if cut_at is not None else result.cursor
            if cut_at is not None or cursor == 0 or len(keys) >= limit:
                break
        return web.json_response(_list_body(keys, cursor))

    async def _key_counts(self) -> dict[str, int] | OpError:
        counts: dict[str, int] = {}
        for keyspace in list(self.server.node.keyspaces):
            result = await self.call(Count(keyspace))
            if isinstance(result, OpError):
                return result
            assert isinstance(result, int)
            counts[keyspace] = result
        return counts

    async def health(self, request: web.Request) -> web.Response:
        counts = await self._key_counts()
        if isinstance(counts, OpError):
            return _op_error_response(counts)
        body = {
            "status": "ok",
            "node": self.settings.node_id,
            "keys": sum(counts.values()),
            "resp_port": self.server.resp_port,  # how `ringkv --url` finds the RESP port
        }
        return web.json_response(body)

    async def info(self, request: web.Request) -> web.Response:
        from ringkv.runtime.server import rss_bytes

        counts = await self._key_counts()
        if isinstance(counts, OpError):
            return _op_error_response(counts)
        server, s = self.server, self.settings
        body = {
            "node_id": s.node_id,
            "version": __version__,
            "engine": server.engine.name,
            "fsync": server.engine.fsync.value,
            "keys": sum(counts.values()),
            "keyspaces": counts,
            "memory": {
                "data_bytes": server.engine.memory_bytes(),
                "rss_bytes": rss_bytes(),
                "maxmemory_bytes": s.maxmemory,
            },
            "limits": {"max_key_bytes": s.max_key_bytes, "max_value_bytes": s.max_value_bytes},
            "ports": {"resp": server.resp_port, "http": server.http_port},
            "uptime_s": (server.now_ms() - server.started_ms) // 1000,
        }
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        text = generate_latest(self.server.metrics.registry())
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        document = openapi_document(faults=self.settings.faults)
        return web.json_response(document, dumps=lambda d: json.dumps(d, indent=1))

    # -- fault injection (only with `serve --faults`; runtime/faults.py) ------

    def _fault_report(self) -> web.Response:
        server = self.server
        transport = server.transport
        counters = transport.counters if transport is not None else {}
        report = fault_report(server.link_faults, server.host.clock_offset_ms, counters)
        return web.json_response(report)

    async def get_faults(self, request: web.Request) -> web.Response:
        return self._fault_report()

    async def post_faults(self, request: web.Request) -> web.Response:
        """Add one fault: ``{"link": {...}}`` or ``{"clock_offset_ms": N}``."""
        server = self.server
        body = await _read_json(request)
        membership = server.node.membership
        peers = {m.node_id for m in membership.members()} if membership is not None else set()
        # A node back from a restart knows its ring before it hears the members.
        peers.update(m.node_id for m in server.node.ring.members)
        try:
            fault = parse_fault(body, self_id=self.settings.node_id, peers=peers)
        except FaultError as exc:
            raise _invalid(str(exc)) from None
        if isinstance(fault, ClockOffset):
            server.host.clock_offset_ms = fault.offset_ms
            log.info("fault injected: clock offset %+d ms", fault.offset_ms)
        elif server.transport is None:
            raise _invalid("this node has no peer transport (no cluster secret): no links")
        else:
            server.transport.set_link_fault(fault)
            log.info("fault injected: %s", json.dumps(fault.to_json()))
        return self._fault_report()

    async def delete_faults(self, request: web.Request) -> web.Response:
        """Clear every link fault and the clock offset."""
        server = self.server
        if server.transport is not None:
            server.transport.clear_link_faults()
        server.host.clock_offset_ms = 0
        log.info("faults cleared")
        return self._fault_report()


# -- middleware --------------------------------------------------------------


def _route_label(request: web.Request) -> str:
    """``METHOD /path/{template}`` of the matched route, or ``unmatched``."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical}" if resource is not None else "unmatched"


def _authorized(request: web.Request, password: str) -> bool:
    sent = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
    return hmac.compare_digest(sent, f"Bearer {password}".encode())


def _http_exception_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        return error_response(404, "not_found", f"no route for {request.path!r}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error_response(
            405, "method_not_allowed", f"{exc.method} is not allowed here; use {allowed}"
        )
        response.headers["Allow"] = allowed
        return response
    code = "too_large" if exc.status == 413 else "invalid" if exc.status < 500 else "internal"
    return error_response(exc.status, code, exc.reason)


def _guard(server: Server) -> Any:
    password = server.settings.requirepass

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            if password and request.path != "/health" and not _authorized(request, password):
                raise HttpError(401, "unauthorized", "send Authorization: Bearer <password>")
            response = await handler(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.code, exc.message, definite=exc.definite)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="ringkv"'
        except web.HTTPException as exc:
            response = _http_exception_response(request, exc)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = error_response(
                500, "internal", "internal error; see the server log", definite=False
            )
        if request.body_exists and not request.content.is_eof():
            response.force_close()  # the unread body is not drained (lingering_time 0)
        ok = response.status < 400 or (
            response.status == 404 and request.match_info.route.resource is not None
        )
        server.metrics.observe("http", _route_label(request), ok, time.perf_counter() - started)
        return response

    return guard


def _expect_continue(server: Server) -> Callable[[web.Request], Awaitable[web.Response | None]]:
    """``Expect: 100-continue``: invite the body only when it will be read.

    Without the invitation the handler refuses (401, 413) before any body
    arrives; this runs before the middleware, so it answers JSON itself."""
    s = server.settings

    async def expect(request: web.Request) -> web.Response | None:
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            return error_response(417, "invalid", f"unsupported Expect: {expect!r}")
        declared = request.content_length
        refused = (declared is not None and declared > s.max_value_bytes) or (
            s.requirepass and not _authorized(request, s.requirepass)
        )
        if not refused and request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    return expect


def create_app(server: Server) -> web.Application:
    s = server.settings
    app = web.Application(
        middlewares=[_guard(server)],
        client_max_size=s.max_value_bytes + BODY_SLACK_BYTES,
        handler_args={
            "lingering_time": 0,
            # A key of max_key_bytes, each byte percent-encoded, fits the request line.
            "max_line_size": 3 * s.max_key_bytes + 8192,
        },
    )
    api = _Api(server)
    routes = app.router
    routes.add_get("/v1/kv/{key:.+}", api.get_key, allow_head=False)
    expect = _expect_continue(server)
    routes.add_put("/v1/kv/{key:.+}", api.put_key, expect_handler=expect)
    routes.add_delete("/v1/kv/{key:.+}", api.delete_key)
    routes.add_get("/v1/kv", api.get_collection, allow_head=False)
    routes.add_put("/v1/kv", api.put_key, expect_handler=expect)
    routes.add_delete("/v1/kv", api.delete_key)
    routes.add_get("/v1/cluster", api.cluster, allow_head=False)
    routes.add_get("/v1/keyspaces", api.list_keyspaces, allow_head=False)
    routes.add_put("/v1/keyspaces/{name}", api.put_keyspace)
    routes.add_get("/v1/info", api.info, allow_head=False)
    routes.add_get("/health", api.health, allow_head=False)
    routes.add_get("/metrics", api.metrics, allow_head=False)
    routes.add_get("/openapi.json", api.openapi, allow_head=False)
    if s.faults:  # without --faults the route does not exist (404)
        routes.add_get(FAULTS_PATH, api.get_faults, allow_head=False)
        routes.add_post(FAULTS_PATH, api.post_faults)
        routes.add_delete(FAULTS_PATH, api.delete_faults)
    return app


# -- OpenAPI -------------------------------------------------------------------
# Plain data, written by hand next to the handlers it describes; a test checks
# that every route of the router is here and that the document validates.

JsonObject = dict[str, Any]

_ERROR_TEXT = {
    400: "`invalid`: a bad parameter (ttl_ms, key_b64, prefix_b64, limit, cursor) or header, "
    "or a body that does not validate",
    401: "`unauthorized`: a password is set and `Authorization: Bearer <password>` is "
    "missing or wrong",
    404: "`not_found`: no such key, or no such keyspace (in a strong keyspace the answer "
    'still carries `ETag: "<version>"`, usable in If-Match)',
    409: "`wrong_level`: the operation needs another keyspace mode: If-Match with a version, "
    "`consistency=linearizable`, or a read-modify-write (If-None-Match: *, If-Match: *) on a "
    "replicated lww/causal keyspace; create a strong one with PUT /v1/keyspaces/{name} "
    '`{"mode": "strong"}`',
    412: "`mismatch`: the precondition (If-Match, If-None-Match) did not hold; certainly "
    "nothing was written",
    413: "`too_large`: the key is over max-key-bytes or the value over max-value-bytes "
    "(refused before the body is read when Content-Length says so)",
    500: "`internal`: an unexpected failure, logged by the server (never a traceback)",
    503: "`unavailable`: refused, certainly without effect (`definite` true): storage failing, "
    "or, in a strong keyspace, fewer than a majority of the key's home replicas reachable",
    504: "`timeout`: no answer in time; the outcome is unknown (`definite` false)",
    507: "`out_of_memory`: the memory engine cannot make room (maxmemory)",
}
_KEY_ERRORS = (400, 401, 404, 409, 413, 500, 503, 504)


def _ref(kind: str, name: str) -> JsonObject:
    return {"$ref": f"#/components/{kind}/{name}"}


def _errors(*statuses: int) -> JsonObject:
    return {str(status): _ref("responses", f"E{status}") for status in statuses}


def _json(schema: str, description: str) -> JsonObject:
    content = {"application/json": {"schema": _ref("schemas", schema)}}
    return {"description": description, "content": content}


def _param(name: str, where: str, description: str, **schema: object) -> JsonObject:
    spec = {"name": name, "in": where, "description": description}
    return {**spec, "required": where == "path", "schema": {"type": "string", **schema}}


_PARAMETERS: JsonObject = {
    "key": _param(
        "key", "path", "The key: the rest of the path, percent-decoded to bytes (UTF-8 text "
        "expected; `/` allowed). Use `/v1/kv?key_b64=` for binary keys.",
    ),
    "key_b64": {
        **_param("key_b64", "query", "The key as URL-safe base64 (padding optional)."),
        "required": True,
    },
    "keyspace": _param("keyspace", "query", "Keyspace name.", default=DEFAULT_KEYSPACE),
    "ttl_ms": _param(
        "ttl_ms", "query", "Expire the key this many milliseconds after the write.",
        type="integer", minimum=1, maximum=INT64_MAX,
    ),
    "consistency": {
        **_param(
            "consistency", "query", "The level of this request (default: the keyspace's). "
            "`linearizable` needs a strong keyspace (a Paxos round); a strong keyspace read at "
            "another level is possibly stale (`X-Ringkv-Stale: true`), and its writes are "
            "linearizable whatever the level.",
        ),
        "schema": {"enum": ["one", "quorum", "all", "local_quorum", "linearizable"]},
    },
    "if_match": _param(
        "If-Match", "header", 'Compare-and-set: `"<version>"` (the ETag of a strong '
        "keyspace's key; `\"0\"`: never written) writes only if the key is at that version, "
        "else 412; `*` writes only if the key exists.",
    ),
    "if_none_match": _param(
        "If-None-Match", "header", "`*`: write only if the key is absent, else 412.",
        enum=["*"],
    ),
    "prefix": _param("prefix", "query", "List only keys starting with this UTF-8 text."),
    "prefix_b64": _param(
        "prefix_b64", "query", "List only keys starting with these bytes (URL-safe base64)."
    ),
    "limit": _param(
        "limit", "query", "Most keys in one page (more only where keys share a ring token).",
        type="integer", minimum=1, maximum=LIST_LIMIT_MAX, default=LIST_LIMIT_DEFAULT,
    ),
    "cursor": _param(
        "cursor", "query", "Where to resume: the `cursor` of the previous page (a ring token).",
        pattern="^[0-9]{1,20}$",
    ),
}  # fmt: skip

_STRING: JsonObject = {"type": "string"}
_INTEGER: JsonObject = {"type": "integer"}
_INTEGERS: JsonObject = {"type": "object", "additionalProperties": _INTEGER}
_BYTES: JsonObject = {"application/octet-stream": {"schema": {**_STRING, "format": "binary"}}}

_SCHEMAS: JsonObject = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "definite"],
                "properties": {
                    "code": {**_STRING, "examples": ["invalid", "not_found", "too_large"]},
                    "message": _STRING,
                    "definite": {
                        "type": "boolean",
                        "description": "true only when the request certainly had no effect",
                    },
                },
            }
        },
    },
    "Siblings": {
        "type": "object",
        "required": ["siblings", "context"],
        "properties": {
            "siblings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["value", "encoding"],
                    "properties": {
                        "value": {**_STRING, "description": "UTF-8 text, else standard base64"},
                        "encoding": {"enum": ["utf-8", "base64"]},
                    },
                },
            },
            "context": {**_STRING, "description": "as in X-Ringkv-Context"},
        },
    },
    "KeyPage": {
        "type": "object",
        "required": ["keys", "keys_b64", "cursor"],
        "properties": {
            "keys": {"type": "array", "items": _STRING, "description": "keys that are UTF-8"},
            "keys_b64": {
                "type": "array",
                "items": _STRING,
                "description": "keys that are not UTF-8, as URL-safe base64 (usable as key_b64)",
            },
            "cursor": {
                "type": ["string", "null"],
                "description": "pass as `cursor` for the next page; null when the walk is done",
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "node", "keys", "resp_port"],
        "properties": {
            "status": {"const": "ok"},
            "node": _STRING,
            "keys": _INTEGER,
            "resp_port": _INTEGER,
        },
    },
    "Replicas": {
        "type": "object",
        "required": ["key", "replicas", "hints"],
        "properties": {
            "key": _STRING,
            "replicas": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "node": _STRING,
                        "home": {"type": "boolean"},
                        "reachable": {"type": "boolean"},
                        "versions": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
            "hints": {"type": "array", "items": {"type": "object"}},
        },
    },
    "KeyspaceDefinition": {
        "type": "object",
        "properties": {
            "mode": {
                "enum": ["lww", "causal", "strong"],
                "default": "lww",
                "description": "lww: the newest write wins; causal: concurrent writes kept as "
                "siblings; strong: every key a linearizable register (CASPaxos), writable only "
                "where a majority of its home replicas is reachable",
            },
            "n": {"type": "integer", "minimum": 1, "maximum": 15, "default": 3},
            "level": {
                "enum": ["one", "quorum", "all", "local_quorum", "linearizable"],
                "description": "the default level of requests: quorum, or linearizable for a "
                "strong keyspace (linearizable needs mode strong)",
            },
        },
    },
    "Keyspace": {
        "type": "object",
        "required": ["name", "mode", "n", "level"],
        "properties": {
            "name": _STRING,
            "mode": {"enum": ["lww", "causal", "strong"]},
            "n": _INTEGER,
            "level": _STRING,
        },
    },
    "Keyspaces": {
        "type": "object",
        "properties": {
            "keyspaces": {"type": "array", "items": {"$ref": "#/components/schemas/Keyspace"}}
        },
    },
    "Info": {
        "type": "object",
        "properties": {
            "node_id": _STRING,
            "version": _STRING,
            "engine": {"enum": ["memory", "lmdb"]},
            "fsync": {"enum": ["always", "batch", "never"]},
            "keys": _INTEGER,
            "keyspaces": _INTEGERS,
            "memory": {
                "type": "object",
                "properties": {
                    "data_bytes": _INTEGER,
                    "rss_bytes": _INTEGER,
                    "maxmemory_bytes": _INTEGER,
                },
            },
            "limits": _INTEGERS,
            "ports": _INTEGERS,
            "uptime_s": _INTEGER,
        },
    },
}

_VALUE_HEADERS: JsonObject = {
    "ETag": {
        "description": 'the version: "wall_ms.logical.node.counter" in lww/causal keyspaces, '
        '"<integer>" in strong ones (the one If-Match compares)',
        "schema": _STRING,
    },
    "X-Ringkv-Stale": {
        "description": "strong keyspaces only: true when read without a Paxos round (level "
        "one/quorum/all), so possibly not the latest committed value",
        "schema": {"enum": ["true", "false"]},
    },
    "X-Ringkv-Context": {
        "description": "causal context: URL-safe base64 of msgpack [node, counter, ...]",
        "schema": _STRING,
    },
    "X-Ringkv-Expires-At-Ms": {
        "description": "expiry in Unix milliseconds (only when the key has a TTL)",
        "schema": _INTEGER,
    },
}
_SIBLINGS = _json("Siblings", "Several live siblings (causal keyspaces) and their context.")


_WRITTEN_HEADERS: JsonObject = {
    "ETag": {
        "description": 'strong keyspaces only: the key\'s new version, "<integer>"',
        "schema": _STRING,
    }
}


def _kv_operations(key: JsonObject, suffix: str, id_suffix: str) -> JsonObject:
    """GET/PUT/DELETE of one key, the key in the path or in ``key_b64``."""
    params = [key, _ref("parameters", "keyspace"), _ref("parameters", "consistency")]
    conditions = [_ref("parameters", "if_match"), _ref("parameters", "if_none_match")]
    value = {"description": "The value (one live version), raw.", "headers": _VALUE_HEADERS}
    return {
        "get": {
            "summary": f"Read a key{suffix}; with replicas=true, every home replica's copy",
            "operationId": f"getKey{id_suffix}",
            "parameters": [
                *params,
                {
                    "name": "replicas",
                    "in": "query",
                    "description": "true: answer the operator JSON of every home replica's "
                    "stored versions (value, hlc, dvv, expiry, tombstone) and the hints "
                    "this node holds for the key, instead of the value",
                    "schema": {"enum": ["true", "false", "1", "0"]},
                },
            ],
            "responses": {
                "200": {
                    **value,
                    "content": {
                        **_BYTES,
                        "application/json": {"schema": _ref("schemas", "Replicas")},
                    },
                },
                "300": _SIBLINGS,
                **_errors(*_KEY_ERRORS),
            },
        },
        "put": {
            "summary": f"Write a key{suffix}; the raw body is the value",
            "operationId": f"putKey{id_suffix}",
            "description": 'With `If-Match: "<version>"` a compare-and-set on the version '
            "(strong keyspaces; no ttl_ms or X-Ringkv-Context then); with `If-None-Match: *` "
            "only if absent, with `If-Match: *` only if present.",
            "parameters": [*params, _ref("parameters", "ttl_ms"), *conditions],
            "requestBody": {"required": True, "content": _BYTES},
            "responses": {
                "204": {
                    "description": "Stored (acknowledged only once durable).",
                    "headers": _WRITTEN_HEADERS,
                },
                **_errors(*_KEY_ERRORS, 412, 507),
            },
        },
        "delete": {
            "summary": f"Delete a key{suffix}",
            "operationId": f"deleteKey{id_suffix}",
            "description": 'With `If-Match: "<version>"` a compare-and-set to absent '
            "(strong keyspaces); with `If-Match: *`, 412 instead of 404 when absent.",
            "parameters": [*params, _ref("parameters", "if_match")],
            "responses": {
                "204": {"description": "Deleted.", "headers": _WRITTEN_HEADERS},
                **_errors(*_KEY_ERRORS, 412),
            },
        },
    }


def _collection() -> JsonObject:
    operations = _kv_operations(_ref("parameters", "key_b64"), " given as key_b64", "B64")
    listing = ("keyspace", "prefix", "prefix_b64", "limit", "cursor")
    key_b64 = {**_PARAMETERS["key_b64"], "required": False}
    operations["get"] = {
        "summary": "List keys, or read one key given as key_b64",
        "description": "Without `key_b64`: a page of keys in ring order, found in at most "
        f"{SCAN_STEPS_MAX} scan steps; a page may hold fewer than `limit` keys while more "
        "remain, so continue until `cursor` is null. Keys that are not UTF-8 are listed in "
        "`keys_b64`. With `key_b64` (and none of prefix, prefix_b64, limit, cursor) it "
        "reads that key as `GET /v1/kv/{key}` does.",
        "operationId": "listKeys",
        "parameters": [key_b64, *(_ref("parameters", name) for name in (*listing, "consistency"))],
        "responses": {
            "200": {
                "description": "A page of keys (JSON); with key_b64, the raw value.",
                "headers": _VALUE_HEADERS,
                "content": {"application/json": {"schema": _ref("schemas", "KeyPage")}, **_BYTES},
            },
            "300": _SIBLINGS,
            **_errors(*_KEY_ERRORS),
        },
    }
    return operations


def _get(operation_id: str, summary: str, content: JsonObject, *errors: int) -> JsonObject:
    ok = {"description": summary, "content": content}
    operation = {"summary": summary, "operationId": operation_id}
    return {"get": {**operation, "responses": {"200": ok, **_errors(*errors)}}}


def _keyspace_operations() -> JsonObject:
    body = {"application/json": {"schema": _ref("schemas", "KeyspaceDefinition")}}
    created = _json("Keyspace", "Created")
    return {
        "put": {
            "summary": "Create a keyspace (its mode and n are fixed for good)",
            "operationId": "putKeyspace",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STRING}],
            "requestBody": {"required": False, "content": body},
            "responses": {
                "201": created,
                "200": _json("Keyspace", "Already exists with this definition"),
                **_errors(400, 401, 413, 500, 503, 504),
            },
        }
    }


_FAULT_SCHEMAS: JsonObject = {
    "LinkFault": {
        "type": "object",
        "required": ["to", "mode"],
        "additionalProperties": False,
        "properties": {
            "to": {**_STRING, "description": 'a peer node id, or "*" for every peer'},
            "direction": {
                "enum": ["out", "in", "both"],
                "default": "both",
                "description": "out: frames to the peer; in: frames from the peer",
            },
            "mode": {"enum": ["blackhole", "drop", "delay"]},
            "rate": {
                "type": "number", "minimum": 0, "maximum": 1,
                "description": "mode drop only (required there): probability a frame is lost",
            },
            "delay_ms": {
                "type": "integer", "minimum": 0, "maximum": DELAY_MS_MAX,
                "description": "mode delay only (required there): how long each frame is held",
            },
        },
    },
    "FaultRequest": {
        "oneOf": [
            {
                "type": "object", "required": ["link"], "additionalProperties": False,
                "properties": {"link": _ref("schemas", "LinkFault")},
            },
            {
                "type": "object", "required": ["clock_offset_ms"], "additionalProperties": False,
                "properties": {
                    "clock_offset_ms": {
                        "type": "integer",
                        "minimum": -CLOCK_OFFSET_MS_MAX,
                        "maximum": CLOCK_OFFSET_MS_MAX,
                        "description": "added to the wall clock the node's core sees",
                    }
                },
            },
        ]
    },
    "Faults": {
        "type": "object",
        "required": ["links", "clock_offset_ms", "counters"],
        "properties": {
            "links": {
                "type": "array",
                "items": _ref("schemas", "LinkFault"),
                "description": "one entry per (to, direction), direction out or in",
            },
            "clock_offset_ms": _INTEGER,
            "counters": _INTEGERS,
        },
    },
}  # fmt: skip


def _fault_operations() -> JsonObject:
    """``/v1/admin/faults``: present only under ``serve --faults``."""
    faults = _json("Faults", "The faults now active, and the frames they dropped or delayed.")
    note = " Exists only when the node runs with `--faults` (tests only; see docs/faults.md)."
    return {
        "get": {
            "summary": "List the injected faults",
            "description": "Link faults, the clock offset, fault counters." + note,
            "operationId": "listFaults",
            "responses": {"200": faults, **_errors(401, 500)},
        },
        "post": {
            "summary": "Inject a fault: a link fault, or a clock offset",
            "description": "A link fault replaces the one on the same (to, direction); a "
            "fault naming a peer takes precedence over the `*` one." + note,
            "operationId": "addFault",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("schemas", "FaultRequest")}},
            },
            "responses": {"200": faults, **_errors(400, 401, 413, 500)},
        },
        "delete": {
            "summary": "Clear every fault and the clock offset (held frames go at once)",
            "description": "Heals every link of this node." + note,
            "operationId": "clearFaults",
            "responses": {"200": faults, **_errors(401, 500)},
        },
    }


def openapi_document(*, faults: bool = False) -> JsonObject:
    """The OpenAPI 3.1 description of every route ``create_app`` registers
    (``/v1/admin/faults`` only when ``faults``, as with ``serve --faults``)."""
    health = _get("health", "Liveness and key count", _json("Health", "")["content"], 500, 503)
    health["get"]["security"] = []  # no password needed, even when one is set
    text = {"text/plain": {"schema": _STRING}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ringkv HTTP API", "version": __version__, "description": _ABOUT},
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/kv/{key}": _kv_operations(_ref("parameters", "key"), "", "InPath"),
            "/v1/kv": _collection(),
            "/v1/cluster": _get("cluster", "Ring epoch and members as this node sees them "
                                "(keys and hints_pending are known for this node only)",
                                {"application/json": {"schema": {"type": "object"}}}, 401, 500),
            "/v1/keyspaces": _get("listKeyspaces", "Every keyspace: name, mode, n, level",
                                  _json("Keyspaces", "")["content"], 401, 500, 503, 504),
            "/v1/keyspaces/{name}": _keyspace_operations(),
            "/v1/info": _get("info", "Node, engine, fsync, keys, memory",
                             _json("Info", "")["content"], 401, 500, 503, 504),
            "/health": health,
            "/metrics": _get("metrics", "Prometheus metrics (text format)", text, 401, 500),
            "/openapi.json": _get("openapi", "This document",
                                  {"application/json": {"schema": {"type": "object"}}}, 401, 500),
            **({FAULTS_PATH: _fault_operations()} if faults else {}),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": _PARAMETERS,
            "schemas": {**_SCHEMAS, **(_FAULT_SCHEMAS if faults else {})},
            "responses": {
                f"E{status}": _json("Error", meaning)
                for status, meaning in _ERROR_TEXT.items()
            },
        },
    }  # fmt: skip


_ABOUT = (
    "Keys and values as raw bytes over HTTP. Every error is JSON "
    '`{"error": {"code", "message", "definite"}}`; any route answers 405 '
    "(`method_not_allowed`, with an Allow header) to a method it does not list, and any "
    "other path answers 404 (`not_found`). When the server has a password, every route but "
    "/health needs `Authorization: Bearer <password>`. PUT answers 204 with no body; "
    "with `Expect: 100-continue` the body is invited only when it will be read, and an "
    "Expect other than 100-continue answers 417. A request refused before its body was "
    "read closes its connection. PUT with X-Ringkv-Context (from a GET) supersedes exactly "
    "the versions that context saw. In a strong keyspace every key is a linearizable "
    'register: its ETag is its version ("<integer>"), PUT and DELETE with If-Match on it '
    "are compare-and-set (412 `mismatch` when it moved on), and an answer 503 "
    "`unavailable` (definite) or 504 `timeout` (outcome unknown) says whether a write "
    "certainly did not happen."
)

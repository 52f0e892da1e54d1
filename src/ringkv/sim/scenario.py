"""Scenario files: a script of steps, each followed by its golden output.

The format is etcd raft's ``testdata/*.txt`` (cockroachdb's datadriven): a
step is one command line, a line ``----``, then the output up to a blank
line. Lines starting with ``#`` between steps are comments. A scenario test
runs every step of a file in one fresh ``Simulation`` and compares each
output with the file; with ``RINGKV_SCENARIO_REWRITE=1`` it writes the
actual output back instead (then review the diff).

Commands (``k=`` key, ``v=`` value, ``ks=`` keyspace, default: the last one
declared):

    nodes n1 n2 n3 [seed=0] [fsync=always|batch|never] [delay=1-10] [slow=0.01]
    keyspace NAME lww|causal [n=3] [level=quorum]
    put NODE k=KEY v=VALUE [w=2 | level=one|quorum|all] [ctx=last] [nowait]
    get NODE k=KEY [r=2 | level=...] [nowait]
    delete NODE k=KEY [w=... | level=...] [ctx=last] [nowait]
    tick MS                      run MS of virtual time; prints the ops that completed
    partition n1,n2 | n3         only nodes of one group talk (unnamed nodes: isolated)
    cut n1 -> n3                 block n1 -> n3 only
    heal                         end partitions and cuts
    drop RATE / dup RATE         message loss / duplication rates
    clock NODE +MS               skew a node's clock
    crash NODE [keep-unsynced] [before-flush]
                                 power loss (default) or process crash; before-flush:
                                 in the node's next turn that sends, after sending
    restart NODE
    state k=KEY                  each node's stored versions of the key, and hints for it
    ring k=KEY [n=3]             the key's home replicas, then its fallbacks in order
    stats                        messages by type and the nodes' counters
    trace                        the trace lines since the last ``trace``

``ctx=last`` writes with the context of the last completed ``get`` of that
key (so it supersedes exactly the siblings that get returned). ``put``,
``get`` and ``delete`` wait for their answer unless ``nowait``; the answer
shows how long it took in virtual milliseconds.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ringkv.core.config import KeyspaceSpec, Level
from ringkv.core.record import ConflictMode, Version
from ringkv.core.ring import fallback_order, key_token, preference_list
from ringkv.sim.history import Op, format_context
from ringkv.sim.network import NetworkConfig
from ringkv.sim.world import SimConfig, Simulation
from ringkv.storage.base import FsyncPolicy

__all__ = ["ScenarioError", "ScenarioRunner", "Step", "parse", "render", "run_file", "run_text"]

SEPARATOR = "----"


class ScenarioError(ValueError):
    """A scenario file that cannot be parsed or a step that cannot run."""


@dataclass(slots=True)
class Step:
    """One command and its expected output, with the comment lines before it."""

    line: int
    command: str
    expected: str
    comments: list[str] = field(default_factory=list)


def parse(text: str) -> tuple[list[Step], list[str]]:
    """The steps of a file, and the comment lines after the last step."""
    steps: list[Step] = []
    comments: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        if not raw.strip() or raw.startswith("#"):
            if raw.startswith("#") or (comments and comments[-1] != ""):
                comments.append(raw)
            continue
        start = index
        if index >= len(lines) or lines[index] != SEPARATOR:
            raise ScenarioError(f"line {start}: expected {SEPARATOR!r} after {raw!r}")
        index += 1
        output: list[str] = []
        while index < len(lines) and lines[index].strip():
            output.append(lines[index])
            index += 1
        while comments and comments[-1] == "":
            comments.pop()
        steps.append(Step(start, raw.strip(), "\n".join(output), comments))
        comments = []
    while comments and comments[-1] == "":
        comments.pop()
    return steps, comments


def render(steps: list[Step], trailing: list[str], outputs: list[str]) -> str:
    """The file again, with ``outputs`` as the golden outputs."""
    parts: list[str] = []
    for step, output in zip(steps, outputs, strict=True):
        block = [*step.comments, step.command, SEPARATOR]
        if output:
            block.append(output)
        parts.append("\n".join(block))
    if trailing:
        parts.append("\n".join(trailing))
    return "\n\n".join(parts) + "\n"


def run_text(text: str) -> tuple[list[Step], list[str], list[str]]:
    """Run every step: (steps, trailing comments, actual outputs)."""
    steps, trailing = parse(text)
    runner = ScenarioRunner()
    outputs = []
    for step in steps:
        try:
            outputs.append(runner.run(step.command))
        except ScenarioError as exc:
            raise ScenarioError(f"line {step.line}: {exc}") from exc
    return steps, trailing, outputs


def run_file(path: Path) -> tuple[str, str]:
    """(expected file text, actual file text) for one scenario file."""
    text = path.read_text()
    steps, trailing, outputs = run_text(text)
    return text, render(steps, trailing, outputs)


class ScenarioRunner:
    """Runs scenario commands against one simulation, built by ``nodes``."""

    def __init__(self) -> None:
        self._sim: Simulation | None = None
        self._last_read: dict[tuple[str, bytes], Op] = {}
        self._waiting: list[Op] = []
        self._trace_mark = 0
        self._commands: dict[str, Callable[[list[str], dict[str, str]], str]] = {
            "nodes": self._nodes,
            "keyspace": self._keyspace,
            "put": self._put,
            "get": self._get,
            "delete": self._delete,
            "tick": self._tick,
            "cut": self._cut,
            "heal": self._heal,
            "drop": self._drop,
            "dup": self._dup,
            "clock": self._clock,
            "crash": self._crash,
            "restart": self._restart,
            "state": self._state,
            "stats": self._stats,
            "ring": self._ring,
            "trace": self._trace,
        }

    @property
    def sim(self) -> Simulation:
        if self._sim is None:
            raise ScenarioError("the first command must be `nodes ...`")
        return self._sim

    def run(self, command: str) -> str:
        name, _, rest = command.partition(" ")
        if name == "partition":
            return self._partition(rest)
        handler = self._commands.get(name)
        if handler is None:
            raise ScenarioError(f"unknown command {name!r}")
        words: list[str] = []
        options: dict[str, str] = {}
        for token in shlex.split(rest):
            key, eq, value = token.partition("=")
            if eq:
                options[key] = value
            else:
                words.append(token)
        if self._sim is not None:
            self._sim.note(command)
        return handler(words, options)

    # -- setup -----------------------------------------------------------------

    def _nodes(self, words: list[str], options: dict[str, str]) -> str:
        if self._sim is not None:
            raise ScenarioError("`nodes` may appear once")
        low, _, high = options.get("delay", "1-10").partition("-")
        network = NetworkConfig(
            delay_min_ms=int(low),
            delay_max_ms=int(high or low),
            slow_rate=float(options.get("slow", "0.01")),
        )
        config = SimConfig(network=network, fsync=FsyncPolicy(options.get("fsync", "always")))
        self._sim = Simulation(int(options.get("seed", "0")), words, config=config)
        return "ok"

    def _keyspace(self, words: list[str], options: dict[str, str]) -> str:
        if len(words) != 2:
            raise ScenarioError("usage: keyspace NAME lww|causal [n=3] [level=quorum]")
        spec = KeyspaceSpec(
            name=words[0],
            mode=ConflictMode(words[1]),
            n_replicas=int(options.get("n", "3")),
            level=Level(options.get("level", "quorum")),
        )
        self.sim.create_keyspace(spec)
        return "ok"

    # -- requests ----------------------------------------------------------------

    def _put(self, words: list[str], options: dict[str, str]) -> str:
        node = self._one_node(words)
        key = self._option(options, "k")
        context, saw = self._context(options, key)
        op = self.sim.client(node).put(
            key,
            self._option(options, "v"),
            level=options.get("level", ""),
            acks=int(options.get("w", "0")),
            context=context,
            saw=saw,
            keyspace=options.get("ks"),
        )
        return self._answer(op, words)

    def _delete(self, words: list[str], options: dict[str, str]) -> str:
        node = self._one_node(words)
        key = self._option(options, "k")
        context, saw = self._context(options, key)
        op = self.sim.client(node).delete(
            key,
            level=options.get("level", ""),
            acks=int(options.get("w", "0")),
            context=context,
            saw=saw,
            keyspace=options.get("ks"),
        )
        return self._answer(op, words)

    def _get(self, words: list[str], options: dict[str, str]) -> str:
        node = self._one_node(words)
        op = self.sim.client(node).get(
            self._option(options, "k"),
            level=options.get("level", ""),
            acks=int(options.get("r", "0")),
            keyspace=options.get("ks"),
        )
        return self._answer(op, words)

    def _context(
        self, options: dict[str, str], key: str
    ) -> tuple[dict[str, int] | None, tuple[bytes, ...]]:
        ctx = options.get("ctx")
        if ctx is None:
            return None, ()
        if ctx != "last":
            raise ScenarioError("ctx= takes `last` (the context of the last get of the key)")
        keyspace = options.get("ks", self.sim.default_keyspace)
        read = self._last_read.get((keyspace, key.encode()))
        if read is None:
            raise ScenarioError(f"ctx=last: no completed get of {key!r} yet")
        return dict(read.read_context or {}), read.read_values

    def _answer(self, op: Op, words: list[str]) -> str:
        if "nowait" in words:
            self._waiting.append(op)
            return f"op{op.op_id} invoked"
        self.sim.complete(op)
        return self._outcome(op)

    def _outcome(self, op: Op) -> str:
        if not op.done:
            return f"op{op.op_id} still in flight"
        if op.f == "get" and op.outcome == "ok":
            self._last_read[(op.keyspace, op.key)] = op
            values = ", ".join(v.decode(errors="replace") for v in op.read_values)
            text = f"ok [{values}] ctx={format_context(op.read_context or {})}"
        else:
            text = op.outcome + (f" {op.error}" if op.error else "")
        assert op.complete_ms is not None
        return f"{text} ({op.complete_ms - op.invoke_ms} ms)"

    # -- time and faults -------------------------------------------------------------

    def _tick(self, words: list[str], options: dict[str, str]) -> str:
        if len(words) != 1 or not words[0].isdigit():
            raise ScenarioError("usage: tick MS")
        self.sim.run_for(int(words[0]))
        done = [op for op in self._waiting if op.done]
        self._waiting = [op for op in self._waiting if not op.done]
        lines = [f"op{op.op_id} {op.describe()}: {self._outcome(op)}" for op in done]
        return "\n".join(lines) or "ok"

    def _partition(self, rest: str) -> str:
        groups = [[n.strip() for n in part.split(",") if n.strip()] for part in rest.split("|")]
        self.sim.note(f"partition {rest}")
        self._check_nodes([n for group in groups for n in group])
        self.sim.partition(groups)
        return self.sim.network.describe_faults()

    def _cut(self, words: list[str], options: dict[str, str]) -> str:
        if len(words) != 3 or words[1] != "->":
            raise ScenarioError("usage: cut SRC -> DST")
        self._check_nodes([words[0], words[2]])
        self.sim.cut(words[0], words[2])
        return self.sim.network.describe_faults()

    def _heal(self, words: list[str], options: dict[str, str]) -> str:
        self.sim.heal()
        return self.sim.network.describe_faults()

    def _drop(self, words: list[str], options: dict[str, str]) -> str:
        self.sim.set_rates(drop_rate=float(words[0]))
        return "ok"

    def _dup(self, words: list[str], options: dict[str, str]) -> str:
        self.sim.set_rates(duplicate_rate=float(words[0]))
        return "ok"

    def _clock(self, words: list[str], options: dict[str, str]) -> str:
        if len(words) != 2:
            raise ScenarioError("usage: clock NODE +MS")
        self._check_nodes(words[:1])
        self.sim.set_clock_offset(words[0], int(words[1]))
        return "ok"

    def _crash(self, words: list[str], options: dict[str, str]) -> str:
        node = words[0] if words else ""
        self._check_nodes([node])
        keep = "keep-unsynced" in words[1:]
        if "before-flush" in words[1:]:
            self.sim.crash_before_flush(node, lose_unsynced=not keep)
            return f"{node} will crash after its next send, before its flush"
        unsynced = self.sim.engine(node).unsynced_keys()
        self.sim.crash(node, lose_unsynced=not keep)
        what = "process crash" if keep else "power loss"
        return f"{node} down ({what}, {unsynced} unsynced keys)"

    def _restart(self, words: list[str], options: dict[str, str]) -> str:
        node = self._one_node(words)
        self.sim.restart(node)
        return f"{node} up"

    # -- inspection ----------------------------------------------------------------------

    def _state(self, words: list[str], options: dict[str, str]) -> str:
        key = self._option(options, "k").encode()
        keyspace = options.get("ks", self.sim.default_keyspace)
        lines = []
        for node in self.sim.node_ids:
            versions = self.sim.stored_versions(node, keyspace, key)
            shown = " ".join(_version(v) for v in versions) or "-"
            down = "" if self.sim.is_up(node) else " (down)"
            lines.append(f"{node}{down}: {shown}")
            for home, hinted in self.sim.stored_hints(node, keyspace, key):
                lines.append(f"  hint for {home}: " + " ".join(_version(v) for v in hinted))
        return "\n".join(lines)

    def _ring(self, words: list[str], options: dict[str, str]) -> str:
        token = key_token(self._option(options, "k").encode())
        n = int(options.get("n", "3"))
        homes = preference_list(self.sim.ring, token, n)
        fallbacks = fallback_order(self.sim.ring, token, n)
        return f"homes {' '.join(homes)}; fallbacks {' '.join(fallbacks) or '-'}"

    def _stats(self, words: list[str], options: dict[str, str]) -> str:
        lines = []
        for kind, counts in self.sim.network.counters().items():
            lines.append(
                f"{kind}: sent={counts['sent']} dropped={counts['dropped']} "
                f"dup={counts['duplicated']} delivered={counts['delivered']}"
            )
        for node in self.sim.node_ids:
            stats = self.sim.node_stats(node)
            shown = " ".join(f"{k}={v}" for k, v in sorted(stats.items()) if v)
            lines.append(f"{node}: {shown or '-'}")
        return "\n".join(lines)

    def _trace(self, words: list[str], options: dict[str, str]) -> str:
        lines = self.sim.trace_lines[self._trace_mark :]
        lines = [line for line in lines if " note " not in line]
        self._trace_mark = len(self.sim.trace_lines)
        return "\n".join(line.rstrip() for line in lines) or "-"

    # -- helpers ----------------------------------------------------------------------------

    def _one_node(self, words: list[str]) -> str:
        nodes = [w for w in words if w != "nowait"]
        if len(nodes) != 1:
            raise ScenarioError("name one node")
        self._check_nodes(nodes)
        return nodes[0]

    def _check_nodes(self, nodes: list[str]) -> None:
        for node in nodes:
            if node not in self.sim.node_ids:
                raise ScenarioError(f"unknown node {node!r}")

    @staticmethod
    def _option(options: dict[str, str], name: str) -> str:
        if name not in options:
            raise ScenarioError(f"missing {name}=")
        return options[name]


def _version(version: Version) -> str:
    value = "<deleted>" if version.tombstone else version.value.decode(errors="replace")
    dot = f"{version.dot.node}:{version.dot.counter}"
    seen = f" saw {format_context(dict(version.context))}" if version.context else ""
    return f"{value}({dot}{seen})"

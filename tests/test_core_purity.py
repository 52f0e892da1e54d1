"""The core imports no I/O and draws no time or randomness of its own (STYLE.md rule 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "src" / "ringkv" / "core"
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "threading",
    "time",
    "os",
    "selectors",
    "uuid",
    "secrets",
    "subprocess",
}
FORBIDDEN_CALLS = {"hash", "uuid4", "time", "time_ns", "monotonic", "perf_counter", "urandom"}


def _core_files() -> list[Path]:
    files = sorted(CORE.glob("**/*.py"))
    assert files, "no core modules found"
    return files


def _violations(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in FORBIDDEN_MODULES
        ):
            found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}() at line {node.lineno}")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "random"
                and func.attr != "Random"
            ):
                found.append(f"random.{func.attr}() at line {node.lineno}")
    return found


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    assert _violations(ast.parse(path.read_text())) == []


def test_the_checker_bites() -> None:
    bad = "import asyncio\nfrom time import time\nx = hash('a')\nimport random\nrandom.random()\n"
    assert len(_violations(ast.parse(bad))) == 4

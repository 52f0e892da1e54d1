"""Scenario files (tests/scenarios/*.txt) against their golden output.

Each file is a script for the simulator with the expected output of every
step (format: ``ringkv/sim/scenario.py``). Rewrite the goldens after an
intended change with ``RINGKV_SCENARIO_REWRITE=1 pytest tests/test_sim_scenarios.py``
and review the diff: every changed line is a behaviour change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ringkv.sim.scenario import ScenarioError, ScenarioRunner, parse, render, run_file, run_text

SCENARIOS = Path(__file__).parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.txt"))
REWRITE = os.environ.get("RINGKV_SCENARIO_REWRITE") == "1"


def test_there_are_scenarios() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    expected, actual = run_file(path)
    if REWRITE and actual != expected:
        path.write_text(actual)
        return
    assert actual == expected, f"{path.name} differs; RINGKV_SCENARIO_REWRITE=1 rewrites it"


def test_parse_and_render_round_trip() -> None:
    text = (
        "# a comment\n# two lines\nnodes n1 n2\n----\nok\n\n"
        "put n1 k=a v=x\n----\nok (3 ms)\n\n# trailing\n"
    )
    steps, trailing = parse(text)
    assert [s.command for s in steps] == ["nodes n1 n2", "put n1 k=a v=x"]
    assert steps[0].comments == ["# a comment", "# two lines"]
    assert steps[1].expected == "ok (3 ms)"
    assert trailing == ["# trailing"]
    assert render(steps, trailing, [s.expected for s in steps]) == text


def test_parse_refuses_a_step_without_separator() -> None:
    with pytest.raises(ScenarioError, match="line 1: expected '----'"):
        parse("nodes n1\nok\n")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("put n1 k=a v=x\n----\n", "first command must be `nodes"),
        ("nodes n1\n----\n\nfly n1\n----\n", "unknown command 'fly'"),
        ("nodes n1\n----\n\nput n9 k=a v=x\n----\n", "unknown node 'n9'"),
        ("nodes n1\n----\n\nput n1 v=x\n----\n", "missing k="),
        ("nodes n1\n----\n\nput n1 k=a v=x ctx=last\n----\n", "no completed get"),
    ],
)
def test_bad_steps_name_their_line(script: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        run_text(script)


def test_same_script_same_trace() -> None:
    script = [
        "nodes n1 n2 n3 seed=7",
        "keyspace carts causal",
        "partition n1 | n2,n3",
        "put n1 k=a v=x w=1",
        "put n2 k=a v=y",
        "heal",
        "tick 3000",
        "get n3 k=a level=all",
    ]
    digests = []
    for _ in range(2):
        runner = ScenarioRunner()
        for command in script:
            runner.run(command)
        digests.append(runner.sim.trace_digest())
    assert digests[0] == digests[1]

"""The convergence checker, and the verdicts and table every checker shares."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from rich.console import Console

from ringkv.check.convergence import (
    StoredVersion,
    VersionLike,
    check_convergence,
    replicas_from_operator_json,
)
from ringkv.check.history import HistoryError
from ringkv.check.report import Verdict, all_valid, render_table
from ringkv.core.clocks import Dot, HlcTimestamp
from ringkv.core.record import Version


def version(node: str, counter: int, value: str, *, tombstone: bool = False) -> StoredVersion:
    return StoredVersion(value=value.encode(), dot=Dot(node, counter), tombstone=tombstone)


def as_json(v: StoredVersion, hlc: tuple[int, int] = (1, 0)) -> dict[str, Any]:
    return {
        "value": v.value.decode(),
        "encoding": "utf-8",
        "hlc": list(hlc),
        "dvv": {"dot": [v.dot.node, v.dot.counter], "context": {}},
        "expires_at_ms": 0,
        "tombstone": v.tombstone,
    }


A, B, GONE = version("n1", 1, "a"), version("n2", 1, "b"), version("n1", 2, "", tombstone=True)


def test_replicas_holding_the_same_versions_have_converged() -> None:
    core_a = Version(value=b"a", hlc=HlcTimestamp(7, 3), dot=Dot("n1", 1), context={"n2": 4})
    stored: dict[str, dict[str, list[VersionLike] | None]] = {
        "k1": {"n1": [A, B], "n2": [as_json(B, hlc=(9, 9)), as_json(A)], "n3": [core_a, B]},
        "k2": {"n1": [GONE], "n2": [GONE]},
        "k3": {"n1": [], "n2": []},
    }
    result = check_convergence(stored, converged_after_ms=840.0)
    assert result.valid is True
    assert (result.keys_checked, result.divergent, result.unreachable) == (3, (), ())
    verdict = result.verdict()
    assert verdict.details["converged_after_ms"] == 840.0
    assert "3 keys" in verdict.summary and "840 ms" in verdict.summary


def test_diverging_replicas_are_shown_with_what_each_misses_and_adds() -> None:
    stored = {
        "k": {"n1": [A, B], "n2": [A], "n3": [A, GONE]},
        "same": {"n1": [A], "n2": [A]},
    }
    result = check_convergence(stored)
    assert result.valid is False
    [diverged] = result.divergent
    assert diverged.key == "k"
    assert [(d.node, d.missing, d.extra) for d in diverged.nodes] == [
        ("n1", (GONE,), (B,)),
        ("n2", (GONE, B), ()),
        ("n3", (B,), (GONE,)),
    ]
    assert diverged.describe() == (
        "k: n1 missing [n1:2=<tombstone>] extra [n2:1=b]; n2 missing [n1:2=<tombstone>, "
        "n2:1=b] extra [-]; n3 missing [n2:1=b] extra [n1:2=<tombstone>]"
    )
    assert result.verdict().summary == "1 of 2 keys diverge"


def test_a_dot_carrying_a_different_value_or_flag_diverges_but_a_different_hlc_does_not() -> None:
    other_value = version("n1", 1, "A")
    assert check_convergence({"k": {"n1": [A], "n2": [other_value]}}).valid is False
    tombstoned = version("n1", 1, "a", tombstone=True)
    assert check_convergence({"k": {"n1": [A], "n2": [tombstoned]}}).valid is False
    later = StoredVersion(value=b"a", dot=Dot("n1", 1), hlc=(99, 1), expires_at_ms=5)
    assert check_convergence({"k": {"n1": [A], "n2": [later]}}).valid is True


def test_only_home_replicas_count_and_a_silent_home_makes_it_unknown() -> None:
    stored: dict[str, dict[str, Any]] = {"k": {"n1": [A], "n2": [A], "n4": [A, B]}}
    homes = {"k": ["n1", "n2", "n3"], "only-in-homes": ["n1"]}
    result = check_convergence(stored, homes)
    assert result.divergent == ()  # n4 is a fallback holding a hint
    assert result.unreachable == (("k", "n3"), ("only-in-homes", "n1"))
    assert result.valid is None and result.keys_checked == 2
    stored["k"]["n3"] = None  # answered that it could not reach n3
    assert check_convergence(stored, {"k": ["n1", "n2", "n3"]}).unreachable == (("k", "n3"),)
    assert check_convergence({}).valid is None  # nothing checked


def test_operator_json_is_read_as_the_http_api_writes_it() -> None:
    binary = StoredVersion(value=b"\xff\x00", dot=Dot("n2", 3), hlc=(1, 0))
    binary_json = as_json(A) | {
        "value": base64.b64encode(b"\xff\x00").decode(),
        "encoding": "base64",
        "dvv": {"dot": ["n2", 3], "context": {"n1": 1}},
    }
    report = {
        "key": "k",
        "replicas": [
            {"node": "n1", "home": True, "reachable": True, "versions": [as_json(A), binary_json]},
            {"node": "n2", "home": True, "reachable": False, "versions": []},
            {"node": "n3", "home": True, "reachable": True, "versions": [as_json(A)]},
            {"node": "n4", "home": False, "reachable": True, "versions": []},
        ],
        "hints": [],
    }
    stored, homes = replicas_from_operator_json([report])
    assert homes == {"k": ["n1", "n2", "n3"]}
    assert stored["k"]["n1"] == [
        StoredVersion(value=b"a", dot=Dot("n1", 1), hlc=(1, 0)),
        StoredVersion(value=b"\xff\x00", dot=Dot("n2", 3), hlc=(1, 0)),
    ]
    assert stored["k"]["n2"] is None
    result = check_convergence(stored, homes)
    assert result.valid is False and result.unreachable == (("k", "n2"),)
    assert result.divergent[0].nodes[1].missing == (binary,)


def test_malformed_versions_are_refused() -> None:
    with pytest.raises(HistoryError, match="malformed stored version"):
        check_convergence({"k": {"n1": [{"value": "a"}]}})
    with pytest.raises(HistoryError, match="malformed stored version"):
        StoredVersion.from_json({"value": "%%", "encoding": "base64", "dvv": {"dot": ["n1", 1]}})
    with pytest.raises(HistoryError, match="not a stored version"):
        check_convergence({"k": {"n1": [("n1", 1)]}})  # type: ignore[list-item]
    with pytest.raises(HistoryError, match="malformed replica report"):
        replicas_from_operator_json([{"key": "k"}])


# Verdicts and the table every checker shares.


def test_unknown_counts_as_a_failure() -> None:
    ok = Verdict(checker="a", valid=True, summary="fine")
    unknown = Verdict(checker="b", valid=None, summary="nothing read")
    bad = Verdict(checker="c", valid=False, summary="lost [1, 2]")
    assert all_valid([ok]) and all_valid([])
    assert not all_valid([ok, unknown]) and not all_valid([ok, bad])
    assert [v.status for v in (ok, unknown, bad)] == ["valid", "UNKNOWN", "INVALID"]
    assert bad.to_json() == {
        "checker": "c",
        "valid": False,
        "summary": "lost [1, 2]",
        "details": {},
    }


def test_the_table_shows_one_row_per_checker() -> None:
    verdicts = [
        check_convergence({"k": {"n1": [A], "n2": [B]}}).verdict(),
        Verdict(checker="set-full", valid=None, summary="lost [bold]1[/bold]"),
    ]
    console = Console(record=True, width=200, color_system=None)
    console.print(render_table(verdicts, details=True))
    text = console.export_text()
    assert "convergence" in text and "INVALID" in text and "1 of 1 keys diverge" in text
    assert "k: n1 missing [n2:1=b] extra [n1:1=a]" in text  # a detail line
    assert "lost [bold]1[/bold]" in text  # summaries are text, never markup
    assert "UNKNOWN" in text

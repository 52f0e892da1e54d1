"""The siblings checker (causal keyspaces) on hand-written histories."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringkv.check.history import FAIL, INFO, OK, Event, HistoryError, Recorder
from ringkv.check.siblings import check_siblings


class History:
    def __init__(self) -> None:
        self.recorder = Recorder()

    def write(
        self,
        client: int,
        value: Any,
        *,
        saw: list[Any] | None = None,
        context: Any = None,
        outcome: str = OK,
        f: str = "write",
        key: str = "k",
        **extra: Any,
    ) -> Event:
        if saw is not None:
            extra["saw"] = saw
            extra.setdefault("context", context if context is not None else {"n1": len(saw)})
        elif context is not None:
            extra["context"] = context
        invoke = self.recorder.invoke(client, f, key, value, node="n1", **extra)
        return self.recorder.complete(invoke, outcome)

    def read(
        self, client: int, values: list[Any] | None, key: str = "k", node: str = "n1"
    ) -> Event:
        invoke = self.recorder.invoke(client, "read", key, node=node)
        return self.recorder.complete(invoke, OK, values)

    @property
    def events(self) -> list[Event]:
        return self.recorder.events


def test_concurrent_blind_writes_are_kept_as_siblings() -> None:
    h = History()
    h.write(0, "a")
    h.write(1, "b", f="put")
    h.read(2, ["a", "b"], node="n1")
    h.read(2, ["b", "a"], node="n2")
    result = check_siblings(h.events)
    assert result.valid is True
    assert (result.writes_judged, result.present, result.superseded) == (2, 2, 0)
    assert (result.sibling_reads, result.max_siblings) == (2, 2)
    assert "2 present" in result.verdict().summary


def test_a_value_a_later_write_saw_may_be_gone() -> None:
    h = History()
    h.write(0, "a")
    h.write(1, "b")
    h.read(2, ["a", "b"])
    h.write(2, "c", saw=["a", "b"], context={"n1": 2})
    h.read(3, ["c"])
    result = check_siblings(h.events)
    assert result.valid is True
    assert (result.present, result.superseded, result.missing) == (1, 2, ())
    assert (result.sibling_reads, result.max_siblings) == (1, 2)


def test_an_acknowledged_value_missing_without_a_superseder_is_reported() -> None:
    h = History()
    first = h.write(0, "a")
    h.write(1, "b")
    h.read(2, ["b"], node="n1")
    h.read(2, ["a", "b"], node="n2")
    h.read(2, ["b"], node="n3")
    result = check_siblings(h.events)
    assert result.valid is False
    [missing] = result.missing
    assert (missing.key, missing.value, missing.write_index) == ("k", "a", first.index - 1)
    assert missing.missing_from == ("n1", "n3")
    assert "1 missing" in result.verdict().summary


def test_an_info_write_may_supersede_and_a_failed_one_does_not() -> None:
    h = History()
    h.write(0, "a")
    h.write(1, "x", saw=["a"], outcome=FAIL)
    h.read(2, [])
    assert [m.value for m in check_siblings(h.events).missing] == ["a"]
    h = History()
    h.write(0, "a")
    h.write(1, "x", saw=["a"], outcome=INFO)  # may have happened, seen a, then been superseded
    h.read(2, [])
    result = check_siblings(h.events)
    assert result.valid is True and result.superseded == 1


def test_a_delete_with_a_context_supersedes_what_it_saw() -> None:
    h = History()
    h.write(0, "a")
    h.write(1, None, saw=["a"], f="delete")
    h.read(2, None)
    result = check_siblings(h.events)
    assert result.valid is True and result.superseded == 1


def test_a_superseded_value_read_again_is_resurrected() -> None:
    h = History()
    h.write(0, "a")
    by = h.write(1, "b", saw=["a"])
    h.read(2, ["a", "b"], node="n2")
    result = check_siblings(h.events)
    assert result.valid is False
    [back] = result.resurrected
    assert (back.value, back.by_index, back.read_on) == ("a", by.index - 1, ("n2",))
    # ...but not when the write that saw it was only acknowledged at level one.
    h = History()
    h.write(0, "a")
    h.write(1, "b", saw=["a"], level="one")
    h.read(2, ["a", "b"])
    assert check_siblings(h.events).resurrected == ()


def test_writes_at_level_one_and_keys_never_read_are_not_judged() -> None:
    h = History()
    h.write(0, "a", level="one")
    h.write(0, "z", key="unread")
    h.read(2, [])
    result = check_siblings(h.events)
    assert (result.writes_judged, result.writes_unjudged) == (0, 2)
    assert result.valid is None  # nothing was verified
    assert check_siblings(h.events, exempt_levels=()).valid is False


def test_a_write_with_a_context_but_no_saw_leaves_a_missing_value_unverified() -> None:
    h = History()
    h.write(0, "a")
    h.write(1, "b", context="opaque-context-token")
    h.read(2, ["b"])
    result = check_siblings(h.events)
    assert [m.value for m in result.unverified] == ["a"]
    assert result.missing == () and result.valid is None


def test_only_reads_begun_after_every_write_ended_are_final() -> None:
    h = History()
    h.write(0, "a")
    h.read(2, [])  # not final: b is still to come
    h.write(1, "b")
    h.read(2, ["a", "b"])
    assert check_siblings(h.events).valid is True


def test_a_read_that_is_not_a_list_is_refused() -> None:
    h = History()
    h.write(0, "a")
    h.read(1, "a")  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="list of siblings"):
        check_siblings(h.events)


# A model causal store: the live values are a set; a write with a context
# removes what its read saw and adds its value; a blind write only adds.


@st.composite
def _causal_run(draw: st.DrawFn) -> tuple[History, set[str]]:
    h = History()
    live: set[str] = set()
    reads: dict[int, list[str]] = {}
    for step in range(draw(st.integers(1, 30))):
        client = draw(st.integers(0, 3))
        action = draw(st.sampled_from(["read", "blind", "context"]))
        if action == "read" or (action == "context" and client not in reads):
            reads[client] = sorted(live)
            h.read(client, reads[client])
            continue
        value = f"v{step}"
        if action == "context":
            saw = reads.pop(client)
            live.difference_update(saw)
            h.write(client, value, saw=saw)
        else:
            h.write(client, value)
        live.add(value)
    for node in ("n1", "n2", "n3"):
        h.read(9, sorted(live), node=node)
    return h, live


@settings(max_examples=60, deadline=None)
@given(_causal_run())
def test_a_faultless_model_causal_store_is_valid(run: tuple[History, set[str]]) -> None:
    h, _ = run
    result = check_siblings(h.events)
    assert (result.missing, result.resurrected, result.unverified) == ((), (), ())
    assert result.valid is (True if result.writes_judged else None)


@settings(max_examples=60, deadline=None)
@given(_causal_run(), st.data())
def test_dropping_a_live_value_from_a_final_read_is_caught(
    run: tuple[History, set[str]], data: st.DataObject
) -> None:
    h, live = run
    if not live:
        return
    victim = data.draw(st.sampled_from(sorted(live)))
    events = list(h.events)
    last = events[-1]
    events[-1] = Event(
        index=last.index,
        process=last.process,
        type=OK,
        f="read",
        key=last.key,
        value=[v for v in last.value if v != victim],
        node=last.node,
    )
    result = check_siblings(events)
    assert [(m.value, m.missing_from) for m in result.missing] == [(victim, ("n3",))]
    assert result.valid is False

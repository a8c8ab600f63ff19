"""The structured content diff: paths, kinds, both values, text diffs; nothing unchanged."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.domain.content_diff import diff, opcodes, pointer, same, summary, text_diff


def rendered(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.render() for c in diff(old, new)]


def test_equal_contents_have_no_changes() -> None:
    content = {"headline": "Spring", "tags": ["a", "b"], "nested": {"x": [1, {"y": None}]}}
    assert diff(content, dict(reversed(list(content.items())))) == []


def test_added_removed_and_changed_paths_with_both_values() -> None:
    old = {"headline": "Spring is here", "cta": "Buy", "meta": {"tone": "calm", "n": 1}}
    new = {"headline": "Spring is finally here", "meta": {"tone": "calm", "n": 2}, "new": [1]}
    changes = rendered(old, new)
    by_path = {c["path"]: c for c in changes}
    assert set(by_path) == {"/headline", "/meta/n", "/new", "/cta"}
    assert by_path["/meta/n"] == {
        "path": "/meta/n",
        "segments": ["meta", "n"],
        "kind": "changed",
        "old": 1,
        "new": 2,
    }
    assert by_path["/new"] == {"path": "/new", "segments": ["new"], "kind": "added", "new": [1]}
    assert by_path["/cta"] == {"path": "/cta", "segments": ["cta"], "kind": "removed", "old": "Buy"}
    headline = by_path["/headline"]
    assert headline["old"] == "Spring is here" and headline["new"] == "Spring is finally here"
    assert headline["text_diff"] == {
        "granularity": "word",
        "ops": [
            {"op": "equal", "text": "Spring is "},
            {"op": "insert", "text": "finally "},
            {"op": "equal", "text": "here"},
        ],
    }
    assert summary(diff(old, new)) == {"added": 1, "removed": 1, "changed": 2}


def test_a_null_value_is_a_value() -> None:
    changes = rendered({"a": None}, {})
    assert changes == [{"path": "/a", "segments": ["a"], "kind": "removed", "old": None}]
    assert rendered({}, {"a": None}) == [
        {"path": "/a", "segments": ["a"], "kind": "added", "new": None}
    ]


def test_types_are_compared_strictly() -> None:
    assert [c["path"] for c in rendered({"a": 1, "b": True}, {"a": 1.0, "b": 1})] == ["/a", "/b"]
    assert not same(1, True)
    assert same({"x": [1, 2.5]}, {"x": [1, 2.5]})


def test_an_inserted_array_element_is_one_addition() -> None:
    old = {"items": [{"id": i} for i in range(1000)]}
    new = {"items": [{"id": -1}, *old["items"]]}
    assert rendered(old, new) == [
        {"path": "/items/0", "segments": ["items", 0], "kind": "added", "new": {"id": -1}}
    ]


def test_a_changed_field_inside_an_array_element_is_one_change_at_that_field() -> None:
    old = {"scenes": [{"t": "dawn", "d": 3}, {"t": "noon", "d": 4}]}
    new = {"scenes": [{"t": "dawn", "d": 3}, {"t": "noon", "d": 5}]}
    assert rendered(old, new) == [
        {
            "path": "/scenes/1/d",
            "segments": ["scenes", 1, "d"],
            "kind": "changed",
            "old": 4,
            "new": 5,
        }
    ]


def test_removed_tail_elements_and_type_changes() -> None:
    changes = rendered({"a": [1, 2, 3], "b": {"x": 1}}, {"a": [1], "b": "x"})
    assert changes == [
        {"path": "/a/1", "segments": ["a", 1], "kind": "removed", "old": 2},
        {"path": "/a/2", "segments": ["a", 2], "kind": "removed", "old": 3},
        {"path": "/b", "segments": ["b"], "kind": "changed", "old": {"x": 1}, "new": "x"},
    ]


def test_keys_with_slashes_tildes_dots_and_dollars_are_unambiguous() -> None:
    assert pointer(("a/b", "c~d", "$e.f", 0)) == "/a~1b/c~0d/$e.f/0"
    changes = rendered({"a.b": 1}, {"a.b": 2, "$x": 1})
    assert [c["segments"] for c in changes] == [["a.b"], ["$x"]]


def test_multiline_strings_diff_by_line() -> None:
    result = text_diff("one\ntwo\nthree\n", "one\nTWO\nthree\nfour\n")
    assert result.granularity == "line"
    assert result.ops == [
        ("equal", "one\n"),
        ("delete", "two\n"),
        ("insert", "TWO\n"),
        ("equal", "three\n"),
        ("insert", "four\n"),
    ]


words = st.lists(st.sampled_from(["spring", "sale", " ", "  ", "now", "!", "é", "\n"]), max_size=30)


@given(words, words)
def test_text_ops_rebuild_both_strings(a: list[str], b: list[str]) -> None:
    old, new = "".join(a), "".join(b)
    ops = text_diff(old, new).ops
    assert "".join(t for op, t in ops if op != "insert") == old
    assert "".join(t for op, t in ops if op != "delete") == new
    assert all(text for _, text in ops)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=12,
)


def apply_flat(old: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    doc = dict(old)
    for c in changes:
        (key,) = c["segments"]
        if c["kind"] == "removed":
            del doc[key]
        else:
            doc[key] = c["new"]
    return doc


@given(st.dictionaries(st.text(max_size=2), json_values, max_size=5))
def test_no_change_reported_for_identical_documents(doc: dict[str, Any]) -> None:
    assert diff(doc, doc) == []


@given(
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3),
)
def test_flat_changes_rebuild_the_new_document(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_flat(old, rendered(old, new)) == new


def test_large_repetitive_arrays_and_texts_stay_fast() -> None:
    started = time.perf_counter()
    old = {"zeros": [0] * 50_000, "text": "la " * 4000}
    new = {"zeros": [0] * 20_000 + [1] + [0] * 30_000, "text": "la " * 2000 + "da " + "la " * 2001}
    changes = rendered(old, new)
    assert time.perf_counter() - started < 5
    assert [c["path"] for c in changes] == ["/zeros/20000", "/text"]
    ops = changes[1]["text_diff"]["ops"]
    assert "".join(o["text"] for o in ops if o["op"] != "insert") == old["text"]
    assert "".join(o["text"] for o in ops if o["op"] != "delete") == new["text"]


@given(
    st.lists(st.integers(0, 2), max_size=40),
    st.lists(st.integers(0, 2), max_size=40),
)
def test_opcodes_cover_both_sequences_in_order(a: list[int], b: list[int]) -> None:
    rebuilt_a: list[int] = []
    rebuilt_b: list[int] = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
        rebuilt_a += a[i1:i2]
        rebuilt_b += b[j1:j2]
    assert (rebuilt_a, rebuilt_b) == (a, b)


def test_a_large_array_with_one_removal_is_still_aligned() -> None:
    items = [{"id": i, "label": f"item {i}"} for i in range(5000)]
    changed = [dict(item) for item in items]
    changed[2500]["label"] = "changed"
    del changed[10]
    changed.append({"id": 5000})
    started = time.perf_counter()
    paths = [(c["kind"], c["path"]) for c in rendered({"items": items}, {"items": changed})]
    assert time.perf_counter() - started < 5
    assert paths == [
        ("removed", "/items/10"),
        ("changed", "/items/2499/label"),
        ("added", "/items/4999"),
    ]

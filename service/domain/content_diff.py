"""What changed between two versions' `content`: a structured diff of JSON values, no I/O.

A change is named by its path, a JSON Pointer (RFC 6901: `/body/0/text`; `~` and `/` in keys
escaped as `~0` and `~1`), so keys holding `.` or `$` stay unambiguous, and by its segments
(keys as strings, array positions as integers). Objects are compared key by key; arrays are
aligned with difflib's SequenceMatcher, so an element inserted at the front reads as one
`added`, not as every later element `changed`; strings that differ also carry a text diff a
page can render without computing anything: runs of `equal`, `delete` and `insert` text,
word by word for one-line strings and line by line when either side has several lines.

Values are compared as JSON, strictly: `1`, `1.0` and `true` are three different values
(the version stores what was sent, so a change of type is a change).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Kind = Literal["added", "removed", "changed"]
Op = Literal["equal", "delete", "insert"]

# Word-level diffs of strings longer than this many tokens fall back to lines: a
# whole-document string gains little from word runs.
MAX_WORD_TOKENS = 5000
# SequenceMatcher is quadratic in the worst case (long runs of equal elements). After the
# common head and tail are set aside, a middle larger than this (old length x new length)
# is aligned with difflib's "popular element" heuristic (autojunk: an element making up
# more than 1 % of a long sequence does not seed a match), so one request cannot hold the
# API for seconds with a large repetitive array or text; smaller ones are aligned exactly.
MAX_EXACT_ALIGNMENT = 4_000_000
# Past this (two arrays of ~16,000 elements), the middle is compared position by position
# (one "replace"), never aligned: alignment of that much repetitive data costs seconds.
MAX_ALIGNMENT = 250_000_000
_WORDS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True, slots=True)
class TextDiff:
    granularity: Literal["word", "line"]
    ops: list[tuple[Op, str]]

    def render(self) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "ops": [{"op": op, "text": text} for op, text in self.ops],
        }


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    segments: tuple[str | int, ...]
    old: Any = None
    new: Any = None
    text: TextDiff | None = field(default=None)

    @property
    def path(self) -> str:
        return pointer(self.segments)

    def render(self) -> dict[str, Any]:
        """As the API answers it: `old` only when there was a value, `new` only when there
        is one (a JSON `null` is a value, so absence is told by the key being absent)."""
        out: dict[str, Any] = {
            "path": self.path,
            "segments": list(self.segments),
            "kind": self.kind,
        }
        if self.kind != "added":
            out["old"] = self.old
        if self.kind != "removed":
            out["new"] = self.new
        if self.text is not None:
            out["text_diff"] = self.text.render()
        return out


def pointer(segments: tuple[str | int, ...]) -> str:
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every path whose value differs between `old` and `new`, in document order (the new
    document's key order, then keys only the old one had); unchanged paths are left out."""
    changes: list[Change] = []
    _diff_value(old, new, (), changes)
    return changes


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells `1`, `1.0` and `true` apart, and keeps key order out of it."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _diff_value(old: Any, new: Any, at: tuple[str | int, ...], out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in new.items():
            if key not in old:
                out.append(Change("added", (*at, key), new=value))
            else:
                _diff_value(old[key], value, (*at, key), out)
        out.extend(
            Change("removed", (*at, key), old=value) for key, value in old.items() if key not in new
        )
    elif isinstance(old, list) and isinstance(new, list):
        _diff_list(old, new, at, out)
    elif not same(old, new):
        text = text_diff(old, new) if isinstance(old, str) and isinstance(new, str) else None
        out.append(Change("changed", at, old=old, new=new, text=text))


def _key(value: Any) -> bytes:
    # A canonical form for aligning array elements: equal JSON gives equal bytes (types
    # told apart as `same` does, since orjson writes 1, 1.0 and true differently).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _diff_list(
    old: list[Any], new: list[Any], at: tuple[str | int, ...], out: list[Change]
) -> None:
    for tag, i1, i2, j1, j2 in opcodes([_key(v) for v in old], [_key(v) for v in new]):
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        # Elements replaced one for one are compared in depth (an object in a list whose
        # one field changed is one change at that field); the rest were added or removed.
        for k in range(paired):
            _diff_value(old[i1 + k], new[j1 + k], (*at, j1 + k), out)
        out.extend(Change("removed", (*at, i), old=old[i]) for i in range(i1 + paired, i2))
        out.extend(Change("added", (*at, j), new=new[j]) for j in range(j1 + paired, j2))


Opcode = tuple[str, int, int, int, int]


def opcodes(a: list[Any], b: list[Any]) -> list[Opcode]:
    """difflib's opcodes, with the common head and tail found first (linear), and a large
    middle aligned with difflib's heuristic (`MAX_EXACT_ALIGNMENT`)."""
    head = 0
    while head < len(a) and head < len(b) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a_end, b_end = len(a) - tail, len(b) - tail
    ops: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    middle_a, middle_b = a[head:a_end], b[head:b_end]
    size = len(middle_a) * len(middle_b)
    if size > MAX_ALIGNMENT:
        ops.append(("replace", head, a_end, head, b_end))
    elif middle_a or middle_b:
        large = size > MAX_EXACT_ALIGNMENT
        matcher = difflib.SequenceMatcher(None, middle_a, middle_b, autojunk=large)
        ops += [
            (tag, i1 + head, i2 + head, j1 + head, j2 + head)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        ]
    if tail:
        ops.append(("equal", a_end, len(a), b_end, len(b)))
    return ops


def text_diff(old: str, new: str) -> TextDiff:
    """Runs of equal, deleted and inserted text that rebuild `old` (equal + delete) and
    `new` (equal + insert), by word (whitespace kept as its own token) or by line."""
    if "\n" in old or "\n" in new:
        return TextDiff("line", _ops(old.splitlines(keepends=True), new.splitlines(keepends=True)))
    words_old, words_new = _WORDS.findall(old), _WORDS.findall(new)
    if max(len(words_old), len(words_new)) > MAX_WORD_TOKENS:
        return TextDiff("line", _ops([old], [new]))
    return TextDiff("word", _ops(words_old, words_new))


def _ops(a: list[str], b: list[str]) -> list[tuple[Op, str]]:
    ops: list[tuple[Op, str]] = []

    def emit(op: Op, text: str) -> None:
        if not text:
            return
        if ops and ops[-1][0] == op:
            ops[-1] = (op, ops[-1][1] + text)
        else:
            ops.append((op, text))

    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            emit("equal", "".join(a[i1:i2]))
        else:
            emit("delete", "".join(a[i1:i2]))
            emit("insert", "".join(b[j1:j2]))
    return ops


def summary(changes: list[Change]) -> dict[str, int]:
    counts = {"added": 0, "removed": 0, "changed": 0}
    for change in changes:
        counts[change.kind] += 1
    return counts

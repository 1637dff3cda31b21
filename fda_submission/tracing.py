"""Traced numbers: every number a document prints knows the file (and place in it) it came from.

The context of the documents is built from the run's files, the device profile and a few
derived records (:mod:`fda_submission.evidence`). Each is wrapped on load (:func:`traced`):
mappings and lists become read-only views whose items carry their place (``splits.test.auroc.value``
in ``evaluation/metrics.json``), and numbers become :class:`TracedInt` / :class:`TracedFloat`,
which behave as ints and floats and carry a :class:`Source`. Arithmetic on traced numbers keeps
the trace as an expression (:class:`Expr`: ``100 * x``, ``a - b``), so a derived number can be
recomputed as well.

Formatting a traced number - an f-string in Python (``f"{x:.3f}"``) or a filter in a template -
registers it with the active :class:`TraceRecorder` and returns the text wrapped in invisible
markers (:data:`OPEN`, :data:`SEP`, :data:`CLOSE`, private-use characters) that the renderer
replaces: by nothing in Markdown, by ``<span class="tn" data-trace=ID>`` in HTML, and by one
entry per printed number in the package's ``trace.json``, which ``cxr-device submission --verify``
re-reads from the run (:mod:`fda_submission.verify`).

Texts are traced too (:class:`TracedStr`): a printed text is one span whose numbers count as
sourced, checked as a whole by ``--verify``, and each section's source note lists the files and
profile keys it prints.
"""
from __future__ import annotations

import contextvars
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

OPEN, SEP, CLOSE = "\ue000", "\ue001", "\ue002"
TEXT_OPEN, TEXT_SEP, TEXT_CLOSE = "\ue003", "\ue005", "\ue006"
#: A traced number in rendered text: id, then the printed text.
MARKED = re.compile(f"{OPEN}(\\d+){SEP}([^{CLOSE}]*){CLOSE}")
#: A traced text (a profile value): id, then the text (which may span lines).
TEXT_MARKED = re.compile(f"{TEXT_OPEN}(\\d+){TEXT_SEP}(.*?){TEXT_CLOSE}", re.DOTALL)
ANY_MARK = re.compile(f"[{OPEN}{SEP}{CLOSE}{TEXT_OPEN}{TEXT_SEP}{TEXT_CLOSE}]")
PROFILE = "profile"


@dataclass(frozen=True)
class Source:
    """A place in a file: ``file`` (relative to the run, ``profile`` or a package record) and the
    ``path`` inside it (``splits.test.auroc.value``, ``[3].val_auroc``; ``""`` for the whole)."""

    file: str
    path: str = ""

    def child(self, key: Any) -> Source:
        """The place of one item below this one."""
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else str(key))
        return Source(self.file, f"{self.path}{step}")

    def describe(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file

    def as_dict(self) -> dict:
        return {"file": self.file, "path": self.path}


@dataclass(frozen=True)
class Expr:
    """A number computed from traced numbers: ``op`` over ``args`` (sources, expressions, constants)."""

    op: str
    args: tuple

    def describe(self) -> str:
        parts = [a.describe() if isinstance(a, (Source, Expr)) else repr(a) for a in self.args]
        return f"{self.op}({', '.join(parts)})"

    def as_dict(self) -> dict:
        return {"op": self.op, "args": [a.as_dict() if isinstance(a, (Source, Expr)) else a for a in self.args]}

    def files(self) -> list[str]:
        out = []
        for a in self.args:
            out += a.files() if isinstance(a, Expr) else [a.file] if isinstance(a, Source) else []
        return out


Ref = Union[Source, Expr]
OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
             "neg": operator.neg, "abs": abs, "len": len, "log": math.log, "min": min, "max": max}


def files_of(ref: Ref) -> list[str]:
    """The files a reference reads."""
    return ref.files() if isinstance(ref, Expr) else [ref.file]


# --- the recorder ------------------------------------------------------------------------------
@dataclass
class Entry:
    """One traced value as formatted: its reference, the format spec and the text printed."""

    ref: Ref
    spec: str
    text: str
    value: Any
    kind: str = "number"  # number | text


@dataclass
class TraceRecorder:
    """The traced values formatted while a package is rendered, by id (ids are sequential, so the
    same inputs give the same ids)."""

    entries: list[Entry] = field(default_factory=list)

    def mark(self, value: Any, ref: Ref, spec: str, text: str) -> str:
        """Register a formatted number; the marked text to print."""
        self.entries.append(Entry(ref, spec, text, _plain(value)))
        return f"{OPEN}{len(self.entries) - 1}{SEP}{text}{CLOSE}"

    def tag(self, ref: Ref, text: str) -> str:
        """Register a printed text; the text inside invisible source tags."""
        self.entries.append(Entry(ref, "", text, text, "text"))
        return f"{TEXT_OPEN}{len(self.entries) - 1}{TEXT_SEP}{text}{TEXT_CLOSE}"


def strip_marks(text: str) -> str:
    """Text without the tracer's markers (what a reader sees)."""
    return ANY_MARK.sub("", TEXT_MARKED.sub(lambda m: m.group(2), MARKED.sub(lambda m: m.group(2), text)))


_recorder: contextvars.ContextVar[TraceRecorder | None] = contextvars.ContextVar("cxr_trace_recorder", default=None)


def recording(recorder: TraceRecorder | None):
    """Make ``recorder`` the active one (a token for :func:`stop_recording`)."""
    return _recorder.set(recorder)


def stop_recording(token) -> None:
    _recorder.reset(token)


def active() -> TraceRecorder | None:
    return _recorder.get()


def _formatted(value, ref: Ref, spec: str) -> str:
    text = format(_plain(value), spec)
    recorder = _recorder.get()
    return recorder.mark(value, ref, spec, text) if recorder is not None else text


# --- traced values -----------------------------------------------------------------------------
class _TracedNumber:
    """Arithmetic and formatting of traced numbers (mixed into int and float)."""

    ref: Ref

    def __format__(self, spec: str) -> str:
        return _formatted(self, self.ref, spec)

    def _combine(self, op: str, other, swapped: bool = False):
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            return NotImplemented
        mine, theirs = _plain(self), _plain(other)
        result = OPERATORS[op](theirs, mine) if swapped else OPERATORS[op](mine, theirs)
        other_ref = other.ref if isinstance(other, _TracedNumber) else theirs
        args = (other_ref, self.ref) if swapped else (self.ref, other_ref)
        return number(result, Expr(op, args))

    def __add__(self, other):
        return self._combine("add", other)

    def __radd__(self, other):
        return self._combine("add", other, True)

    def __sub__(self, other):
        return self._combine("sub", other)

    def __rsub__(self, other):
        return self._combine("sub", other, True)

    def __mul__(self, other):
        return self._combine("mul", other)

    def __rmul__(self, other):
        return self._combine("mul", other, True)

    def __truediv__(self, other):
        return self._combine("truediv", other)

    def __rtruediv__(self, other):
        return self._combine("truediv", other, True)

    def __neg__(self):
        return number(-_plain(self), Expr("neg", (self.ref,)))

    def __abs__(self):
        return number(abs(_plain(self)), Expr("abs", (self.ref,)))


class TracedInt(_TracedNumber, int):
    """An int with its source."""

    def __new__(cls, value: int, ref: Ref):
        obj = int.__new__(cls, value)
        obj.ref = ref
        return obj

    def __reduce__(self):
        return int, (int(self),)


class TracedFloat(_TracedNumber, float):
    """A float with its source."""

    def __new__(cls, value: float, ref: Ref):
        obj = float.__new__(cls, value)
        obj.ref = ref
        return obj

    def __reduce__(self):
        return float, (float(self),)


class TracedStr(str):
    """A text with its source: printed (``{{ text }}``, an f-string), it is wrapped in invisible
    tags naming its source, so that the numbers inside it count as sourced and ``--verify`` can
    compare it with its source."""

    def __new__(cls, value: str, ref: Ref):
        obj = str.__new__(cls, value)
        obj.ref = ref
        return obj

    def __format__(self, spec: str) -> str:
        text = format(str(self), spec)
        recorder = _recorder.get()
        return recorder.tag(self.ref, text) if recorder is not None and text else text

    def __reduce__(self):
        return str, (str(self),)


def number(value, ref: Ref):
    """A traced number of ``value``'s type (ints stay ints)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return TracedInt(value, ref)
    return TracedFloat(value, ref) if isinstance(value, float) else value


def _plain(value):
    """The value without its trace."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, TracedInt):
        return int(value)
    if isinstance(value, TracedFloat):
        return float(value)
    if isinstance(value, TracedStr):
        return str(value)
    return value


class TracedMapping(Mapping):
    """A read-only view of a mapping whose items carry their place; ``places`` gives some keys a
    place of their own (a value added to a file's content by the renderer)."""

    __slots__ = ("_data", "ref", "_places")

    def __init__(self, data: Mapping, ref: Source, places: Mapping[str, Source] | None = None):
        self._data, self.ref, self._places = data, ref, places or {}

    def __getitem__(self, key):
        return traced(self._data[key], self._places.get(key) or self.ref.child(key))

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"TracedMapping({self.ref.describe()}, {len(self._data)} keys)"


class TracedList(Sequence):
    """A read-only view of a list whose items carry their place."""

    __slots__ = ("_data", "ref")

    def __init__(self, data: Sequence, ref: Source):
        self._data, self.ref = data, ref

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._data)))]
        return traced(self._data[index], self.ref.child(index if index >= 0 else len(self._data) + index))

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, TracedList)) else NotImplemented

    def __repr__(self) -> str:
        return f"TracedList({self.ref.describe()}, {len(self._data)} items)"

    def __add__(self, other) -> list:
        """The items of both, each still carrying its place (a plain list)."""
        return [*self, *other]

    def __radd__(self, other) -> list:
        return [*other, *self]

    def count_traced(self) -> TracedInt:
        """How many items, traced (``len`` of its source)."""
        return TracedInt(len(self._data), Expr("len", (self.ref,)))


def traced(value: Any, ref: Source):
    """``value`` wrapped with its place: mappings and lists as views, numbers as traced numbers,
    text of the profile as :class:`TracedStr`; anything else as it is."""
    if isinstance(value, (TracedMapping, TracedList, _TracedNumber, TracedStr)):
        return value
    if isinstance(value, Mapping):
        return TracedMapping(value, ref)
    if isinstance(value, (list, tuple)):
        return TracedList(value, ref)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value, ref)
    if isinstance(value, str):
        return TracedStr(value, ref)
    return value


def untraced(value: Any) -> Any:
    """Plain Python data (dicts, lists, numbers, text) of a traced value, for JSON."""
    if isinstance(value, (TracedMapping, Mapping)):
        return {k: untraced(v) for k, v in value.items()}
    if isinstance(value, (TracedList, list, tuple)):
        return [untraced(v) for v in value]
    return _plain(value)


# --- reading a reference back (what --verify does) ------------------------------------------------
_STEP = re.compile(r"\[(-?\d+)\]|\.?([^.\[\]]+)")


def resolve_path(document: Any, path: str) -> Any:
    """The value at ``path`` (``splits.test.auroc.value``, ``[3].val_auroc``) in loaded data."""
    value = document
    for index, key in _STEP.findall(path):
        value = value[int(index)] if index else value[key]
    return value


def evaluate(ref: Ref, load) -> Any:
    """The value a reference gives now: ``load(file)`` returns a file's loaded data."""
    if isinstance(ref, Source):
        return resolve_path(load(ref.file), ref.path)
    args = [evaluate(a, load) if isinstance(a, (Source, Expr)) else a for a in ref.args]
    return OPERATORS[ref.op](*args)


def ref_from_dict(data: dict) -> Ref:
    """A reference from its ``as_dict`` form (trace.json)."""
    if "op" in data:
        return Expr(data["op"], tuple(ref_from_dict(a) if isinstance(a, dict) else a for a in data["args"]))
    return Source(data["file"], data.get("path", ""))


def log(value) -> float:
    """The natural logarithm, traced when ``value`` is."""
    result = math.log(_plain(value))
    return number(result, Expr("log", (value.ref,))) if isinstance(value, _TracedNumber) else result


def joined(items, separator: str = "") -> str:
    """``separator.join`` that keeps each traced item traced (Jinja's ``join``)."""
    return separator.join(format(item, "") if isinstance(item, (_TracedNumber, TracedStr)) else str(item)
                          for item in items)

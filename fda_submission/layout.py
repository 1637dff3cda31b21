"""From a rendered template to the document's final Markdown: numbers, notes and owner fields.

A template renders to Markdown that still carries the tracer's invisible markers
(:mod:`fda_submission.tracing`) and the placeholders of figure and table numbers. :func:`finish`
turns it into what the reader gets, in the same way for the ``.md`` file and for the Markdown
that becomes HTML (and PDF):

* figures and tables are numbered within their top-level section (``Figure 3-2``, ``Table 6-1``),
  and references to them (``{{ ref("fig:roc") }}``) print those numbers;
* a traced number prints as itself (Markdown) or inside ``<span class="tn" data-trace=ID>``
  (HTML); each gets an id, ``<document code>-<n>``, the same in both, and an entry for
  ``trace.json``; numbers that are not traced are listed (:attr:`Finished.untraced`);
* where a section's numbers and profile values come from is said once, in a small note at the
  end of the section ("Sources: ..."), not in the sentences;
* the markers of fields a person must fill (``[TO BE COMPLETED: what (profile: key)]``) print as
  ``[TBC: what]``; the package's owner-fields table lists each with its profile key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .completeness import MARKER
from .numbers import numeric_tokens
from .tracing import ANY_MARK, MARKED, PROFILE, TEXT_MARKED, Expr, Source, TraceRecorder, files_of

#: Text quoted from elsewhere (a consistency finding names its sources itself): its numbers are
#: printed as found, not traced again.
QUOTED = re.compile("\ue007.*?\ue008", re.DOTALL)
QUOTE_MARKS = re.compile("[\ue007\ue008]")
#: Placeholders the figure, table and ref helpers print; numbered here.
NUMBERING = re.compile("\ue004(NUM|REF):(fig|tab):([^\ue004]+)\ue004")
_SECTION = re.compile(r"^## (?:(?:Appendix )?(\d+|[A-Z])\.?\s)?(.*)$")
_OWNER = re.compile(r"\[TO BE COMPLETED: ([^\]\n]*?) \((profile: [^)\n]+|option [^)\n]+)\)\]")
_KINDS = {"fig": "Figure", "tab": "Table"}


def placeholder(kind: str, key: str, define: bool) -> str:
    """What a template prints where a figure or table number goes (``kind`` fig or tab)."""
    return f"\ue004{'NUM' if define else 'REF'}:{kind}:{key}\ue004"


@dataclass
class Finished:
    """A finished document: its text, the traced numbers it prints, and what else it printed."""

    text: str
    numbers: list[dict] = field(default_factory=list)  # trace.json entries, in reading order
    untraced: list[dict] = field(default_factory=list)  # numbers printed without a source
    tokens: list[dict] = field(default_factory=list)  # every number printed, traced or not, in order
    owner_fields: list[dict] = field(default_factory=list)  # [{"what", "where"}]
    labels: dict[str, str] = field(default_factory=dict)  # "fig:roc" -> "Figure 6-1"


def finish(text: str, code: str, document: str, recorder: TraceRecorder, html: bool) -> Finished:
    """The final Markdown of one document (see the module notes)."""
    text, labels = _number(text)
    plain, numbers, texts = _unmark(text, recorder)
    out = Finished(plain, labels=labels)
    headings = [(m.start(), m.group(0)[3:].strip()) for m in re.finditer(r"(?m)^## .*$", plain)]

    def section_at(offset: int) -> int:
        return max((i for i, (start, _) in enumerate(headings) if start <= offset), default=-1)

    sources: dict[int, dict] = {}
    ids: list[str] = []
    for n, (start, end, entry) in enumerate(numbers, 1):
        trace_id = f"{code}-{n}"
        ids.append(trace_id)
        where = section_at(start)
        _cite(entry.ref, sources.setdefault(where, {}))
        out.numbers.append({"id": trace_id, "document": document, "section": headings[where][1] if where >= 0 else "",
                            "text": plain[start:end], "spec": entry.spec, "value": entry.value,
                            "source": entry.ref.as_dict()})
    for start, _end, entry in texts:
        _cite(entry.ref, sources.setdefault(section_at(start), {}))
    line_starts = [0] + [m.end() for m in re.finditer("\n", plain)]
    quotes = [(m.start(), m.end()) for m in QUOTED.finditer(plain)]
    for token in [] if html else numeric_tokens(plain):  # the HTML rendering holds the same numbers
        offset = line_starts[token.line - 1] + token.column
        where = section_at(offset)
        owner = next((ids[i] for i, (s, e, _) in enumerate(numbers) if s <= offset < e), None)
        profile = any(s <= offset < e for s, e, _ in texts) or any(s <= offset < e for s, e in quotes)
        out.tokens.append({"text": token.text, "trace": owner, "profile_text": profile})
        if owner is None and not profile:
            context = plain[max(0, offset - 50):offset + len(token.text) + 50].replace("\n", " ").strip()
            out.untraced.append({"document": document, "section": headings[where][1] if where >= 0 else "",
                                 "text": token.text, "context": context})
    # insertions from the end, so that earlier offsets stay valid
    inserts: list[tuple[int, str]] = []
    if html:
        inserts += [(e, "</span>") for s, e, _ in numbers]
        inserts += [(s, f'<span class="tn" data-trace="{ids[i]}">') for i, (s, _, _) in enumerate(numbers)]
    bounds = [start for start, _ in headings] + [len(plain)]
    for where, found in sources.items():
        if where >= 0 and found:
            end = bounds[where + 1]  # the last section's note starts a paragraph of its own
            gap = "\n" if end == len(plain) and not plain.endswith("\n\n") else ""
            inserts.append((end, gap + _note(found, html) + "\n\n"))
    for offset, insert in sorted(inserts, key=lambda item: item[0], reverse=True):
        plain = plain[:offset] + insert + plain[offset:]
    out.text = _owner_fields(QUOTE_MARKS.sub("", plain).rstrip("\n") + "\n", out)
    return out


def _unmark(text: str, recorder: TraceRecorder) -> tuple[str, list, list]:
    """The text without markers, and the spans (start, end, entry) of traced numbers and texts in it."""
    numbers, texts, pieces, length, position = [], [], [], 0, 0
    pattern = re.compile(f"{MARKED.pattern}|{TEXT_MARKED.pattern}", re.DOTALL)
    for match in pattern.finditer(text):
        before = text[position:match.start()]
        pieces.append(before)
        length += len(before)
        if match.group(1) is not None:
            shown, bucket, index = match.group(2), numbers, int(match.group(1))
        else:
            shown, bucket, index = ANY_MARK.sub("", MARKED.sub(lambda m: m.group(2), match.group(4))), texts, \
                int(match.group(3))
        bucket.append((length, length + len(shown), recorder.entries[index]))
        pieces.append(shown)
        length += len(shown)
        position = match.end()
    pieces.append(text[position:])
    return ANY_MARK.sub("", "".join(pieces)), numbers, texts


def _cite(ref, sources: dict) -> None:
    for item in (ref.args if isinstance(ref, Expr) else (ref,)):
        if isinstance(item, Expr):
            _cite(item, sources)
        elif isinstance(item, Source):
            if item.file == PROFILE:
                sources.setdefault("profile", set()).add(item.path.split(".")[0].split("[")[0])
            else:
                sources.setdefault("files", set()).update(files_of(item))


def _note(sources: dict, html: bool) -> str:
    """The section's source note: its files, then the profile keys it prints."""
    files = sorted(sources.get("files", ()))
    keys = sorted(sources.get("profile", ()))
    parts = []
    if files:
        parts.append(", ".join(f"`{f}`" for f in files))
    if keys:
        parts.append("profile: " + ", ".join(keys))
    text = "Sources: " + "; ".join(parts) + "."
    return f'<p class="sources">{_inline_code(text)}</p>' if html else f"*{text}*"


def _inline_code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _number(text: str) -> tuple[str, dict[str, str]]:
    """Number figures and tables within their top-level section; resolve references."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    section = "0"
    lines = text.split("\n")
    for i, line in enumerate(lines):
        heading = _SECTION.match(line)
        if heading and not line.startswith("###") and (heading.group(1) or section) != section:
            section, counts = heading.group(1), {}  # an unnumbered section continues the numbers

        def define(match: re.Match) -> str:
            kind, key = match.group(2), match.group(3)
            counts[kind] = counts.get(kind, 0) + 1
            labels[f"{kind}:{key}"] = f"{_KINDS[kind]} {section}-{counts[kind]}"
            return labels[f"{kind}:{key}"]

        lines[i] = NUMBERING.sub(lambda m: define(m) if m.group(1) == "NUM" else m.group(0), line)
    text = "\n".join(lines)
    return NUMBERING.sub(lambda m: labels.get(f"{m.group(2)}:{m.group(3)}", f"{_KINDS[m.group(2)]} (not found)"),
                         text), labels


def _owner_fields(text: str, out: Finished) -> str:
    def short(match: re.Match) -> str:
        record = {"what": match.group(1), "where": match.group(2)}
        if record not in out.owner_fields:
            out.owner_fields.append(record)
        return f"[TBC: {match.group(1)}]"

    return _OWNER.sub(short, text)


def short_markers(text: str) -> str:
    """``text`` with each owner-field marker in its short form, ``[TBC: what]`` (as :func:`finish`
    prints them; for text outside the documents' body, such as the page footer)."""
    def short(match: re.Match) -> str:
        owner = _OWNER.fullmatch(match.group(0))
        return f"[TBC: {owner.group(1) if owner else match.group(1)}]"

    return MARKER.sub(short, text)


def owner_marker_count(text: str) -> int:
    """How many long owner-field markers a text still holds (none after :func:`finish`)."""
    return len(MARKER.findall(text))

"""What the HTML (and so the PDF) needs to print well, added to the tree Python-Markdown builds.

The print stylesheet (``templates/document.css``) acts on classes and break opportunities that
Markdown cannot express; :class:`PrintLayout` adds them while the document is converted:

* a table whose header cells are all empty (a key-value table, written ``| | |`` then
  ``|---|---|``) loses its header row and gets the class ``kv``;
* a table of at most :data:`SHORT_TABLE_ROWS` rows gets ``short`` (printed on one page);
* a cell that says only fail, failed or not met (:data:`FAIL_WORDS`) gets ``fail``; a short
  cell of numbers gets ``num`` and a cell that is one identifier (:data:`IDENTIFIER`:
  ``REQ-INPUT-001``, ``HAZ-01``) gets ``word``: neither is wrapped, so a number or an identifier
  never breaks across lines (an identifier at its hyphen, in a narrow column);
* a block quote holding a list (a draft's open findings) gets ``findings``: unlike a banner, it
  may run over a page, between its items;
* the numbered caption before a table (``Table 6-1: ...``) gets ``caption`` and a paragraph
  that is one bold phrase (``**Revision history**``) gets ``lead``: each is kept with what follows;
* inline code - file paths, test node ids, dotted names, hashes - gets a ``<wbr>`` break
  opportunity after ``/``, ``::``, a ``_`` or ``.`` inside a name, and every 16 characters of a
  hash, so that it wraps at those points rather than anywhere; so does a word of
  :data:`LONG_WORD` characters or more in a table cell (a module name, a UID), which would
  otherwise widen its column past the page. (The stylesheet leaves code at ``overflow-wrap:
  normal``: with ``break-word`` WeasyPrint breaks a code span mid-name before it uses a ``<wbr>``.)

In a contents list, a section of more than :data:`CONTENTS_ENTRIES` subsections (the software
requirements, the modules) is listed without them.

Only attributes and ``<wbr>`` are added: no text changes, so the traced numbers
(``<span class="tn">``) read back by ``submission --verify`` are untouched.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from markdown.extensions import Extension
from markdown.postprocessors import Postprocessor
from markdown.treeprocessors import Treeprocessor
from markdown.util import AtomicString

#: A table of at most this many body rows is printed whole (moved to the next page if need be).
SHORT_TABLE_ROWS = 12
#: A cell of at most this many characters of numbers (``0.727 (8/11)``, ``8 / 2 / 34 / 3``,
#: ``23.4%``) is kept on one line.
SHORT_NUMBER = 18
NUMERIC = re.compile(r"[\d\s.,;:%()/+<>=-]+")
#: A cell that is one identifier (``REQ-INPUT-001``, ``HAZ-01``, ``CT-05``): kept on one line.
IDENTIFIER = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+){1,3}")
#: A section of more subsections than this is listed in a contents list without them.
CONTENTS_ENTRIES = 20
#: Cell texts marked as a failure (compared in lower case, the whole cell).
FAIL_WORDS = frozenset({"fail", "failed", "fails", "not met"})
#: The caption paragraph the renderer prints before a table (fda_submission.layout numbers it).
CAPTION = re.compile(r"(?:Table|Figure) [0-9A-Z]+-\d+: ")
#: Where inline code may wrap: after a path, name or list separator, or inside a long hash.
_BREAK_AFTER = re.compile(r"(::|/|[_.](?=\w))")
_HASH = re.compile(r"[0-9a-f]{32,}")
#: A word in a table cell this long or longer gets the same break opportunities as code.
LONG_WORD = 16
_LONG = re.compile(rf"\S{{{LONG_WORD},}}")
_WBR = "\ue00a"  # placeholder in the tree, replaced by <wbr> in the serialized HTML
_STASHED = re.compile("\x02[^\x03]*\x03")  # Python-Markdown's placeholders of raw inline HTML


def cell_text(element: ET.Element) -> str:
    """The visible text of an element of the tree, without the placeholders of raw HTML."""
    return _STASHED.sub("", "".join(element.itertext())).strip()


def _add_class(element: ET.Element, name: str) -> None:
    element.set("class", " ".join([*element.get("class", "").split(), name]))


def breakable(code: str) -> str:
    """``code`` with the break placeholder after separators and every 16 characters of a hash."""
    code = _HASH.sub(lambda m: _WBR.join(m.group(0)[i:i + 16] for i in range(0, len(m.group(0)), 16)), code)
    return _BREAK_AFTER.sub(lambda m: m.group(1) + _WBR, code)


class _Tables(Treeprocessor):
    def run(self, root: ET.Element) -> None:
        for table in root.iter("table"):
            head = table.find("thead")
            if head is not None and not any(cell_text(cell) for cell in head.iter("th")):
                table.remove(head)
                _add_class(table, "kv")
            body = table.find("tbody")
            if body is None or len(body) <= SHORT_TABLE_ROWS:
                _add_class(table, "short")
            for cell in table.iter("td"):
                _break_long_words(cell)
                text = cell_text(cell)
                if text.lower() in FAIL_WORDS:
                    _add_class(cell, "fail")
                if len(text) <= SHORT_NUMBER and NUMERIC.fullmatch(text) and any(c.isdigit() for c in text):
                    _add_class(cell, "num")
                elif IDENTIFIER.fullmatch(text):
                    _add_class(cell, "word")
        for paragraph in root.iter("p"):
            children = list(paragraph)
            if (paragraph.text or "").strip() or len(children) != 1 or (children[0].tail or "").strip():
                continue
            if children[0].tag == "em" and CAPTION.match(cell_text(children[0])):
                _add_class(paragraph, "caption")
            elif children[0].tag == "strong":
                _add_class(paragraph, "lead")
        for quote in root.iter("blockquote"):
            if quote.find("ul") is not None:  # a list of findings: may run over a page, item by item
                _add_class(quote, "findings")
        blocks = {id(code) for pre in root.iter("pre") for code in pre.iter("code")}  # keep their lines
        for code in root.iter("code"):
            if id(code) not in blocks and code.text and not len(code):
                code.text = AtomicString(breakable(code.text))


def _long_words(text: str) -> str:
    """``text`` with break opportunities in its long words, except a word that touches raw HTML
    (a traced number's span: printed exactly as traced)."""
    return _LONG.sub(lambda m: m.group(0) if _STASHED.search(m.group(0)) else breakable(m.group(0)), text)


def _break_long_words(cell: ET.Element) -> None:
    """Break opportunities in the long words of a cell's own text (code has its own)."""
    for element in cell.iter():
        if element.tag != "code" and element.text and not isinstance(element.text, AtomicString):
            element.text = _long_words(element.text)
        if element is not cell and element.tail:
            element.tail = _long_words(element.tail)


class _Contents(Treeprocessor):
    """A section with more than :data:`CONTENTS_ENTRIES` subsections is listed alone in the contents
    list (its sixty requirements or seventeen modules would fill pages of it)."""

    def run(self, root: ET.Element) -> None:
        for toc in root.iter("div"):
            if "toc" not in toc.get("class", "").split():
                continue
            for document in toc.iterfind("ul/li"):  # the title; its sections and their subsections below
                for section in document.iterfind("ul/li"):
                    sub = section.find("ul")
                    if sub is not None and len(sub) > CONTENTS_ENTRIES:
                        section.remove(sub)


class _Breaks(Postprocessor):
    def run(self, text: str) -> str:
        return text.replace(_WBR, "<wbr>")


class PrintLayout(Extension):
    """Python-Markdown extension: the classes and break opportunities of the module notes."""

    def extendMarkdown(self, md) -> None:  # Python-Markdown's name for the hook
        md.treeprocessors.register(_Tables(md), "cxr_print_layout", 4)  # after SafeLinks (5)
        md.treeprocessors.register(_Contents(md), "cxr_contents", 3)  # after the contents list is made (toc, 5)
        md.postprocessors.register(_Breaks(md), "cxr_breaks", 5)  # after raw HTML is put back (30)

"""The numbers a document prints: found in its text, and told apart from the ones that need no source.

:func:`numeric_tokens` finds every number in a line of text (``0.934``, ``1,234``, ``95``),
skipping what is not a statement of a result: code spans, headings, the numbers of figures and
tables, list numbering, and :data:`LITERALS` - references to regulations and standards (21 CFR
892.2080, ISO 14971, IEC 62304, PS3.15, TID 1500), DICOM tags, dates and versions, the "95%" of a
confidence level. Every other number must be traced (:mod:`fda_submission.tracing`): the renderer
reports the ones that are not, and ``submission --verify`` names them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: A number: digits with optional thousands separators and decimals, not part of a word or a longer number.
NUMBER = re.compile(r"(?<![\w.\\])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w]|\.\d)|(?<![\w.\\])\d+(?:\.\d+)?(?![\w]|\.\d)")
#: Text that holds digits but is not a result: removed before numbers are looked for.
LITERALS = re.compile("|".join([
    r"`[^`\n]*`",                                   # code spans (file names, hashes, commands)
    r"<code>.*?</code>",
    r"\b95 ?%",                                     # the confidence level of every interval
    r"\b21 CFR (?:Part )?\d+(?:\.\d+)*",
    r"\b(?:ISO|IEC|EN|ANSI|AAMI|UL|ISO/IEC|IEC/TR|ISO/TR)[ /]*\d+(?:[-.]\d+)*(?::\d{4})?",
    r"\b(?:PS ?3|DICOM PS ?3)\.\d+(?: (?:Annex|section) [A-Z0-9.]+)?", r"\bPart \d+",
    r"\b(?:TID|CID|RFC|BCP|CWE|CVE|CVSS|SP|NIST SP|Annex)[- ]?[\d.-]+(?:[A-Z]\b)?",
    r"\b524B\b", r"\b510\(k\)", r"\bK\d{6}\b", r"\b(?:892|807|820|801)\.\d+\b", r"\bsection \d+[A-Z]?\b",
    r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)",            # DICOM tags
    r"\b\d{4}-\d{2}-\d{2}(?:T[\d:.]+Z?)?",           # dates
    r"\b(?:sections?|appendix|appendices|step|steps) \d+(?:\.\d+)*(?:(?: to |, | and )\d+(?:\.\d+)*)*",
    r"[A-Z][\w'-]+(?: (?:et al\.|and [A-Z][\w'-]+))?,? \(?(?:19|20)\d{2}[a-z]?\)?",   # a citation's year
    r"\bz\(1 ?- ?alpha\)",                           # formulas written in words
    r"§ ?\d+(?:\.\d+)*",
    r"\b\d+\.\d+\.\d+(?:\.\d+)*\b",                 # versions and UIDs
    r"\b(?:Figure|Table|figure|table|Figures|Tables) \d+-\d+",  # our own numbering
    r"!\[[^\]]*\]\([^)]*\)",                        # an image's alt text and file name
    r"\b(?:SCT|LN|DCM|UCUM|UMLS) [\w.-]+",          # codes of coding schemes
    r"\b(?:TLS ?|SHA|sha|Ed)\d+(?:\.\d)?", r"\bsha256\b", r"\bmethod \d+\b", r"\b\d+-sigma\b", r"\b\d+-bit\b", r"\bx\d+\b",
    r"\b[A-Z][A-Z0-9]*(?:-[A-Z][A-Z0-9]*)*-\d+\b",  # identifiers: HAZ-01, REQ-NODE-003, ANOM-013, ICD-10
    r"\bCycloneDX \d+(?:\.\d+)?", r"\bPython \d+(?:\.\d+)*",
    r"[\ue000-\uf8ff]",                             # stray markers are never numbers
]), re.DOTALL)
_LIST_ITEM = re.compile(r"^\s*\d+\.\s")


@dataclass(frozen=True)
class Token:
    """A number found in a text: what it says and where (line number, column)."""

    text: str
    line: int
    column: int


def _blank(match: re.Match) -> str:
    return " " * len(match.group(0))


def numeric_tokens(text: str, skip_headings: bool = True) -> list[Token]:
    """Every number of ``text`` that is a statement (see the module notes), in reading order."""
    out: list[Token] = []
    for number, line in enumerate(text.splitlines(), 1):
        if skip_headings and line.lstrip().startswith("#"):
            continue
        cleaned = _LIST_ITEM.sub(lambda m: " " * len(m.group(0)), line)
        cleaned = LITERALS.sub(_blank, cleaned)
        out += [Token(m.group(0), number, m.start()) for m in NUMBER.finditer(cleaned)]
    return out

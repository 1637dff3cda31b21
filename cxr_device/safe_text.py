"""Text from inputs made safe for where it is written: the terminal, XML, spreadsheets.

Header values, CSV cells and file names are attacker-controlled. Written raw they can clear a
terminal (``ESC[2J``), break an XML report (a NUL byte), run a formula when a CSV is opened in
a spreadsheet (``=HYPERLINK(...)``), or - a file name whose bytes are not UTF-8, which Python
holds as lone surrogates - fail to print at all. Every report renderer passes input-derived
text through one of these functions; JSON needs none (``json.dumps`` escapes all of these).
"""
from __future__ import annotations

import re

# C0 and C1 control characters and DEL, except tab and newline in multi-line text; the Unicode
# bidirectional overrides that can make a displayed line read differently than it is; and lone
# surrogates (undecodable bytes of a file name), which no UTF-8 stream can write.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CONTROL_ANY = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What ends or breaks a line: tab, LF, VT, FF, CR, NEL and the Unicode line and paragraph separators.
_LINE_BREAKS = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029]+")
# Characters XML 1.0 does not allow at all (a parser rejects the whole document).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # the byte a file name held that is not UTF-8 (surrogateescape)
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: object, multiline: bool = False) -> str:
    """``text`` with control characters shown as ``\\x1b``-style escapes (tab and newline kept
    when ``multiline``)."""
    return (_CONTROL if multiline else _CONTROL_ANY).sub(_escape, str(text))


def one_line(text: object) -> str:
    """``text`` on one line: each run of line breaks and tabs becomes one space, every other
    control character a visible escape (for values a document prints in a title or a cell)."""
    return terminal(_LINE_BREAKS.sub(" ", str(text)))


def xml_text(text: object) -> str:
    """``text`` that an XML 1.0 parser accepts: forbidden characters become visible escapes."""
    return _NOT_XML.sub(_escape, str(text))


def spreadsheet_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs: a leading ``= + - @`` (or tab,
    CR, LF) gets a ``'`` in front unless the cell is a plain number; control characters are
    escaped."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        text = "'" + text
    return terminal(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text

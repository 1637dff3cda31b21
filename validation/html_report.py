"""Self-contained HTML reports (``compare``, ``monitor``): inline style, figures embedded as PNG,
every text from the inputs escaped - no script, no external resource."""
from __future__ import annotations

import base64
import html

from cxr_device.safe_text import one_line

STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}"
         ".met{color:#1e7b34;font-weight:bold}.not{color:#b03a2e;font-weight:bold}img{max-width:100%}")


def text(value) -> str:
    """A value from the inputs as HTML text: on one line, control characters shown as escapes
    (``\\x1b``), markup escaped; ``n/a`` for None."""
    return html.escape("n/a" if value is None else one_line(value), quote=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A table whose header and cells are already escaped."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(png: bytes, alt: str) -> str:
    """A PNG embedded in the page (``alt`` is escaped)."""
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def page(title: str, parts: list[str]) -> str:
    """The whole document around ``parts`` (``title`` is escaped)."""
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{text(title)}</title>'
            f"<style>{STYLE}</style></head><body>")
    return "\n".join([head, *parts, "</body></html>\n"])

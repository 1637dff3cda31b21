"""Render the submission documents from a run: Markdown, self-contained HTML, PDF.

One set of templates (Markdown with Jinja, package data) is rendered twice:

* ``.md``: plain; figures referenced as ``figures/<name>.png`` (copied beside the document);
* ``.html``: the same template with **autoescaping on** (every value from the run or the profile
  is HTML-escaped, so raw HTML in the profile is shown as text; only the figure tags the renderer
  builds are trusted), converted by Python-Markdown, figures embedded as base64, with a print
  stylesheet; a synthetic run gets a banner fixed on every screen page and in the top margin of
  every printed page. The document is self-contained and inert: Markdown links in the profile
  keep their text but lose any target other than http(s), mailto or a ``#`` anchor
  (``javascript:``, ``data:``, relative paths), and Markdown images other than an embedded PNG
  become their alt text (:class:`SafeLinks`), so nothing is fetched and nothing runs;
* ``.pdf``: the HTML through WeasyPrint, an optional extra (``pip install 'cxr-device[pdf]'``).
"""
from __future__ import annotations

import base64
import html
import re
import shutil
from importlib import resources
from pathlib import Path

import markdown
from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from markupsafe import Markup, escape

from cxr_device.console import output_dir, write_text
from cxr_device.errors import CxrDeviceError

from .context import build_context
from .flowchart import draw_flowchart
from .profile import load_profile

DOCUMENTS = {"algorithm_description": "Algorithm description", "validation_plan": "Validation plan"}
FORMATS = ("md", "html", "pdf")
BANNER = "SYNTHETIC DATA - NOT FOR SUBMISSION"
#: Link targets a document may keep; anything else (javascript:, data:, file:, relative) is dropped.
LINK_SCHEMES = ("http", "https", "mailto")
#: The only image source a document may hold: a PNG embedded in it.
EMBEDDED_PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]*={0,2}", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")  # what browsers ignore inside a URL scheme


# --- filters -------------------------------------------------------------------------------
def f3(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pct(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def ci(metric: dict) -> str:
    lo, hi = metric["ci95"]
    if metric["value"] is None:
        return "n/a"
    return f"{metric['value']:.3f} (95% CI {lo:.3f}-{hi:.3f})" if lo is not None else f"{metric['value']:.3f}"


def thousands(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _environment(html: bool) -> Environment:
    env = Environment(loader=PackageLoader("fda_submission", "templates"), autoescape=html,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(f3=f3, pct=pct, ci=ci, thousands=thousands)
    env.globals.update(pct=pct)
    return env


# --- rendering -----------------------------------------------------------------------------
def render_documents(run_dir: str | Path, out_dir: str | Path, profile_path: str | Path | None = None,
                     formats: tuple[str, ...] = ("md", "html"), trace_rows: list | None = None) -> dict[str, list[Path]]:
    """Write both documents in every format asked for; returns format -> files written."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise CxrDeviceError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if "pdf" in formats:
        try:
            import weasyprint  # noqa: F401
        except (ImportError, OSError) as err:
            raise CxrDeviceError("PDF needs WeasyPrint (and its system libraries): "
                                 f"pip install 'cxr-device[pdf]' ({type(err).__name__}: {err})") from None
    profile = load_profile(profile_path)
    context = build_context(run_dir, profile, trace_rows)
    out = output_dir(out_dir)  # a file, a system folder or no permission: said before anything is drawn
    figures_dir = output_dir(out / "figures")
    figures = dict(context["figures"])
    figures["flowchart"] = draw_flowchart(context["device"], [r["id"] for r in context["rules"]],
                                          figures_dir / "flowchart.png")
    for key, source in figures.items():
        if source.parent != figures_dir:
            shutil.copyfile(source, figures_dir / f"{key}.png")
    names = {key: f"{key}.png" for key in figures}
    written: dict[str, list[Path]] = {f: [] for f in formats}
    for document, title in DOCUMENTS.items():
        common = {**context, "title": title, "banner": BANNER}
        md_text = _environment(False).get_template(f"{document}.md.j2").render(
            **common, figure=lambda key, caption: _figure_md(names, key, caption))
        if "md" in formats:
            path = out / f"{document}.md"
            write_text(path, md_text)
            written["md"].append(path)
        if "html" in formats or "pdf" in formats:
            body_md = _environment(True).get_template(f"{document}.md.j2").render(
                **common, figure=lambda key, caption: _figure_html(figures_dir, names, key, caption))
            page = _page(title, context, markdown.markdown(body_md, extensions=["tables", "toc", "sane_lists",
                                                                                 SafeLinks()]))
            if "html" in formats:
                path = out / f"{document}.html"
                write_text(path, page)
                written["html"].append(path)
            if "pdf" in formats:
                import weasyprint

                path = out / f"{document}.pdf"
                weasyprint.HTML(string=page, base_url=str(out)).write_pdf(path)
                written["pdf"].append(path)
    return written


# --- links and images: nothing live, nothing fetched --------------------------------------------
def _url(value: str) -> str:
    """A URL as a browser reads it: entities decoded (until nothing changes), blanks and control
    characters removed."""
    previous = None
    while previous != value:
        previous, value = value, html.unescape(value)
    return _INVISIBLE.sub("", value)


def safe_href(href: str) -> bool:
    """True for a link target a self-contained document may keep: http(s), mailto or ``#anchor``."""
    url = _url(href)
    scheme = _SCHEME.match(url)
    return url.startswith("#") if scheme is None else scheme.group(1).lower() in LINK_SCHEMES


def safe_src(src: str) -> bool:
    """True only for an image embedded as a base64 PNG."""
    return EMBEDDED_PNG.fullmatch(_url(src)) is not None


class _DefuseLinks(Treeprocessor):
    def run(self, root) -> None:
        for element in root.iter():
            if element.tag == "a" and not safe_href(element.get("href", "")):
                element.tag = "span"  # the link's text (and any markup inside it) stays
                element.attrib.clear()
            elif element.tag == "img" and not safe_src(element.get("src", "")):
                alt = element.get("alt", "")
                element.tag = "span"
                element.attrib.clear()
                element.text = alt


class SafeLinks(Extension):
    """Python-Markdown extension: Markdown links keep their text but lose targets that are not
    http(s), mailto or ``#anchor``; Markdown images that are not embedded PNGs become their alt
    text. Raw HTML never reaches the tree (autoescaped before, or the renderer's own figures)."""

    def extendMarkdown(self, md) -> None:  # Python-Markdown's name for the hook
        md.treeprocessors.register(_DefuseLinks(md), "cxr_safe_links", 5)  # after inline (20), prettify (10)


def _figure_md(names: dict, key: str, caption: str) -> str:
    if key not in names:
        return ""  # a figure the run could not make; the templates say why (eda.json "skipped")
    return f"![{caption}](figures/{names[key]})\n\n*Figure: {caption}*"


def _figure_html(folder: Path, names: dict, key: str, caption: str) -> Markup:
    if key not in names:
        return Markup("")
    data = base64.b64encode((folder / names[key]).read_bytes()).decode()
    wide = ' class="wide"' if key == "flowchart" else ""
    return Markup('<figure{w}><img alt="{c}" src="data:image/png;base64,{d}"><figcaption>Figure: {c}</figcaption>'
                  "</figure>").format(w=Markup(wide), c=caption, d=Markup(data))


def _page(title: str, context: dict, body: str) -> str:
    css = (resources.files("fda_submission") / "templates" / "document.css").read_text()
    profile = context["profile"]
    banner = f'<div class="banner">{BANNER}</div>' if context["synthetic"] else ""
    page_banner = f'@page {{ @top-center {{ content: "{BANNER}"; color: #b03a2e; font-weight: bold; }} }}' \
        if context["synthetic"] else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(profile['device_name'])} - {escape(title)}</title>"
            f"<style>{css}\n{page_banner}</style></head><body>{banner}<main>{body}</main></body></html>\n")

"""Render the submission package from a run: Markdown, self-contained HTML, PDF, and the SBOM.

The package is the documents of :data:`fda_submission.document_control.DOCUMENTS` (device
description, algorithm description, validation plan, 510(k) summary, labeling, PCCP, postmarket
plan, and the appendices issued once), the figures, ``sbom.cdx.json`` (CycloneDX) and
``checks.json`` (the consistency findings and the fields still to fill).

Order of work: the context is built (:func:`fda_submission.context.build_context`), every
document is rendered to Markdown in memory, the consistency check runs
(:func:`fda_submission.consistency.check_consistency` and the claims in the rendered text) and
the completeness report is read from the markers. Then, unless findings are refused, the files
are written. :func:`render_documents` renders with open findings listed at the top of every
document (the run pipeline's behaviour); ``cxr-device submission`` refuses to render while a
finding is open unless ``--allow-findings``.

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

Nothing reads the clock: the same inputs give byte-identical files.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import markdown
from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from markupsafe import Markup, escape

from cxr_device.console import output_dir, write_text
from cxr_device.errors import CxrDeviceError

from .completeness import MARKER, CompletenessItem, completeness_report
from .consistency import Finding, check_claims, check_consistency
from .context import build_context
from .document_control import DOCUMENTS
from .flowchart import draw_flowchart
from .profile import load_profile
from .security.documentation import FIGURES as SECURITY_FIGURES
from .security.documentation import draw_figures as draw_security_figures
from .security.documentation import sbom_text
from .software.documentation import FIGURES as SOFTWARE_FIGURES
from .software.documentation import draw_figures as draw_software_figures

FORMATS = ("md", "html", "pdf")
DRAWN_FIGURES = (*SOFTWARE_FIGURES, *SECURITY_FIGURES)  # drawn by write_package beside the flowchart
BANNER = "SYNTHETIC DATA - NOT FOR SUBMISSION"
FINDINGS_BANNER = "OPEN CONSISTENCY FINDINGS - NOT FOR SUBMISSION"
CHECKS_JSON = "checks.json"
#: Link targets a document may keep; anything else (javascript:, data:, file:, relative) is dropped.
LINK_SCHEMES = ("http", "https", "mailto")
#: The only image source a document may hold: a PNG embedded in it.
EMBEDDED_PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]*={0,2}", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")  # what browsers ignore inside a URL scheme


class ConsistencyError(CxrDeviceError):
    """The run, the bundle, the assessments and the profile contradict each other: not rendered."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(f"{len(findings)} consistency finding(s); nothing was rendered:\n"
                         + "\n".join(line for f in findings for line in f.lines()))


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


def pair(interval) -> str:
    """``0.812-0.934`` for an interval, ``n/a`` when either end is missing."""
    lo, hi = interval if interval else (None, None)
    return "n/a" if lo is None or hi is None else f"{lo:.3f}-{hi:.3f}"


def thousands(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _environment(html: bool) -> Environment:
    env = Environment(loader=PackageLoader("fda_submission", "templates"), autoescape=html,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(f3=f3, pct=pct, ci=ci, thousands=thousands, pair=pair)
    env.globals.update(pct=pct)
    return env


# --- the package ---------------------------------------------------------------------------
@dataclass
class Prepared:
    """A package ready to write: its context, its Markdown, its findings and fields to fill."""

    context: dict
    markdown: dict[str, str]
    findings: list[Finding]
    completeness: list[CompletenessItem]


def prepare(run_dir: str | Path, profile_path: str | Path | None = None,
            trace_rows: list | None = None, junit: str | Path | None = None) -> Prepared:
    """Build the context, render every document to Markdown in memory and run the consistency
    and completeness checks; nothing is written. ``junit``: the report ``trace_rows`` come from."""
    profile = load_profile(profile_path)
    context = build_context(run_dir, profile, trace_rows, junit)
    names = {key: f"{key}.png" for key in [*context["figures"], "flowchart", *DRAWN_FIGURES]}
    texts = _markdown(context, names, [])
    findings = check_consistency(context) + check_claims(texts, context)
    if findings:
        texts = _markdown(context, names, findings)
    return Prepared(context, texts, findings, completeness_report(texts))


def check_formats(formats: tuple[str, ...]) -> None:
    """Refuse unknown formats, and PDF without WeasyPrint, before any work."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise CxrDeviceError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if "pdf" in formats:
        try:
            import weasyprint  # noqa: F401
        except (ImportError, OSError) as err:
            raise CxrDeviceError("PDF needs WeasyPrint (and its system libraries): "
                                 f"pip install 'cxr-device[pdf]' ({type(err).__name__}: {err})") from None


def render_documents(run_dir: str | Path, out_dir: str | Path, profile_path: str | Path | None = None,
                     formats: tuple[str, ...] = ("md", "html"), trace_rows: list | None = None,
                     allow_findings: bool = True) -> dict[str, list[Path]]:
    """Write every document in every format asked for, the figures, the SBOM and checks.json;
    returns format -> files written (``sbom`` and ``checks`` included). With open consistency
    findings: documents listing them at their top, or (``allow_findings`` False) a
    :class:`ConsistencyError` before anything is written."""
    check_formats(formats)
    prepared = prepare(run_dir, profile_path, trace_rows)
    if prepared.findings and not allow_findings:
        raise ConsistencyError(prepared.findings)
    return write_package(prepared, out_dir, formats)


def write_package(prepared: Prepared, out_dir: str | Path, formats: tuple[str, ...]) -> dict[str, list[Path]]:
    """Write a prepared package (documents, figures, SBOM, checks.json) into ``out_dir``."""
    check_formats(formats)
    context = prepared.context
    out = output_dir(out_dir)  # a file, a system folder or no permission: said before anything is drawn
    figures_dir = output_dir(out / "figures")
    figures = dict(context["figures"])
    figures["flowchart"] = draw_flowchart(context["device"], [r["id"] for r in context["rules"]],
                                          figures_dir / "flowchart.png")
    figures.update(draw_software_figures(context, figures_dir))  # architecture.png (and .svg)
    figures.update(draw_security_figures(context, figures_dir))  # security_global_view.png
    for key, source in figures.items():
        if source.parent != figures_dir:
            shutil.copyfile(source, figures_dir / f"{key}.png")
    names = {key: f"{key}.png" for key in figures}
    written: dict[str, list[Path]] = {f: [] for f in formats}
    for document, (_, title) in DOCUMENTS.items():
        if "md" in formats:
            written["md"].append(write_text(out / f"{document}.md", prepared.markdown[document]))
        if "html" in formats or "pdf" in formats:
            body_md = _render(True, document, context, prepared.findings,
                              lambda key, caption: _figure_html(figures_dir, names, key, caption),
                              lambda *pair_args: _pair_html(figures_dir, names, *pair_args))
            page = _page(title, context, prepared.findings, markdown.markdown(
                body_md, extensions=["tables", "toc", "sane_lists", SafeLinks()]))
            if "html" in formats:
                written["html"].append(write_text(out / f"{document}.html", page))
            if "pdf" in formats:
                written["pdf"].append(_write_pdf(page, out / f"{document}.pdf", context["issue_date"]["text"]))
    written["sbom"] = [write_text(out / context["sbom_name"], sbom_text(context))]  # measured runtime SBOM
    written["checks"] = [write_text(out / CHECKS_JSON, json.dumps(checks_record(prepared), indent=2) + "\n")]
    return written


def report_lines(prepared: Prepared) -> list[str]:
    """What ``cxr-device submission`` prints: every consistency finding with both sides, then every
    field a person still has to fill, with the documents that show it."""
    lines = [f"device: {prepared.context['identity']['text']}"]
    if prepared.findings:
        lines.append(f"{len(prepared.findings)} consistency finding(s):")
        lines += [f"  {line}" for f in prepared.findings for line in f.lines()]
    else:
        lines.append("consistency: no finding")
    if prepared.completeness:
        lines.append(f"{len(prepared.completeness)} field(s) to be completed:")
        lines += [f"  {item.field}  [{', '.join(item.documents)}]" for item in prepared.completeness]
    else:
        lines.append("completeness: nothing left to fill")
    return lines


def _write_pdf(page: str, path: Path, issued: str) -> Path:
    """WeasyPrint's PDF, byte-identical for the same page: the embedded font subsets carry a
    timestamp (fontTools reads SOURCE_DATE_EPOCH), set here to the issue date (0 when unknown)."""
    import weasyprint

    epoch = 0
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", issued):
        epoch = int(dt.datetime.fromisoformat(issued).replace(tzinfo=dt.timezone.utc).timestamp())
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        weasyprint.HTML(string=page, base_url=str(path.parent)).write_pdf(path)
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous
    return path


def checks_record(prepared: Prepared) -> dict:
    """What checks.json holds: the device, the findings and the fields to fill."""
    return {"device": prepared.context["identity"]["text"],
            "consistency_findings": [f.as_dict() for f in prepared.findings],
            "to_be_completed": [{"field": i.field, "documents": i.documents, "occurrences": i.occurrences}
                                for i in prepared.completeness]}


def _markdown(context: dict, names: dict[str, str], findings: list[Finding]) -> dict[str, str]:
    return {document: _render(False, document, context, findings, lambda key, caption: _figure_md(names, key, caption),
                              lambda *args: _pair_md(names, *args))
            for document in DOCUMENTS}


def _render(html_mode: bool, document: str, context: dict, findings: list[Finding], figure, figure_pair) -> str:
    title = DOCUMENTS[document][1]
    return _environment(html_mode).get_template(f"{document}.md.j2").render(
        **context, title=title, banner=BANNER, findings=findings, figure=figure, figure_pair=figure_pair)


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


# --- figures ------------------------------------------------------------------------------------
def _figure_md(names: dict, key: str, caption: str) -> str:
    if key not in names:
        return ""  # a figure the run could not make; the templates say why (eda.json "skipped")
    return f"![{caption}](figures/{names[key]})\n\n*Figure: {caption}*"


def _pair_md(names: dict, key1: str, caption1: str, key2: str, caption2: str) -> str:
    return "\n\n".join(p for p in (_figure_md(names, key1, caption1), _figure_md(names, key2, caption2)) if p)


def _figure_tag(folder: Path, names: dict, key: str, caption: str, css: str = "") -> Markup:
    if key not in names:
        return Markup("")
    data = base64.b64encode((folder / names[key]).read_bytes()).decode()
    return Markup('<figure{w}><img alt="{c}" src="data:image/png;base64,{d}"><figcaption>Figure: {c}</figcaption>'
                  "</figure>").format(w=Markup(f' class="{css}"' if css else ""), c=caption, d=Markup(data))


def _figure_html(folder: Path, names: dict, key: str, caption: str) -> Markup:
    """One figure; the flowchart and figures twice as wide as high take the whole text width."""
    wide = key == "flowchart"
    if key in names and not wide:
        from PIL import Image

        with Image.open(folder / names[key]) as image:
            wide = image.size[0] >= 1.8 * image.size[1]
    return _figure_tag(folder, names, key, caption, "wide" if wide else "")


def _pair_html(folder: Path, names: dict, key1: str, caption1: str, key2: str, caption2: str) -> Markup:
    """Two figures side by side (one alone takes the width)."""
    present = [(k, c) for k, c in ((key1, caption1), (key2, caption2)) if k in names]
    if len(present) < 2:
        return Markup("").join(_figure_tag(folder, names, k, c) for k, c in present)
    return Markup('<div class="pair">{a}{b}</div>').format(a=_figure_tag(folder, names, *present[0], "half"),
                                                           b=_figure_tag(folder, names, *present[1], "half"))


def _page(title: str, context: dict, findings: list[Finding], body: str) -> str:
    css = (resources.files("fda_submission") / "templates" / "document.css").read_text()
    profile = context["profile"]
    flags = ([BANNER] if context["synthetic"] else []) + ([FINDINGS_BANNER] if findings else [])
    banner = "".join(f'<div class="banner">{text}</div>' for text in flags[:1])
    page_banner = f'@page {{ @top-center {{ content: "{" / ".join(flags)}"; color: #b03a2e; font-weight: bold; ' \
                  'font-size: 8pt; } }' if flags else ""
    footer = f'@page {{ @bottom-left {{ content: "{_css_text(control_id(context, title))}"; font-size: 7.5pt; ' \
             'color: #566573; } }'
    body = MARKER.sub(lambda m: f'<mark class="todo">{m.group(0)}</mark>', body)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(profile['device_name'])} - {escape(title)}</title>"
            f"<style>{css}\n{page_banner}\n{footer}</style></head><body>{banner}<main>{body}</main></body></html>\n")


def control_id(context: dict, title: str) -> str:
    """``ID rev R, date - device sha256 prefix``: the footer of every printed page."""
    control = next(c for c in context["controls"].values() if c["title"] == title)
    text = f"{control['id']} rev {control['revision']}, {control['date']} - device.json sha256 " \
           f"{context['identity']['device_sha256'][:16]}"
    return MARKER.sub("[TO BE COMPLETED]", text)


def _css_text(text: str) -> str:
    """Text safe inside a CSS string: no quote, backslash or control character."""
    return re.sub(r'["\\\x00-\x1f]', " ", text)

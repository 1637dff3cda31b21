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
from markdown.util import AtomicString
from markupsafe import Markup, escape

from cxr_device.console import output_dir, write_text
from cxr_device.errors import CxrDeviceError
from cxr_device.figure_style import FULL_WIDTH, svg_size

from .completeness import MARKER, CompletenessItem, completeness_report
from .consistency import Finding, check_claims, check_consistency
from .context import build_context
from .document_control import DOCUMENTS
from .evidence import traced_context, write_evidence
from .flowchart import draw_flowchart
from .layout import Finished, finish, placeholder, short_markers
from .print_layout import PrintLayout
from .profile import load_profile
from .security.documentation import FIGURES as SECURITY_FIGURES
from .security.documentation import draw_figures as draw_security_figures
from .security.documentation import sbom_text
from .software.documentation import FIGURES as SOFTWARE_FIGURES
from .software.documentation import draw_figures as draw_software_figures
from .tracing import (
    Expr,
    TracedFloat,
    TracedInt,
    TracedList,
    TracedMapping,
    TracedStr,
    TraceRecorder,
    joined,
    recording,
    stop_recording,
    strip_marks,
)

FORMATS = ("md", "html", "pdf")
DRAWN_FIGURES = (*SOFTWARE_FIGURES, *SECURITY_FIGURES)  # drawn by write_package beside the flowchart
TRACE_JSON, TRACE_FORMAT = "trace.json", "cxr-device-trace/1"
BANNER = "SYNTHETIC DATA - NOT FOR SUBMISSION"
FINDINGS_BANNER = "OPEN CONSISTENCY FINDINGS - NOT FOR SUBMISSION"
CHECKS_JSON = "checks.json"
#: A field to fill as the finished documents print it (fda_submission.layout): highlighted in HTML.
SHORT_MARKER = re.compile(r"\[TBC: [^\]\n]+\]")
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


# --- filters: every number a template prints goes through one (traced when it is traced) -------
def f3(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pct(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def ci(metric) -> str:
    lo, hi = metric["ci95"]
    if metric["value"] is None:
        return "n/a"
    return f"{metric['value']:.3f} (95% CI {lo:.3f}-{hi:.3f})" if lo is not None else f"{metric['value']:.3f}"


def pair(interval) -> str:
    """``0.812-0.934`` for an interval, ``n/a`` when either end is missing."""
    lo, hi = interval if interval else (None, None)
    return "n/a" if lo is None or hi is None else f"{lo:.3f}-{hi:.3f}"


def thousands(value) -> str:
    if value is None:
        return "n/a"
    return format(value, ",.0f") if isinstance(value, float) else format(value, ",")


_PERCENT_SPEC = re.compile(r"%([-+ 0#]*\d*(?:\.\d+)?)([diouxXeEfFgGs%])")


def percent_format(spec: str, *args) -> str:
    """Jinja's ``format`` filter (``"%.4g" | format(x)``), through :func:`format` so that a
    traced number stays traced."""
    values = iter(args)

    def one(match: re.Match) -> str:
        flags, kind = match.groups()
        if kind == "%":
            return "%"
        value = next(values)
        return format(value, flags + ("d" if kind in "iu" else "" if kind == "s" else kind))

    return _PERCENT_SPEC.sub(one, spec)


def length(value) -> int:
    """Jinja's ``length``, traced for a traced list or mapping."""
    if isinstance(value, (TracedList, TracedMapping)):
        return TracedInt(len(value), Expr("len", (value.ref,)))
    return len(value)


def _text_filter(change):
    """A text filter that keeps a traced text traced (its numbers stay sourced)."""
    def apply(value, *args):
        changed = change(str(value), *args)
        return TracedStr(changed, value.ref) if isinstance(value, TracedStr) else changed

    return apply


def _first_paragraph(text: str) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join(text.strip().split("\n\n")[0].split())


def _finalize(value):
    """What ``{{ value }}`` prints: a traced number or profile text keeps its trace."""
    if isinstance(value, (TracedInt, TracedFloat, TracedStr)):
        return format(value, "")
    return value


# --- preformatted text (the usability summary's SR and command help), kept line for line ---------
def _preformatted(html: bool):
    """The ``preformatted`` filter: a text as a code block - ``<pre>`` in HTML (escaped once),
    indented in Markdown - whose lines keep their spaces; a traced text stays traced."""
    def block(value) -> str | Markup:
        if isinstance(value, TracedStr):
            value = TracedStr(str(value).rstrip("\n"), value.ref)
        text = format(value, "") if isinstance(value, TracedStr) else str(value).rstrip("\n")
        if html:
            return Markup("<pre><code>") + escape(text) + Markup("</code></pre>")
        return "\n".join(f"    {line}" if line else "" for line in text.split("\n"))

    return block
# --- end preformatted text ----------------------------------------------------------------------


def _environment(html: bool) -> Environment:
    env = Environment(loader=PackageLoader("fda_submission", "templates"), autoescape=html,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      finalize=_finalize)
    env.filters.update(f3=f3, pct=pct, ci=ci, thousands=thousands, pair=pair, format=percent_format,
                       length=length, count=length, join=joined, preformatted=_preformatted(html),
                       replace=_text_filter(str.replace), first_paragraph=_text_filter(_first_paragraph))
    env.globals.update(pct=pct, ref=lambda key: placeholder(*key.split(":", 1), define=False),
                       table=lambda key, caption: f"*{placeholder('tab', key, define=True)}: {caption}*")
    return env


# --- the package ---------------------------------------------------------------------------
@dataclass
class Prepared:
    """A package ready to write: its context (plain, and traced for rendering), the recorder of
    its traced numbers, its finished Markdown, its findings and fields to fill."""

    context: dict
    traced: dict
    recorder: TraceRecorder
    finished: dict[str, Finished]
    findings: list[Finding]
    completeness: list[CompletenessItem]
    junit: Path | None = None

    @property
    def markdown(self) -> dict[str, str]:
        """The final Markdown of each document."""
        return {name: f.text for name, f in self.finished.items()}

    @property
    def untraced(self) -> list[dict]:
        """Numbers the documents print without a source."""
        return [u for f in self.finished.values() for u in f.untraced]


def prepare(run_dir: str | Path, profile_path: str | Path | None = None,
            trace_rows: list | None = None, junit: str | Path | None = None) -> Prepared:
    """Build the context, render every document to Markdown in memory and run the consistency
    and completeness checks; nothing is written. ``junit``: the report ``trace_rows`` come from."""
    profile = load_profile(profile_path)
    context = build_context(run_dir, profile, trace_rows, junit)
    names = {key: f"{key}.png" for key in [*context["figures"], "flowchart", *DRAWN_FIGURES]}
    recorder = TraceRecorder()
    token = recording(recorder)
    try:
        traced_ctx = traced_context(context)
        raw, finished = _markdown(traced_ctx, names, [], recorder)
        plain = {name: strip_marks(text) for name, text in raw.items()}
        findings = check_consistency(context) + check_claims(plain, context)
        if findings:
            raw, finished = _markdown(traced_ctx, names, findings, recorder)
            plain = {name: strip_marks(text) for name, text in raw.items()}
    finally:
        stop_recording(token)
    return Prepared(context, traced_ctx, recorder, finished, findings, completeness_report(plain),
                    Path(junit) if junit else None)


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
            if source.with_suffix(".svg").is_file():  # the vector drawing the HTML and PDF embed
                shutil.copyfile(source.with_suffix(".svg"), figures_dir / f"{key}.svg")
    names = {key: f"{key}.png" for key in figures}
    written: dict[str, list[Path]] = {f: [] for f in formats}
    token = recording(prepared.recorder)
    try:
        for document, (code, title) in DOCUMENTS.items():
            if "md" in formats:
                written["md"].append(write_text(out / f"{document}.md", prepared.markdown[document]))
            if "html" in formats or "pdf" in formats:
                extra = {"owner_fields": owner_fields(prepared.finished)} if document == INDEX else {}
                body_md = _render(True, document, {**prepared.traced, **extra}, prepared.findings,
                                  Figures(figures_dir, names, html=True))
                body_md = finish(body_md, code, document, prepared.recorder, html=True).text
                page = _page(title, context, prepared.findings, markdown.markdown(
                    body_md, extensions=["tables", "toc", "sane_lists", SafeLinks(), PrintLayout()]))
                if "html" in formats:
                    written["html"].append(write_text(out / f"{document}.html", page))
                if "pdf" in formats:
                    written["pdf"].append(_write_pdf(page, out / f"{document}.pdf", context["issue_date"]["text"]))
    finally:
        stop_recording(token)
    written["trace"] = [write_text(out / TRACE_JSON, json.dumps(trace_record(prepared), indent=2) + "\n")]
    write_evidence(out, context, prepared.junit)
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
    """What checks.json holds: the device, the findings, the fields to fill, the untraced numbers."""
    return {"device": prepared.context["identity"]["text"],
            "consistency_findings": [f.as_dict() for f in prepared.findings],
            "to_be_completed": [{"field": i.field, "documents": i.documents, "occurrences": i.occurrences}
                                for i in prepared.completeness],
            "untraced_numbers": prepared.untraced}


def trace_record(prepared: Prepared) -> dict:
    """What trace.json holds: every number each document prints, in order, with its source."""
    return {"format": TRACE_FORMAT, "run": prepared.context["run"]["name"],
            "device": prepared.context["identity"]["text"],
            "documents": {name: {"code": DOCUMENTS[name][0], "file": f"{name}.md", "numbers": f.numbers,
                                 "tokens": f.tokens}
                          for name, f in prepared.finished.items()}}


INDEX = "package_index"


def _markdown(context: dict, names: dict[str, str], findings: list[Finding], recorder: TraceRecorder
              ) -> tuple[dict[str, str], dict[str, Finished]]:
    """Every document rendered (raw, with the tracer's markers) and finished as Markdown. The
    package index comes last: it lists the owner fields of all the others."""
    figures = Figures(None, names, html=False)
    raw, finished = {}, {}
    for document in [d for d in DOCUMENTS if d != INDEX] + [INDEX]:
        extra = {"owner_fields": owner_fields(finished)} if document == INDEX else {}
        raw[document] = _render(False, document, {**context, **extra}, findings, figures)
        finished[document] = finish(raw[document], DOCUMENTS[document][0], document, recorder, html=False)
    return raw, finished


def owner_fields(finished: dict[str, Finished]) -> list[dict]:
    """Every field a person must fill, once, with the documents that show it."""
    fields: dict[tuple, dict] = {}
    for document, f in finished.items():
        for item in f.owner_fields:
            entry = fields.setdefault((item["what"], item["where"]), {**item, "documents": []})
            code = DOCUMENTS[document][0]
            if code not in entry["documents"]:
                entry["documents"].append(code)
    return list(fields.values())


def _render(html_mode: bool, document: str, context: dict, findings: list[Finding], figures: Figures) -> str:
    title = DOCUMENTS[document][1]
    return _environment(html_mode).get_template(f"{document}.md.j2").render(
        **context, title=title, banner=BANNER, findings=findings, figure=figures.figure, figure_grid=figures.grid)


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


class _EscapedOnce(Treeprocessor):
    """Code spans are escaped once: the template's autoescape already did it (``'`` is ``&#39;``),
    so Python-Markdown's own escape of code text (``&amp;#39;``) is undone; the serializer keeps
    entities and escapes any bare ``&`` or ``<`` left."""

    def run(self, root) -> None:
        for element in root.iter("code"):
            if element.text:
                element.text = AtomicString(element.text.replace("&lt;", "<").replace("&gt;", ">")
                                            .replace("&amp;", "&"))


class SafeLinks(Extension):
    """Python-Markdown extension: Markdown links keep their text but lose targets that are not
    http(s), mailto or ``#anchor``; Markdown images that are not embedded PNGs become their alt
    text; code spans are not escaped twice. Raw HTML never reaches the tree (autoescaped before,
    or the renderer's own figures)."""

    def extendMarkdown(self, md) -> None:  # Python-Markdown's name for the hook
        md.treeprocessors.register(_DefuseLinks(md), "cxr_safe_links", 5)  # after inline (20), prettify (10)
        md.treeprocessors.register(_EscapedOnce(md), "cxr_escaped_once", 4)


# --- figures ------------------------------------------------------------------------------------
class Figures:
    """The figure helpers a template calls: ``figure(key, caption)`` and ``figure_grid([(key,
    caption), ...])`` (two columns in HTML). Each figure is numbered by the renderer; in HTML an
    SVG is embedded when the run drew one (vector, printed at the size it was drawn: the text
    width, a grid cell, or a landscape page of its own), else the PNG, which fills its place."""

    def __init__(self, folder: Path | None, names: dict[str, str], html: bool):
        self.folder, self.names, self.html = folder, names, html

    def figure(self, key: str, caption: str):
        if key not in self.names:
            return ""  # a figure the run could not make; the templates say why (eda.json "skipped")
        if not self.html:  # the caption defines the number; the image's alt text repeats it
            return (f"![{placeholder('fig', key, define=False)}](figures/{self.names[key]})\n\n"
                    f"*{placeholder('fig', key, define=True)}: {caption}*")
        return self._tag(key, caption, None)

    def grid(self, items) -> str | Markup:
        present = [(key, caption) for key, caption in items if key in self.names]
        if not self.html or len(present) < 2:
            return "\n\n".join(str(self.figure(key, caption)) for key, caption in present)
        cells = Markup("").join(self._tag(key, caption, "cell") for key, caption in present)
        return Markup('<div class="grid">{cells}</div>').format(cells=cells)

    def _tag(self, key: str, caption: str, css: str | None) -> Markup:
        png = self.folder / self.names[key]
        svg = png.with_suffix(".svg")
        data = svg.read_bytes() if svg.is_file() else png.read_bytes()
        mime, raster = ("image/svg+xml", "") if svg.is_file() else ("image/png", ' class="raster"')
        css = css or self._placement(key, data if not raster else None)
        return Markup('<figure{w}><img{r} alt="{a}" src="data:{m};base64,{d}"><figcaption>{n}: {c}</figcaption>'
                      "</figure>").format(w=Markup(f' class="{css}"' if css else ""), r=Markup(raster),
                                          a=strip_marks(caption), c=caption, m=Markup(mime),
                                          d=Markup(base64.b64encode(data).decode()),
                                          n=Markup(placeholder("fig", key, define=True)))

    def _placement(self, key: str, svg: bytes | None) -> str:
        """``landscape`` for a drawing wider than the text, ``wide`` for one of the text's width
        (and, from a PNG, the flowchart or a picture twice as wide as high), else nothing."""
        size = svg_size(svg) if svg else None
        if size:
            inches = size[0] / 72
            return "landscape" if inches > FULL_WIDTH + 0.5 else "wide" if inches > FULL_WIDTH - 0.5 else ""
        if key == "flowchart":
            return "wide"
        from PIL import Image

        with Image.open(self.folder / self.names[key]) as image:
            return "wide" if image.size[0] >= 1.8 * image.size[1] else ""


def _page(title: str, context: dict, findings: list[Finding], body: str) -> str:
    css = (resources.files("fda_submission") / "templates" / "document.css").read_text()
    profile = context["profile"]
    flags = ([BANNER] if context["synthetic"] else []) + ([FINDINGS_BANNER] if findings else [])
    banner = "".join(f'<div class="banner">{text}</div>' for text in flags[:1])
    page_banner = f'@page {{ @top-center {{ content: "{" / ".join(flags)}"; }} }}' if flags else ""
    footer = f'@page {{ @bottom-left {{ content: "{_css_text(control_id(context, title))}"; }} }}'  # styled in the CSS
    body = MARKER.sub(lambda m: f'<mark class="todo">{m.group(0)}</mark>', body)
    body = SHORT_MARKER.sub(lambda m: f'<mark class="todo">{m.group(0)}</mark>', body)  # [TBC: ...] (layout.finish)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(profile['device_name'])} - {escape(title)}</title>"
            f"<style>{css}\n{page_banner}\n{footer}</style></head><body>{banner}<main>{body}</main></body></html>\n")


def control_id(context: dict, title: str) -> str:
    """``ID rev R, date - device sha256 prefix``: the footer of every printed page; a field still
    to fill prints as the documents print it, ``[TBC: what]``."""
    control = next(c for c in context["controls"].values() if c["title"] == title)
    text = f"{control['id']} rev {control['revision']}, {control['date']} - device.json sha256 " \
           f"{context['identity']['device_sha256'][:16]}"
    return short_markers(text)


def _css_text(text: str) -> str:
    """Text safe inside a CSS string: no quote, backslash or control character."""
    return re.sub(r'["\\\x00-\x1f]', " ", text)

"""The printed package as a reviewer gets it (issue 23): a package rendered from a small run, laid
out by WeasyPrint, checked as far as a program can - contents lists, numbered captions, no empty
header rows, figure text of at least 7 pt at the size it is placed at, no heading or caption
ending a page, short tables kept whole, the footer in the body font with short owner fields -
and the pieces behind it (the HTML post-processing, the figures' one style)."""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from cxr_device.figure_style import CELL_WIDTH, MIN_TEXT_PT
from fda_submission.document_control import DOCUMENTS, LONG_DOCUMENTS

weasyprint = pytest.importorskip("weasyprint", reason="the PDF layout needs WeasyPrint (pip install 'cxr-device[pdf]')")
from weasyprint.formatting_structure import boxes  # after the skip

pytestmark = pytest.mark.requirement("REQ-DOC-010")

CAPTION = re.compile(r"\b(Figure|Table) ([0-9A-Z]+-\d+): ")
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
PX_TO_PT = 0.75  # CSS: 96 px to the inch, 72 pt


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory) -> Path:
    """The HTML documents of the small trained run (the same HTML the PDFs are made from)."""
    from fda_submission.render import render_documents

    out = tmp_path_factory.mktemp("printed")
    render_documents(trained_run, out, formats=("html",))
    return out


@pytest.fixture(scope="module")
def laid_out(package) -> dict:
    """Each document laid out in pages by WeasyPrint, as its PDF is: name -> weasyprint Document."""
    return {name: weasyprint.HTML(filename=str(package / f"{name}.html")).render() for name in DOCUMENTS}


def _walk(box):
    yield box
    for child in getattr(box, "children", None) or ():
        yield from _walk(child)


def _classes(box) -> set[str]:
    element = getattr(box, "element", None)
    return set((element.get("class") or "").split()) if element is not None else set()


def _flow(page):
    """The page's fragments of the document's top-level blocks, in order (children of <main>)."""
    main = next(b for b in _walk(page._page_box) if getattr(b, "element_tag", None) == "main")
    return [b for b in main.children if isinstance(b, boxes.BlockLevelBox)]


def test_long_documents_open_with_a_contents_list_that_links_every_section(package, laid_out):
    for name in LONG_DOCUMENTS:
        page = (package / f"{name}.html").read_text()
        toc = re.search(r'<div class="toc">(.*?)</div>', page, re.DOTALL)
        assert toc, f"{name}: no contents list"
        sections = re.findall(r'<h2 id="([^"]+)"', page)
        assert sections and all(f'href="#{s}"' in toc.group(1) for s in sections), name
        first = laid_out[name].pages[:3]  # in the front matter, not at the end
        assert any("toc" in _classes(b) for p in first for b in _walk(p._page_box)), name


def test_figures_and_tables_are_numbered_once_each_in_their_document(package):
    for name in DOCUMENTS:
        page = (package / f"{name}.html").read_text()
        captions = re.findall(r'<figcaption>(.*?)</figcaption>', page) + \
            re.findall(r'<p class="caption"><em>(.*?)</em></p>', page)
        numbers = [f"{m.group(1)} {m.group(2)}" for m in map(CAPTION.match, captions) if m]
        assert len(numbers) == len(captions), f"{name}: a caption without its number"
        assert len(numbers) == len(set(numbers)), f"{name}: a number given twice"
        assert page.count("<figure") == len(re.findall(r"<figcaption>", page)), name
        assert "(not found)" not in page, f"{name}: a reference to no figure or table"
    algorithm = (package / "algorithm_description.html").read_text()
    assert "<figcaption>Figure 2-1: " in algorithm and '<p class="caption"><em>Table 2-1: ' in algorithm


def test_no_table_has_an_empty_header_row(package):
    for name in DOCUMENTS:
        page = (package / f"{name}.html").read_text()
        for head in re.findall(r"<thead>(.*?)</thead>", page, re.DOTALL):
            assert re.sub(r"<[^>]+>|\s", "", head), f"{name}: an empty header row"
        assert '<table class="kv' in page, f"{name}: the front matter is a key-value table"


def test_figure_text_is_at_least_7_pt_at_its_placed_size(laid_out):
    checked = 0
    for name, document in laid_out.items():
        for number, page in enumerate(document.pages, 1):
            for box in _walk(page._page_box):
                if not isinstance(box, boxes.ReplacedBox):
                    continue
                src = box.element.get("src")
                assert src.startswith("data:image/svg+xml;base64,"), f"{name}: a figure without its SVG"
                svg = base64.b64decode(src.split(",", 1)[1]).decode()
                drawn = float(re.search(r'viewBox="0 0 ([0-9.]+) ', svg).group(1))  # points
                sizes = [float(s) for s in re.findall(r"font-size:\s*([0-9.]+)px", svg)]
                assert sizes, f"{name}: a figure whose text is not text"
                printed = min(sizes) * box.width * PX_TO_PT / drawn
                assert printed >= MIN_TEXT_PT - 0.01, f"{name}: figure text of {printed:.1f} pt on page {number}"
                assert box.width * PX_TO_PT <= drawn + 0.5 or "cell" in _classes(box.element), name  # not enlarged
                checked += 1
    assert checked >= 10  # evaluation, EDA and training figures, the flowchart, the drawn diagrams


def test_no_page_ends_with_a_heading_or_a_caption_and_short_tables_stay_whole(laid_out):
    for name, document in laid_out.items():
        pages_of: dict[int, set[int]] = {}
        for number, page in enumerate(document.pages[:-1], 1):
            flow = _flow(page)
            last = flow[-1]
            assert last.element_tag not in HEADINGS, f"{name}: page {number} ends with a heading"
            # a heading and the banner under it, when the heading could have gone to the next page (not a
            # title page whose findings block fills it)
            assert not (last.element_tag == "blockquote" and len(flow) > 2 and flow[-2].element_tag in HEADINGS), \
                f"{name}: page {number} ends with a heading and the banner under it"
            assert not _classes(last) & {"caption", "lead"}, f"{name}: page {number} ends with a caption or lead-in"
        for number, page in enumerate(document.pages, 1):
            for box in _flow(page):
                if box.element_tag == "table" and "short" in _classes(box):
                    pages_of.setdefault(id(box.element), set()).add(number)
        split = [pages for pages in pages_of.values() if len(pages) > 1]
        assert not split, f"{name}: a short table split over pages {split}"


def test_footer_is_in_the_body_font_and_names_fields_to_fill_in_short(laid_out):
    for name, document in laid_out.items():
        body = next(b for b in _walk(document.pages[0]._page_box) if getattr(b, "element_tag", None) == "body")
        for page in document.pages:
            margins = [b for b in page._page_box.children if isinstance(b, boxes.MarginBox)]
            footer = next(b for b in margins if b.at_keyword == "@bottom-left")
            text = "".join(b.text for b in _walk(footer) if isinstance(b, boxes.TextBox))
            assert all(b.style["font_family"] == body.style["font_family"] for b in margins), name
            assert "TO BE COMPLETED" not in text and "device.json sha256" in text, text
        assert "[TBC: " in text  # the template profile leaves the document number to fill


def test_the_pdf_is_written_from_that_layout(laid_out, tmp_path):
    pdf = laid_out["summary_510k"].write_pdf(tmp_path / "summary.pdf")
    assert pdf is None and (tmp_path / "summary.pdf").read_bytes()[:5] == b"%PDF-"


# --- the pieces behind it -------------------------------------------------------------------------
def test_post_processing_marks_tables_captions_and_breaks_without_changing_text():
    import markdown

    from fda_submission.print_layout import PrintLayout

    text = ("| | |\n|---|---|\n| document | **AD**, <span class=\"tn\" data-trace=\"AD-1\">3</span> |\n"
            "| hash | `" + "ab" * 32 + "` |\n\n*Table 1-1: Results*\n\n| test | status |\n|---|---|\n"
            "| `tests/test_x.py::test_a` | failed |\n| &lt;script&gt; | pass |\n| REQ-INPUT-001 | verified |\n"
            "| module_with_a_long_name | <span class=\"tn\" data-trace=\"AD-2\">1.2.840.10008.5.1.4</span> |\n\n"
            "**Revision history**\n\n"
            "| r |\n|---|\n" + "| 1 |\n" * 13)
    page = markdown.markdown(text, extensions=["tables", PrintLayout()])
    assert page.count("<thead>") == 2 and '<table class="kv short">' in page  # the empty header row is gone
    assert '<span class="tn" data-trace="AD-1">3</span>' in page  # the traced number, as verify reads it
    assert '<td class="fail">failed</td>' in page and "<td>pass</td>" in page and "&lt;script&gt;" in page
    assert '<td class="word">REQ-INPUT-001</td>' in page  # an identifier is not broken at its hyphens
    assert '<p class="caption"><em>Table 1-1: Results</em></p>' in page
    assert '<p class="lead"><strong>Revision history</strong></p>' in page
    assert "<code>tests/<wbr>test_<wbr>x.<wbr>py::<wbr>test_<wbr>a</code>" in page
    assert "<code>" + "<wbr>".join(["ab" * 8] * 4) + "</code>" in page  # a hash in groups of 16
    assert "<td>module_<wbr>with_<wbr>a_<wbr>long_<wbr>name</td>" in page  # a long word in a cell, too
    assert '<span class="tn" data-trace="AD-2">1.2.840.10008.5.1.4</span>' in page  # but never a traced one
    assert page.count('<table class="short">') == 1  # 13 rows: not short


def _curves():
    rng = np.random.default_rng(0)
    probs = rng.random(60)
    labels = (rng.random(60) < probs).astype(float)
    rows = [{"mean_predicted": x, "observed": x ** 1.2} for x in np.linspace(0.05, 0.95, 10)]
    return probs, labels, rows


def test_figures_are_drawn_at_their_placed_size_and_give_the_same_bytes_for_the_same_inputs(tmp_path):
    from PIL import Image

    from validation.figures import plot_calibration, plot_roc

    probs, labels, rows = _curves()
    digests = []
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        plot_roc({"val": (probs, labels, 0.8), "test": (probs, labels, 0.7)}, None, 0.5, folder / "roc.png")
        plot_calibration({"validation, before calibration": rows, "test, after": rows}, folder / "calibration.png")
        digests.append([hashlib.sha256((folder / n).read_bytes()).hexdigest()
                        for n in ("roc.png", "roc.svg", "calibration.png", "calibration.svg")])
    assert digests[0] == digests[1]
    roc = (tmp_path / "a" / "roc.svg").read_text()
    assert f'width="{CELL_WIDTH * 72:g}pt"' in roc and "<text" in roc  # a grid cell's width; text kept as text
    with Image.open(tmp_path / "a" / "roc.png") as png:
        assert round(png.info["dpi"][0]) >= 200 and png.size[0] == round(CELL_WIDTH * 200)


def test_legends_are_outside_the_data(monkeypatch, tmp_path):
    from validation import figures

    drawn = []
    monkeypatch.setattr(figures, "save", lambda figure, path: drawn.append(figure) or path)
    probs, labels, rows = _curves()
    figures.plot_calibration({"validation, before calibration": rows, "validation, after": rows,
                              "test, before calibration": rows, "test, after": rows}, tmp_path / "c.png")
    figures.plot_calibration({"site": rows}, tmp_path / "r.png", width=CELL_WIDTH)
    figures.plot_roc({"val": (probs, labels, 0.8)}, None, 0.5, tmp_path / "roc.png")
    figures.plot_pr({"test": (probs, labels, 0.7)}, 0.5, 0.6, tmp_path / "pr.png", 0.387)
    for figure in drawn:
        figure.draw_without_rendering()
        legend = figure.legends[0].get_window_extent()
        assert all(ax.get_legend() is None and not legend.overlaps(ax.get_window_extent()) for ax in figure.axes)
    lines = drawn[0].axes[0].get_lines()[1:]  # the four calibration curves: two colours, dashed before
    assert len({line.get_color() for line in lines}) == 2 and len({line.get_linestyle() for line in lines}) == 2


def test_a_long_test_name_in_a_narrow_column_wraps_only_at_its_separators():
    """WeasyPrint breaks a code span with ``overflow-wrap: break-word`` mid-name before it uses a
    ``<wbr>`` (seen in the traceability matrix: ``..._the_te`` / ``rminal``); the stylesheet and
    the break opportunities together wrap it after an underscore, and keep an identifier whole."""
    import markdown

    from fda_submission.print_layout import PrintLayout

    css = (Path(__file__).parents[1] / "fda_submission" / "templates" / "document.css").read_text()
    name = "test_escape_codes_in_header_values_never_reach_the_terminal"
    body = markdown.markdown("| requirement | text | verifying tests (result) |\n|---|---|---|\n"
                             f"| REQ-INPUT-002 | Text taken from inputs is escaped wherever it is written | `{name}` "
                             "(1/1 passed) |\n", extensions=["tables", PrintLayout()])
    document = weasyprint.HTML(string=f"<html><head><style>{css} @page {{ size: 11cm 12cm; margin: 1cm }}"
                               f"</style></head><body><main>{body}</main></body></html>").render()
    lines = ["".join(b.text for b in _walk(line) if isinstance(b, boxes.TextBox)).replace("\u200b", "")
             for page in document.pages for line in _walk(page._page_box) if isinstance(line, boxes.LineBox)]
    parts = [line for line in lines if line and line.split(" ")[0] in name and len(line.split(" ")[0]) > 2]
    assert len(parts) > 1 and "".join(p.split(" ")[0] for p in parts) == name  # wrapped, and nothing lost
    assert all(p.endswith("_") for p in parts[:-1]), parts
    assert "REQ-INPUT-002" in lines  # on one line


def test_a_contents_list_leaves_out_the_subsections_of_a_section_that_has_too_many():
    import markdown

    from fda_submission.print_layout import CONTENTS_ENTRIES, PrintLayout

    many = "".join(f"### REQ-X-{i:03d}\n\ntext\n\n" for i in range(CONTENTS_ENTRIES + 1))
    text = f"# Title\n\n[TOC]\n\n## 1. Few\n\n### 1.1 One\n\n## 2. Many\n\n{many}## 3. Last\n"
    page = markdown.markdown(text, extensions=["toc", PrintLayout()])
    toc = re.search(r'<div class="toc">(.*?)</div>', page, re.DOTALL).group(1)
    assert all(f'href="#{a}"' in toc for a in ("1-few", "11-one", "2-many", "3-last"))
    assert "req-x-000" not in toc and '<h3 id="req-x-000">' in page  # listed no more, still in the text

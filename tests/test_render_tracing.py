"""The renderer keeps every trace and escapes once: an assessment's table captions ("Nih images
1024: ...") keep the source of the set's name, a code span in HTML shows its text as written (a
signature's ``'0.0.0.0'`` was printed as ``&#39;0.0.0.0&#39;``), and the committed example
package is whole and prints no untraced number."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import markdown
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fda_submission import wording
from fda_submission.document_control import DOCUMENTS
from fda_submission.render import SafeLinks, _environment
from fda_submission.tracing import (
    TEXT_OPEN,
    Source,
    TracedStr,
    TraceRecorder,
    recording,
    stop_recording,
    strip_marks,
)

pytestmark = pytest.mark.requirement("REQ-DOC-008")
EXAMPLE = Path(__file__).resolve().parents[1] / "fda_submission" / "examples" / "pediatric_reference"


def test_an_assessments_table_captions_keep_the_source_of_its_name():
    name = TracedStr("nih_images_1024", Source("assessment/nih_images_1024/assessment.json", "name"))
    recorder = TraceRecorder()
    token = recording(recorder)
    try:
        view = wording.assessment_view({"name": name, "device": {"threshold": 0.5}})
        printed = [format(view["table_captions"][k], "") for k in ("metrics", "acceptance", "shift")]
    finally:
        stop_recording(token)
    assert strip_marks(printed[0]) == "Nih images 1024: metrics at the locked threshold"
    assert all(TEXT_OPEN in text for text in printed)  # the digits of the name are sourced, not untraced
    assert {e.ref for e in recorder.entries} == {name.ref}


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Co")), min_size=1, max_size=30)
       .filter(lambda t: "`" not in t and t.strip() == t))
def test_a_code_span_in_html_shows_its_text_escaped_exactly_once(text):
    env = _environment(True)
    body = env.from_string("`{{ value }}`").render(value=text)
    page = markdown.markdown(body, extensions=[SafeLinks()])
    code = page.split("<code>", 1)[1].rsplit("</code>", 1)[0]
    assert "<" not in code.replace("<wbr>", "")  # nothing the input holds becomes markup
    assert html.unescape(code) == text


def test_the_committed_example_package_has_every_document_and_no_untraced_number():
    checks = json.loads((EXAMPLE / "checks.json").read_text())
    assert checks["untraced_numbers"] == []
    absolute = re.compile(r"(?<![\w.$~])/(?:work|tmp|root|home|Users|var/folders)/")  # a path of some machine
    for path in EXAMPLE.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".html", ".json", ".csv", ".yaml", ".xml"):
            assert not absolute.search(path.read_text(errors="replace")), f"{path.name} holds a machine path"
    for name in DOCUMENTS:
        for suffix in (".md", ".html", ".pdf"):
            assert (EXAMPLE / f"{name}{suffix}").is_file(), f"{name}{suffix} missing from the example package"

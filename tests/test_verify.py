"""``submission --verify``: a package rendered from a real run verifies clean; any number edited in
any document (Markdown or HTML), a number added without a source, a caption moved to another
figure, and evidence that is missing or altered are each named - document, place, both sides."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.cli import main
from fda_submission.numbers import numeric_tokens
from fda_submission.render import render_documents
from fda_submission.verify import FIGURE, verify_package

pytestmark = pytest.mark.requirement("REQ-DOC-008")


@pytest.fixture(scope="module")
def rendered(trained_run, tmp_path_factory):
    """(run, package): the trained run and its package (Markdown and HTML)."""
    root = tmp_path_factory.mktemp("verify")
    run = shutil.copytree(trained_run, root / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = run / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    summary_path.write_text(json.dumps(summary))
    render_documents(run, root / "package", formats=("md", "html"))
    return run, root / "package"


@pytest.fixture
def package(rendered, tmp_path):
    """A copy of the package to edit, and its run."""
    run, original = rendered
    return run, shutil.copytree(original, tmp_path / "package")


def _traced(package) -> list[tuple[str, dict]]:
    """(document file, token) of every traced number the package printed."""
    trace = json.loads((package / "trace.json").read_text())
    return [(doc["file"], token) for doc in trace["documents"].values() for token in doc["tokens"] if token["trace"]]


def test_a_package_rendered_from_its_run_verifies_clean(package, capsys):
    run, pkg = package
    assert verify_package(pkg, run) == []
    assert main(["submission", "--verify", str(pkg), "--run", str(run)]) == 0
    assert "verified against run" in capsys.readouterr().out
    assert _traced(pkg), "the package prints traced numbers"


def test_the_evidence_carries_no_path_of_the_machine(rendered):
    """The run's files hold absolute paths (its cohort, its cache); the package's copies name them
    portably ($RUN, $TMP, ...), and the index keeps the run file's own sha256 for --verify."""
    run, pkg = rendered
    assert str(run.resolve()) in (run / "model" / "train_summary.json").read_text()  # the run does hold one
    roots = {str(run.resolve()), str(Path(__file__).resolve().parents[1]), str(Path.home()),
             str(Path(tempfile.gettempdir()).resolve())}
    for path in (pkg / "evidence").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not [r for r in roots if r in text], f"{path.relative_to(pkg)} names a folder of this machine"
    assert "$RUN/cohort" in (pkg / "evidence" / "run" / "model" / "train_summary.json").read_text()


def _replace_token(text: str, line: int, column: int, old: str, new: str) -> str:
    lines = text.split("\n")
    target = lines[line - 1]
    assert target[column:column + len(old)] == old
    lines[line - 1] = target[:column] + new + target[column + len(old):]
    return "\n".join(lines)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_number_edited_in_any_document_is_named(rendered, tmp_path_factory, data):
    run, original = rendered
    pkg = shutil.copytree(original, tmp_path_factory.mktemp("edit") / "package")
    file, token = data.draw(st.sampled_from(_traced(pkg)), label="number")
    path = pkg / file
    text = path.read_text()
    found = [t for t in numeric_tokens(text) if t.text == token["text"]]
    assert found, f"{token['text']} is printed in {file}"
    spot = data.draw(st.sampled_from(found), label="occurrence")
    edited = data.draw(st.sampled_from(["9", "0.001", str(int(re.sub(r"\D", "", spot.text) or 0) + 1)]), label="new")
    if edited == spot.text:
        edited = spot.text + "1"
    path.write_text(_replace_token(text, spot.line, spot.column, spot.text, edited))
    findings = verify_package(pkg, run)
    named = [f for f in findings if f.kind in ("edited", "untraced", "number") and file.split(".")[0] in f.where]
    assert named, f"editing {spot.text} -> {edited} in {file} went unnoticed"
    assert any(f.printed == edited for f in named)


def test_a_number_edited_in_the_html_is_named(package):
    run, pkg = package
    page = pkg / "algorithm_description.html"
    html = page.read_text()
    match = re.search(r'(<span class="tn" data-trace="[^"]+">)([^<]+)(</span>)', html)
    page.write_text(html[:match.start(2)] + "12345" + html[match.end(2):])
    (finding, *_) = [f for f in verify_package(pkg, run) if "algorithm_description" in f.where]
    assert finding.printed == "12345" and finding.expected == match.group(2)


def test_a_number_added_without_a_source_is_named(package):
    run, pkg = package
    path = pkg / "summary_510k.md"
    text = path.read_text()
    anchor = text.index("\n## 2.")
    path.write_text(text[:anchor] + "\n\nThe device detected 97.3 of every 100 cases.\n" + text[anchor:])
    found = [f for f in verify_package(pkg, run) if f.kind in ("edited", "untraced")]
    assert {"97.3", "100"} <= {f.printed for f in found}


def test_a_caption_moved_to_another_figure_is_named(package):
    run, pkg = package
    path = pkg / "algorithm_description.md"
    text = path.read_text()
    captions = {m.group("key"): m for m in FIGURE.finditer(text)}
    roc, pr = captions["roc"], captions["pr"]
    swapped = text.replace(f"*{pr.group('label')}: {pr.group('caption')}*",
                           f"*{pr.group('label')}: {roc.group('caption')}*")
    path.write_text(swapped)
    (finding,) = [f for f in verify_package(pkg, run) if f.kind == "caption"]
    assert finding.printed == roc.group("caption") and finding.expected == pr.group("caption")


def _default_profile():
    from fda_submission.profile import default_profile_path

    return default_profile_path()


def test_missing_or_altered_evidence_and_a_changed_run_are_named(package):
    run, pkg = package
    index = json.loads((pkg / "evidence" / "index.json").read_text())
    copy = next(name for name in index if name.endswith("evaluation/metrics.json"))
    (pkg / copy).write_text((pkg / copy).read_text().replace('"auroc"', '"auroc" ', 1))
    (pkg / "evidence" / "profile.yaml").unlink()
    kinds = {(f.kind, f.where) for f in verify_package(pkg, run, profile=_default_profile())}
    assert any(kind == "evidence-altered" and copy in where for kind, where in kinds)
    assert any(kind == "evidence-missing" and "profile.yaml" in where for kind, where in kinds)
    metrics = run / "evaluation" / "metrics.json"
    saved = metrics.read_text()
    try:
        data = json.loads(saved)
        data["splits"]["test"]["auroc"]["value"] = 0.123456
        metrics.write_text(json.dumps(data))
        assert any(f.kind in ("not-the-run", "number") for f in verify_package(pkg, run, profile=_default_profile()))
    finally:
        metrics.write_text(saved)

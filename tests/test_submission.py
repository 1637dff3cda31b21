"""Submission documents: numbers from the run, every section, figures, banner, escaping, PDF,
document control, markers for what a person must fill, one device identifier, byte-identical
output; and the pieces behind them (reader agreement, SOUP, traceability)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from fda_submission.document_control import DOCUMENTS
from fda_submission.render import BANNER, prepare, render_documents
from fda_submission.soup import soup_list
from fda_submission.trace import FAILED, NO_TEST, VERIFIED, trace

from .conftest import shared

SECTIONS = ["## 1. General information", "## 2. Algorithm design and function", "## 3. Algorithm training",
            "## 4. Databases", "## 5. Ground truth", "## 6. Performance", "### 6.2 Standalone performance",
            "## 7. Known issues", "## 8. Validation plan (summary)"]
PLAN = ["## 1. Purpose", "## 2. Patient population to request", "## 3. Ground-truth acquisition",
        "## 4. Performance standard and acceptance criteria", "## 5. Sample size", "## 6. Subgroup analyses",
        "## 7. Unit of analysis, refused and indeterminate cases, stopping",
        "## 8. What would make the device fail validation", "## 9. Time to notification", "## 10. Evidence so far"]


@pytest.fixture
def run(trained_run, tmp_path):
    copy = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = copy / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(copy / "cohort")
    summary_path.write_text(json.dumps(summary))
    return copy


def _texts(paths):
    return {p.name: p.read_text() for p in paths}


def test_sections_figures_and_no_template_syntax(run, tmp_path):
    written = render_documents(run, tmp_path / "docs", formats=("md", "html"))
    texts = _texts(written["md"] + written["html"])
    algorithm, plan = texts["algorithm_description.md"], texts["validation_plan.md"]
    assert all(s in algorithm for s in SECTIONS) and all(h in plan for h in PLAN)
    assert sorted(p.stem for p in written["md"]) == sorted(DOCUMENTS)
    for name, text in texts.items():
        assert not re.search(r"{{|}}|{%|%}", text), name
        assert "n/a (" not in text
    assert all((tmp_path / "docs" / "figures" / f).is_file() for f in ("flowchart.png", "roc.png", "pr.png"))
    html = texts["algorithm_description.html"]
    assert len(re.findall(r"data:image/(?:png|svg\+xml);base64,", html)) == algorithm.count("](figures/")  # embedded
    assert "<table>" in html
    # every figure written is referenced in the text, and the appendices are issued once
    referenced = "".join(t for n, t in texts.items() if n.endswith(".md"))
    for figure in (tmp_path / "docs" / "figures").iterdir():
        assert f"](figures/{figure.name})" in referenced, figure.name
    assert "## Appendix C. Traceability matrix" in texts["appendices.md"]
    assert not any("## Appendix A. Provenance" in t for n, t in texts.items() if n != "appendices.md" and n.endswith(".md"))


@pytest.mark.requirement("REQ-DOC-001")
def test_every_number_comes_from_the_run(run, tmp_path):
    metrics_path = run / "evaluation" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    old = metrics["splits"]["test"]["auroc"]["value"]
    first = _texts(render_documents(run, tmp_path / "a", formats=("md",))["md"])["algorithm_description.md"]
    assert f"{old:.3f} (95% CI" in first
    metrics["splits"]["test"]["auroc"]["value"] = 0.4321
    metrics["splits"]["test"]["confusion"]["fp"] = 987
    metrics_path.write_text(json.dumps(metrics))
    second = _texts(render_documents(run, tmp_path / "b", formats=("md",))["md"])["algorithm_description.md"]
    assert "0.432 (95% CI" in second and f"{old:.3f} (95% CI" not in second.split("## 6.")[1].split("| F1")[0]
    assert "had 987 false positives" in second
    cohort = json.loads((run / "cohort" / "summary.json").read_text())
    assert f"{cohort['n_images']:,} images of {cohort['n_patients']:,} patients" in second
    performance = second.split("## 6. Performance")[1].split("## 7.")[0]
    assert "`evaluation/metrics.json`" in performance.split("*Sources:")[-1]  # the section names its file
    assert "(profile: `" not in second  # provenance is out of the prose: in the section notes and trace.json


@pytest.mark.requirement("REQ-DOC-001")
def test_standalone_sections_come_from_the_assessments(run, tmp_path):
    from cxr_device.runtime.bundle import load_bundle
    from validation.assessment import assess
    from validation.assessment_inputs import from_cohort

    assess(load_bundle(run / "bundle"), from_cohort(run / "cohort", "test"), run / "assessment" / "site_a", "site_a",
           {"auroc": 0.3, "sensitivity": 0.1, "specificity": 0.3}, 0.3, n_bootstrap=100)
    first = render_documents(run, tmp_path / "a", formats=("md",))
    algorithm = (tmp_path / "a" / "algorithm_description.md").read_text()
    standalone = algorithm.split("### 6.2")[1].split("## 7.")[0]
    assert "#### Site a" in standalone
    assert "`assessment/site_a/assessment.json`" in standalone.split("*Sources:")[-1]
    assert "](figures/assess_site_a_roc.png)" in algorithm and "No standalone assessment exists" not in algorithm
    path = run / "assessment" / "site_a" / "assessment.json"
    document = json.loads(path.read_text())
    document["accepted"]["sensitivity"].update(value=0.4321, k=4321, n=10000)
    path.write_text(json.dumps(document))
    render_documents(run, tmp_path / "b", formats=("md",))
    changed = (tmp_path / "b" / "algorithm_description.md").read_text()
    assert "| sensitivity | 0.432 (4321/10000) |" in changed and "(4321/10000)" not in algorithm
    assert len(first["md"]) == len(DOCUMENTS)


@pytest.mark.requirement("REQ-DOC-002")
def test_synthetic_banner_exactly_when_synthetic(run, tmp_path):
    written = render_documents(run, tmp_path / "s", formats=("md", "html"))
    texts = _texts(written["md"] + written["html"])
    assert all(BANNER in text for text in texts.values())
    assert 'class="banner"' in texts["validation_plan.html"] and "@top-center" in texts["validation_plan.html"]
    for name in ("cohort/summary.json", "evaluation/metrics.json"):
        data = json.loads((run / name).read_text())
        data["synthetic"] = False
        (run / name).write_text(json.dumps(data))
    real_written = render_documents(run, tmp_path / "r", formats=("md", "html"))
    real = _texts(real_written["md"] + real_written["html"])
    assert not any(BANNER in text for text in real.values())


def test_profile_words_are_escaped_in_html(run, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text('device_name: "Lung<script>alert(1)</script> & Co"\nmanufacturer: ACME Imaging\n')
    written = render_documents(run, tmp_path / "d", profile, formats=("md", "html"))
    html = _texts(written["html"])["algorithm_description.html"]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "ACME Imaging" in _texts(written["md"])["algorithm_description.md"]
    profile.write_text("colour: blue\n")
    with pytest.raises(CxrDeviceError, match="unknown key"):
        render_documents(run, tmp_path / "e", profile)


def test_missing_inputs_name_the_file_and_the_command(run, tmp_path):
    (run / "evaluation" / "metrics.json").unlink()
    with pytest.raises(CxrDeviceError, match="metrics.json: not found; make it with `cxr-device evaluate"):
        render_documents(run, tmp_path / "x")
    shutil.rmtree(run / "bundle")
    assert main(["submission", "--run", str(run), "--out", str(tmp_path / "y")]) == 2


def test_pdf_when_weasyprint_is_available(run, tmp_path):
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: the system Pango library is missing
        pytest.skip(f"PDF is the optional [pdf] extra and needs Pango: {err}")
    written = render_documents(run, tmp_path / "p", formats=("pdf",))
    assert [p.name for p in written["pdf"]] == [f"{name}.pdf" for name in DOCUMENTS]
    assert all(p.read_bytes().startswith(b"%PDF") and p.stat().st_size > 20_000 for p in written["pdf"])
    from fda_submission.render import _write_pdf

    page = render_documents(run, tmp_path / "h", formats=("html",))["html"][-1].read_text()
    twice = [_write_pdf(page, tmp_path / f"{i}.pdf", "2026-12-01").read_bytes() for i in range(2)]
    assert twice[0] == twice[1]  # byte-identical: the font subsets are dated by the issue date, not the clock


def test_reader_agreement_on_the_real_reread_labels():
    from fda_submission.agreement import reader_agreement

    result = reader_agreement(shared("nih", "google2019_nih-chest-xray-labels.csv.gz"))
    pneumonia = result["comparisons"]["pneumonia"]
    assert (result["n_images"], pneumonia["label_positive"], pneumonia["both_positive"]) == (4376, 76, 59)
    assert -1 <= pneumonia["kappa"] <= 1


def test_soup_lists_the_stack_with_versions():
    import torch

    soup = {d["name"].lower(): d for d in soup_list()}
    assert soup["torch"]["version"] == torch.__version__.split("+")[0] or soup["torch"]["version"] == torch.__version__
    assert {"pydicom", "numpy", "safetensors"} <= set(soup)
    assert soup["pydicom"]["purpose"] == "DICOM parsing and pixel decoding"


@pytest.mark.requirement("REQ-DOC-004")
def test_fields_to_fill_are_visible_markers_counted_by_the_completeness_report(run, tmp_path):
    prepared = prepare(run)
    fields = {item.field: item for item in prepared.completeness}
    assert "manufacturer name and address (profile: manufacturer)" in fields
    assert "predicate 510(k) number (profile: predicate.k_number)" in fields
    assert "the owner confirms the classification (profile: classification.confirmed)" in fields
    assert sorted(fields["manufacturer name and address (profile: manufacturer)"].documents) == sorted(DOCUMENTS)
    for document, text in prepared.markdown.items():
        assert "[TBC: revision]" in text, document  # the finished form; the package index names the key
    profile = tmp_path / "profile.yaml"
    profile.write_text("manufacturer: ACME Imaging, 1 Main St\npredicate: {k_number: K000000}\n"
                       "document_control: {id_prefix: ACME-PNA, revision: A, date: 2026-12-01, author: J. Doe, "
                       "approvers: [{name: R. Roe, role: Regulatory Affairs}]}\n")
    filled = prepare(run, profile)
    remaining = {item.field for item in filled.completeness}
    assert not any("manufacturer" in f and "predicate" not in f for f in remaining)
    assert not any("document_control" in f for f in remaining) and "predicate 510(k) number" not in str(remaining)
    assert "| document | **ACME-PNA-AD**, revision A, 2026-12-01 |" in filled.markdown["algorithm_description"]
    assert "| R. Roe | Regulatory Affairs | on the signed copy |" in filled.markdown["pccp"]
    written = render_documents(run, tmp_path / "h", profile, ("html",))
    html = next(p for p in written["html"] if p.name == "summary_510k.html").read_text()
    assert '<mark class="todo">[TBC: ' in html


@pytest.mark.requirement("REQ-DOC-005")
def test_one_device_identifier_and_byte_identical_output(run, tmp_path):
    import hashlib

    device_json = run / "bundle" / "device.json"
    sha = hashlib.sha256(device_json.read_bytes()).hexdigest()
    content = json.loads(device_json.read_text())["content_sha256"]
    formats = ("md", "html")
    first = render_documents(run, tmp_path / "a", formats=formats)
    second = render_documents(run, tmp_path / "b", formats=formats)
    for kind in (*formats, "sbom", "checks"):
        for a, b in zip(first[kind], second[kind]):
            assert a.read_bytes() == b.read_bytes(), a.name
    for path in first["md"]:
        text = path.read_text()
        assert f"device.json sha256 `{sha}`" in text, path.name  # the front matter of every document
        assert content not in text, path.name  # device.json's content hash is never the identifier
    assert sha in (tmp_path / "a" / "sbom.cdx.json").read_text()
    for figure in (tmp_path / "a" / "figures").iterdir():
        assert figure.read_bytes() == (tmp_path / "b" / "figures" / figure.name).read_bytes()


@pytest.mark.requirement("REQ-DOC-006")
def test_labeling_states_the_limitations_and_not_to_rule_out(run, tmp_path):
    labeling = prepare(run).markdown["labeling"]
    assert "must not be used to rule out pneumonia" in labeling
    assert "- Rows is not 512 to 8192;" in labeling and "- Modality is not one of CR, DX;" in labeling
    assert "could not be applied to them" in labeling  # the development images were PNG, not DICOM


def test_words_follow_the_runs_own_record(run):
    algorithm = prepare(run).markdown["algorithm_description"]
    assert "Initial weights: none (random initialisation); the model was trained from random initialisation." \
        in algorithm
    assert "fine-tuned" not in algorithm and "| layers trained (from random initialisation) |" in algorithm
    assert "locked before the test split was scored" not in algorithm
    assert "Every number, table and figure in this document is read from the run" not in algorithm
    plan = prepare(run).markdown["validation_plan"]
    assert "| AUROC | 0.8 | DeLong (Newcombe (2006) score interval where DeLong's is degenerate) |" in plan and "| sensitivity | 0.8 | Clopper-Pearson |" in plan
    assert "patient-level bootstrap" not in plan.split("## 4.")[1].split("## 5.")[0].split("|---|")[0]


def test_pediatric_reference_standard_does_not_claim_a_third_expert():
    from fda_submission.context import reference_standard

    text = reference_standard("pediatric", {"source": {"path": "/data/kermany/train"}})["text"]
    assert "re-split here by patient" in text and "graded by two experts" in text
    assert "checked by a third expert" not in text


def _junit(tmp_path, cases):
    body = "".join(
        f'<testcase classname="tests.t" name="{name}">'
        + "".join(f'<properties><property name="requirement" value="{r}"/></properties>' for r in reqs)
        + ("<failure message='x'/>" if result == "failed" else "<skipped/>" if result == "skipped" else "")
        + "</testcase>" for name, result, reqs in cases)
    path = tmp_path / "junit.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="s">{body}</testsuite></testsuites>')
    return path


def test_traceability_matrix(tmp_path, capsys):
    report = _junit(tmp_path, [("test_a", "passed", ["REQ-COHORT-001"]), ("test_b[1]", "failed", ["REQ-COHORT-002"]),
                               ("test_c", "passed", [])])
    rows = {r.id: r for r in trace(report)}
    assert rows["REQ-COHORT-001"].status == VERIFIED and rows["REQ-COHORT-002"].status == FAILED
    assert rows["REQ-DOC-001"].status == NO_TEST
    assert main(["trace", "--junit", str(report)]) == 1
    assert "| REQ-COHORT-001 |" in capsys.readouterr().out
    with pytest.raises(CxrDeviceError, match="unknown requirement"):
        trace(_junit(tmp_path, [("test_x", "passed", ["REQ-NOPE-001"])]))


def test_docs_list_every_requirement_of_the_yaml():
    from pathlib import Path

    from fda_submission.trace import load_requirements

    page = (Path(__file__).resolve().parents[1] / "docs" / "requirements.md").read_text()
    for item in load_requirements():
        assert f"| {item['id']} | {item['text']} |" in page, f"docs/requirements.md is missing {item['id']}"

"""Submission documents: numbers from the run, every section, figures, banner, escaping, PDF;
and the pieces behind them (sample size, reader agreement, SOUP, traceability)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from cxr_device.cli import main
from cxr_device.errors import CxrDeviceError
from fda_submission.render import BANNER, render_documents
from fda_submission.sample_size import proportion_n, study_size
from fda_submission.soup import soup_list
from fda_submission.trace import FAILED, NO_TEST, VERIFIED, trace

from .conftest import shared

SECTIONS = ["## 1. General information", "## 2. Algorithm design and function", "## 3. Algorithm training",
            "## 4. Databases", "## 5. Ground truth", "## 6. FDA validation plan (summary)"]
PLAN = ["## 1. Purpose", "## 2. Patient population to request", "## 3. Ground-truth acquisition",
        "## 4. Performance standard and acceptance criteria", "## 5. Sample size", "## 6. Subgroup analyses",
        "## 7. What would make the device fail validation"]


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
    for name, text in texts.items():
        assert not re.search(r"{{|}}|{%|%}", text), name
        assert "n/a (" not in text
    assert algorithm.count("](figures/") >= 8
    assert all((tmp_path / "docs" / "figures" / f).is_file() for f in ("flowchart.png", "roc.png", "pr.png"))
    html = texts["algorithm_description.html"]
    assert html.count("data:image/png;base64,") == algorithm.count("](figures/")  # every figure embedded
    assert "<table>" in html and "Appendix C. Traceability matrix" in html


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


@pytest.mark.requirement("REQ-DOC-002")
def test_synthetic_banner_exactly_when_synthetic(run, tmp_path):
    texts = _texts(sum(render_documents(run, tmp_path / "s", formats=("md", "html")).values(), []))
    assert all(BANNER in text for text in texts.values())
    assert 'class="banner"' in texts["validation_plan.html"] and "@top-center" in texts["validation_plan.html"]
    for name in ("cohort/summary.json", "evaluation/metrics.json"):
        data = json.loads((run / name).read_text())
        data["synthetic"] = False
        (run / name).write_text(json.dumps(data))
    real = _texts(sum(render_documents(run, tmp_path / "r", formats=("md", "html")).values(), []))
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
    assert [p.name for p in written["pdf"]] == ["algorithm_description.pdf", "validation_plan.pdf"]
    assert all(p.read_bytes().startswith(b"%PDF") and p.stat().st_size > 20_000 for p in written["pdf"])


def test_sample_size_from_the_criteria():
    # ((1.96 * sqrt(.8 * .2) + 0.8416 * sqrt(.9 * .1)) / .1)^2 = 107.3 -> 108 positives
    assert proportion_n(0.8, 0.9) == 108
    assert proportion_n(0.9, 0.85) is None  # expected below the criterion: no size can show it
    size = study_size({"auroc": 0.8, "sensitivity": 0.8, "specificity": 0.7},
                      {"auroc": 0.9, "sensitivity": 0.9, "specificity": 0.8}, prevalence=0.1)
    assert size["per_criterion"]["sensitivity"]["total"] == 1080 and size["total"] == 1080 and size["achievable"]
    assert not study_size({"sensitivity": 0.95}, {"sensitivity": 0.9}, 0.2)["achievable"]


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


def test_sample_size_subgroup_floor():
    size = study_size({"sensitivity": 0.8}, {"sensitivity": 0.99}, prevalence=0.75, min_per_class=90)
    assert size["per_criterion"]["subgroup floor"]["total"] == 360  # 90 negatives at 25 % negatives
    assert size["total"] == 360


def test_docs_list_every_requirement_of_the_yaml():
    from pathlib import Path

    from fda_submission.trace import load_requirements

    page = (Path(__file__).resolve().parents[1] / "docs" / "requirements.md").read_text()
    for item in load_requirements():
        assert f"| {item['id']} | {item['text']} |" in page, f"docs/requirements.md is missing {item['id']}"

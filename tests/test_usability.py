"""The usability engineering summary: its user interface comes from the device itself - the SRs of
an accepted and a refused synthetic image made with the run's locked bundle, shown by dsrdump or,
without it, by the product's own rendering of the same content tree; the administrator's help
from the commands' parsers - and the RMF and HF documents render with every number traced and
verify against their run."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from fda_submission.usability import interface, load_use_file

pytestmark = pytest.mark.requirement("REQ-DOC-007")


@pytest.fixture(scope="module")
def examples(trained_run):
    return interface.result_examples(trained_run / "bundle")


def test_the_sr_examples_are_the_locked_devices_answer_for_each_image(examples):
    accepted, refused = examples["examples"]
    assert (accepted["status"], refused["status"]) == ("accepted", "refused")
    positive = accepted["probability"] >= accepted["threshold"]
    # the finding and the decision of the example, as the SR holds them, in the text a viewer shows
    assert accepted["decision"] == ("pneumonia" if positive else "no pneumonia")
    assert '<contains CODE:(,,"Finding")=(233604007,SCT,"Pneumonia")>' in accepted["text"]
    verdict = '(52101004,SCT,"Present")' if positive else '(272519000,SCT,"Absent")'
    assert f'<contains CODE:(,,"Pneumonia")={verdict}>' in accepted["text"]
    comment = (f"{accepted['decision']} (probability {accepted['probability']:.3f}, locked threshold "
               f"{accepted['threshold']:.3f}; pneumonia when probability >= threshold)")
    assert comment in accepted["text"] and accepted["comments"][0].startswith(comment)
    summary = "All algorithms succeeded; with findings" if positive else "All algorithms succeeded; without findings"
    assert accepted["summary"] == summary and summary in accepted["text"]
    assert refused["decision"] is None and refused["summary"] == "No algorithms succeeded; without findings"
    assert "REFUSED by the device's input rules" in refused["text"] and "view-position" in refused["text"]
    assert '"Probability"' not in refused["text"]  # no probability for an image the device did not read
    for x in (accepted, refused):
        assert "2000-01-01 12:00:00" in x["text"] or "20000101 120000" in x["text"]  # the synthetic image's date
        assert "SYNTHETIC^PHANTOM" in x["text"]  # a phantom, not a patient
    sc = examples["secondary_capture"]
    assert sc["banner"] == "NOT FOR PRIMARY DIAGNOSIS - Grad-CAM (cxr-device)" and sc["burned_in_annotation"] == "YES"
    assert "NOT FOR PRIMARY DIAGNOSIS" in sc["series_description"] and "not a localisation" in sc["image_comments"]


def test_the_same_run_gives_the_same_examples(trained_run, examples):
    assert interface.result_examples(trained_run / "bundle") == examples


def test_without_dsrdump_the_products_rendering_lists_the_same_content_tree(trained_run, monkeypatch, tmp_path):
    kept = {}
    real = interface.render_sr

    def keep(path):
        kept[path.name] = path.read_bytes()
        return real(path)

    monkeypatch.setattr(interface, "render_sr", keep)
    with_tool = interface.result_examples(trained_run / "bundle")
    monkeypatch.setattr(interface, "_dsrdump", lambda: None)  # as on a machine without DCMTK
    own = interface.result_examples(trained_run / "bundle")
    assert all(x["renderer"].startswith("the product's own text rendering") for x in own["examples"])
    for mine in own["examples"]:
        assert mine["summary"] in mine["text"] and mine["comments"][0] in mine["text"]
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK dsrdump is not installed: its listing cannot be compared")
    for name, data in kept.items():
        path = tmp_path / name
        path.write_bytes(data)
        dump = subprocess.run(["dsrdump", *interface.DSRDUMP_OPTIONS, str(path)], capture_output=True,
                              text=True, check=True).stdout.splitlines()
        from pydicom import dcmread

        from fda_submission.usability.sr_text import sr_text

        mine = sr_text(dcmread(path)).splitlines()
        items = [line for line in dump if line.lstrip().startswith("<")]
        assert items and [line for line in items if line not in mine] == [], name  # every content item, alike
    assert all(x["renderer"].startswith("DCMTK dsrdump") for x in with_tool["examples"])


def test_the_administrators_help_comes_from_the_commands_parsers():
    from cxr_device.cli import build_parser

    commands = {c["command"]: c["text"] for c in interface.admin_commands()}
    assert list(commands) == ["cxr-device serve --help", "cxr-device status --help", "cxr-device verify --help"]
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in ("serve", "status", "verify"):
        text = commands[f"cxr-device {name} --help"]
        assert text.startswith(f"usage: cxr-device {name} ")
        for action in sub[name]._actions:
            assert action.option_strings[-1] in text  # every option the parser has
    assert "--tls-cert" in commands["cxr-device serve --help"] and "died" in commands["cxr-device status --help"]


def test_every_critical_task_and_use_problem_names_hazards_of_the_risk_file():
    from fda_submission.profile import load_profile
    from fda_submission.risk import load_risks

    hazards = {h["id"] for h in load_risks(load_profile())[0]}
    use = load_use_file()
    named = [h for item in use["critical_tasks"] + use["use_problems"]["items"] for h in item["hazards"]]
    assert named and set(named) <= hazards
    assert {"HAZ-01", "HAZ-02", "HAZ-13", "HAZ-15", "HAZ-18"} <= set(named)  # automation bias, alert fatigue, ...


@pytest.mark.requirement("REQ-DOC-001")
def test_rmf_and_hf_render_with_every_number_traced_and_verify_against_the_run(trained_run, tmp_path):
    from fda_submission.render import render_documents
    from fda_submission.verify import verify_package

    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = run / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    summary_path.write_text(json.dumps(summary))
    out = tmp_path / "package"
    render_documents(run, out, formats=("md", "html"))
    checks = json.loads((out / "checks.json").read_text())
    ours = ("risk_management", "usability")
    assert [u for u in checks["untraced_numbers"] if u["document"] in ours] == []
    findings = [f for f in verify_package(out, run) if f.where.startswith(ours) or "usability" in f.where
                or "risk_management" in f.where]
    assert findings == [], [f.line() for f in findings]
    hf, rmf = (out / "usability.md").read_text(), (out / "risk_management.md").read_text()
    derived = json.loads((out / "evidence" / "derived.json").read_text())["usability"]["interface"]
    accepted = derived["examples"][0]
    assert f'"{accepted["decision"]}"' in hf and "    <contains CODE:(,,\"Finding\")=(233604007,SCT,\"Pneumonia\")>" in hf
    assert "**Not run.**" in hf and "| CT-02 |" in hf and "REFUSED by the device's input rules" in hf
    html = (out / "usability.html").read_text()
    assert "<pre><code>" in html and "&lt;contains CODE:(,," in html and "&amp;lt;" not in html  # escaped once
    assert "### HAZ-13: Result filed under the wrong patient or study" in rmf and "Table 1-3" in rmf
    assert "| design | The threshold is chosen on development data only (the validation split" in rmf


@pytest.mark.requirement("REQ-DOC-003")
def test_a_critical_task_naming_a_hazard_the_risk_file_does_not_hold_is_a_finding():
    from fda_submission.consistency import check_risks
    from fda_submission.profile import load_profile
    from fda_submission.risk import load_risks

    use = load_use_file()
    context = {"risk_problems": [], "risk_file": "default_risks.yaml", "hazards": load_risks(load_profile())[0],
               "usability": {**use, "file": "use.yaml"}}
    assert check_risks(context) == []
    use["critical_tasks"][0]["hazards"] = ["HAZ-01", "HAZ-99"]
    [finding] = check_risks(context)
    assert finding.code == "usability-hazard" and (finding.left.source, finding.left.value) == ("use.yaml: CT-01", "HAZ-99")

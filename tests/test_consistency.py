"""The consistency check: a coherent run (trained, evaluated, assessed, with a profile that agrees)
has no finding and renders; each contradiction of issue 12, reproduced on a copy of that run,
is found and names both sides; the CLI refuses to render on findings unless --allow-findings,
and --check prints the findings and the fields still to fill."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import fda_submission
from cxr_device.cli import main
from cxr_device.runtime.bundle import canonical_hash, load_bundle
from fda_submission.context import planning_values
from fda_submission.document_control import DOCUMENTS
from fda_submission.render import ConsistencyError, prepare, render_documents

pytestmark = pytest.mark.requirement("REQ-DOC-003")

RELATION = "The synthetic phantoms are 64 px PNG files standing in for DICOM exports; no DICOM path is claimed."


def _point_cohort_to(run):
    path = run / "model" / "train_summary.json"
    summary = json.loads(path.read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    path.write_text(json.dumps(summary))


def _supported_ratings() -> list[dict]:
    """The default hazards whose residual probability the run estimates, with a P2 so small that
    this run's few test cases support the stated levels (a coherent risk file for a tiny run)."""
    from fda_submission.profile import load_profile
    from fda_submission.risk import load_risks

    out = []
    for hazard in load_risks(load_profile())[0]:
        if hazard["estimate"]:
            hazard = {k: v for k, v in hazard.items() if k != "requirements"}
            hazard["estimate"] = {**hazard["estimate"], "p2": 1e-6}
            out.append(hazard)
    return out


@pytest.fixture(scope="module")
def coherent(trained_run, tmp_path_factory):
    """(run, profile dict): the trained run with a standalone assessment judged against the
    profile's criteria and prevalence, and a profile whose population matches the locked rules."""
    from cxr_device.synth import SynthSettings, generate
    from validation.assessment import assess
    from validation.assessment_inputs import from_metadata

    root = tmp_path_factory.mktemp("coherent")
    run = shutil.copytree(trained_run, root / "run", ignore=shutil.ignore_patterns("cache"))
    _point_cohort_to(run)
    test = json.loads((run / "evaluation" / "metrics.json").read_text())["splits"]["test"]
    planning = planning_values(test)  # the exact lower bounds the plan assumes
    criteria = {m: round(max(0.01, planning[m] - 0.1), 3) for m in ("auroc", "sensitivity", "specificity")}
    profile = {"population": {"name": "patients referred for a frontal chest radiograph", "age_years": {"min": 1, "max": 95},
                              "sexes": ["female", "male"], "views": ["PA", "AP"], "modalities": ["DX", "CR"],
                              "settings": ["hospital"]},
               "training_data": {"relation_to_dicom": RELATION}, "acceptance": criteria, "expected_prevalence": 0.3,
               "study": {"simulation_replicates": 200}, "risks": {"overrides": _supported_ratings()}}
    external = generate(root / "external", SynthSettings(n_patients=30, seed=5, image_size=64, prevalence=0.3),
                        progress=False)
    assess(load_bundle(run / "bundle"), from_metadata(external, [root / "external"]), run / "assessment" / "external",
           "external", criteria, 0.3, n_bootstrap=100)
    return run, profile


@pytest.fixture
def case(coherent, tmp_path):
    """A fresh copy of the coherent run and a writer of its profile: ``(run, write(profile) -> path)``."""
    run = shutil.copytree(coherent[0], tmp_path / "run")
    _point_cohort_to(run)

    def write(changes: dict | None = None, **top) -> str:
        profile = json.loads(json.dumps(coherent[1]))
        for key, value in (changes or {}).items():
            section, _, field = key.partition(".")
            if field:
                profile[section][field] = value
            else:
                profile[section] = value
        profile.update(top)
        path = tmp_path / "profile.yaml"
        path.write_text(yaml.safe_dump(profile))
        return str(path)

    return run, write


def _codes(run, profile) -> dict[str, list]:
    found: dict[str, list] = {}
    for finding in prepare(run, profile).findings:
        found.setdefault(finding.code, []).append(finding)
    return found


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_a_coherent_run_has_no_finding_and_renders(case, tmp_path):
    run, write = case
    profile = write()
    prepared = prepare(run, profile)
    assert prepared.findings == []
    written = render_documents(run, tmp_path / "docs", profile, ("md",), allow_findings=False)
    assert len(written["md"]) == len(DOCUMENTS) and (tmp_path / "docs" / "sbom.cdx.json").is_file()
    checks = json.loads((tmp_path / "docs" / "checks.json").read_text())
    assert checks["consistency_findings"] == [] and checks["to_be_completed"]
    assert not any("open consistency finding" in p.read_text() for p in written["md"])


def test_an_assessment_of_another_device(case):
    run, write = case
    _edit(run / "assessment" / "external" / "assessment.json",
          lambda a: a["device"].update(device_json_sha256="0" * 64))
    (finding,) = _codes(run, write())["identity-assessment"]
    assert finding.left.value == "0" * 64
    assert finding.right.source.startswith("bundle/device.json") and len(finding.right.value) == 64


def test_a_device_json_edited_after_locking_and_a_calibration_that_disagrees(case):
    run, write = case
    device = run / "bundle" / "device.json"
    _edit(device, lambda d: d["threshold"].update(value=0.5))  # content hash no longer matches
    codes = _codes(run, write())
    assert {"bundle-content", "threshold", "threshold-assessment", "identity-assessment"} <= set(codes)

    def forged(d):  # a consistent content hash, a calibration the evaluation never fitted
        d["threshold"]["value"] = json.loads((run / "evaluation" / "metrics.json").read_text())["threshold"]["value"]
        d["calibration"]["slope"] = 1.0
        d["content_sha256"] = canonical_hash(d)

    _edit(device, forged)
    codes = _codes(run, write())
    assert "bundle-content" not in codes and "calibration" in codes
    assert codes["calibration"][0].left.source == "bundle/device.json: calibration"


def test_metrics_changed_after_the_device_was_locked(case):
    run, write = case
    _edit(run / "evaluation" / "metrics.json", lambda m: m["splits"]["test"]["auroc"].update(value=0.99))
    (finding,) = _codes(run, write())["evaluation-changed"]
    assert finding.left.source == "bundle/device.json: evaluation.metrics_json_sha256"


def test_internal_results_are_never_the_only_evidence(case, tmp_path):
    run, write = case
    shutil.rmtree(run / "assessment")
    profile = write()
    (finding,) = _codes(run, profile)["no-standalone-evidence"]
    assert "internal results are the only evidence" in finding.message
    written = render_documents(run, tmp_path / "d", profile, ("md",))
    text = (tmp_path / "d" / "algorithm_description.md").read_text()
    assert "No standalone assessment exists" in text and "not standalone evidence" in text
    assert "[no-standalone-evidence]" in text  # rendered with the finding listed at the top
    assert len(written["md"]) == len(DOCUMENTS)


def test_a_pediatric_profile_with_the_default_adult_age_rule(case):
    run, write = case
    codes = _codes(run, write({"population.age_years": {"min": 1, "max": 5}}))
    (finding,) = codes["population-age-rule"]
    assert (finding.left.value, finding.right.value) == ("1 to 5 years", "1 to 95 years")
    assert "population-data" in codes  # the synthetic cohort's ages are all adult


def test_views_and_modalities_the_rules_do_not_restrict_alike(case):
    run, write = case
    codes = _codes(run, write({"population.views": ["PA"], "population.modalities": ["DX"]}))
    assert codes["population-views-rule"][0].right.value == "AP, PA"
    assert codes["population-modalities-rule"][0].right.value == "CR, DX"


def test_the_device_would_refuse_its_own_training_data(case):
    run, write = case
    codes = _codes(run, write({"training_data.relation_to_dicom": None}))
    assert codes["training-data-format"][0].left.value == "PNG 161" or \
        codes["training-data-format"][0].left.value.startswith("PNG ")
    size = codes["training-data-size"][0]
    assert size.left.value == "64 to 64 px" and size.right.value == "512 to 8192"


def test_a_pediatric_dataset_for_an_adult_population(case):
    run, write = case
    _edit(run / "cohort" / "summary.json", lambda s: s.update(dataset="pediatric", synthetic=False))
    _edit(run / "evaluation" / "metrics.json", lambda m: m.update(synthetic=False))
    codes = _codes(run, write({"population.age_years": {"min": 18, "max": 95}}))
    assert any(f.right.value == "pediatric" for f in codes["population-data"])


def test_assessments_judged_against_other_criteria_or_prevalence(case):
    run, write = case
    codes = _codes(run, write(acceptance={"auroc": 0.02, "sensitivity": 0.02, "specificity": 0.02},
                              expected_prevalence=0.2))
    assert "profile: acceptance" == codes["acceptance-criteria"][0].right.source
    assert codes["prevalence"][0].right.value == "0.2"


def test_criteria_no_study_can_show(case):
    run, write = case
    codes = _codes(run, write(acceptance={"auroc": 0.99, "sensitivity": 0.99, "specificity": 0.99}))
    assert {f.left.source for f in codes["plan-unreachable"]} == {"profile: acceptance.auroc",
                                                                  "profile: acceptance.sensitivity",
                                                                  "profile: acceptance.specificity"}


@pytest.mark.parametrize("text, code", [
    ("The model was fine-tuned on pediatric films.", "claim-fine-tuned"),
    ("Every study was checked by a third expert.", "claim-third-expert"),
    ("The threshold was locked before the test split was scored.", "claim-locked-before-test"),
    ("Every number in this document is read from the run.", "claim-every-number"),
    ("The device is FDA-cleared.", "claim-clearance"),
])
def test_claims_the_run_does_not_back(case, text, code):
    run, write = case
    (finding, *_) = _codes(run, write(clinical_workflow=text))[code]
    assert text.rstrip(".") in finding.left.value and finding.right.source == "the run"


def test_fine_tuned_is_backed_by_pretrained_weights(case):
    run, write = case
    _edit(run / "model" / "layers.json", lambda layers: layers["weights"].update(source="imagenet (torchvision)"))
    assert "claim-fine-tuned" not in _codes(run, write(clinical_workflow="The model was fine-tuned."))


@pytest.mark.requirement("REQ-RISK-002")
def test_a_residual_probability_the_run_contradicts_is_a_finding_naming_both_sides(case):
    run, write = case
    profile = write()
    assert "risk-rating" not in _codes(run, profile)
    with open(profile, encoding="utf-8") as file:
        stricter = yaml.safe_load(file)
    for hazard in stricter["risks"]["overrides"]:
        hazard["estimate"]["p2"] = 0.5  # harm follows the hazardous situation half the time
    found = _codes(run, write(risks=stricter["risks"]))["risk-rating"]
    assert {f.message.split(":")[0] for f in found} >= {"hazard HAZ-01"}
    assert all("residual_probability" in f.left.source and "Clopper-Pearson" in f.right.value for f in found)


def test_a_document_dated_before_the_device_was_locked(case):
    run, write = case
    (run / "manifest.json").write_text(json.dumps({"steps": {"evaluate": {"finished_at": "2026-11-30T10:00:00+00:00"}}}))
    (finding,) = _codes(run, write(document_control={"date": "2026-11-01"}))["document-date"]
    assert (finding.left.value, finding.right.value) == ("2026-11-01", "2026-11-30")
    assert "document-date" not in _codes(run, write(document_control={"date": "2026-12-01"}))


def test_cli_check_refuse_and_allow(case, tmp_path, capsys):
    run, write = case
    profile = write({"population.age_years": {"min": 1, "max": 5}})
    assert main(["submission", "--run", str(run), "--check", "--profile", profile]) == 1
    out = capsys.readouterr().out
    assert "[population-age-rule]" in out and "profile: population.age_years: 1 to 5 years" in out
    assert "bundle/input_rules.yaml: rule patient-age: 1 to 95 years" in out
    assert "field(s) to be completed" in out and "(profile: manufacturer)" in out
    out_dir = tmp_path / "refused"
    assert main(["submission", "--run", str(run), "--out", str(out_dir), "--profile", profile]) == 1
    assert not out_dir.exists() and "nothing rendered" in capsys.readouterr().err
    assert main(["submission", "--run", str(run), "--out", str(out_dir), "--profile", profile, "--allow-findings"]) == 1
    assert "[population-age-rule]" in (out_dir / "validation_plan.md").read_text()
    coherent_profile = write()
    assert main(["submission", "--run", str(run), "--check", "--profile", coherent_profile]) == 0
    assert "consistency: no finding" in capsys.readouterr().out
    assert main(["submission", "--run", str(run), "--profile", coherent_profile]) == 2  # no --out, no --check
    profile = write({"population.age_years": {"min": 1, "max": 5}})
    with pytest.raises(ConsistencyError, match="population-age-rule"):
        render_documents(run, tmp_path / "lib", profile, ("md",), allow_findings=False)
    assert not (tmp_path / "lib").exists()


def test_the_shipped_pediatric_rules_agree_with_the_example_pediatric_profile():
    from pathlib import Path

    from cxr_device.runtime.input_rules import load_rules
    from fda_submission.consistency import check_population
    from fda_submission.profile import load_profile

    root = Path(__file__).resolve().parents[1] / "fda_submission"
    profile = load_profile(root / "examples" / "pediatric_profile.yaml")
    cohort = {"splits": {"train": {"age": {"n": 0}}}}
    context = {"profile": profile, "cohort": cohort, "dataset": "pediatric",
               "rules_set": load_rules(root / "profiles" / "pediatric_chest_radiograph_rules.yaml")}
    assert check_population(context) == []
    context["rules_set"] = load_rules()  # the default rules accept 1 to 95 years, and images without an age
    assert [f.code for f in check_population(context)] == ["population-age-rule", "population-age-required"]


@pytest.mark.requirement("REQ-INPUT-003")
def test_age_required_in_the_profile_and_an_optional_locked_age_rule_are_a_finding():
    from pathlib import Path

    from cxr_device.runtime.input_rules import load_rules
    from fda_submission.consistency import check_population
    from fda_submission.profile import load_profile

    root = Path(__file__).resolve().parents[1] / "fda_submission"
    profile = load_profile(root / "examples" / "pediatric_profile.yaml")
    context = {"profile": profile, "cohort": {"splits": {}}, "dataset": "pediatric",
               "rules_set": load_rules(root / "profiles" / "pediatric_chest_radiograph_rules.yaml")}
    assert check_population(context) == []
    profile["population"]["age_required"] = False  # the profile declares age optional; the locked rule refuses
    [finding] = check_population(context)
    assert finding.code == "population-age-required" and "optional" in finding.left.value
    assert "required: refused" in finding.right.value


# --- the classes of contradiction a reviewer found (issue 18), each planted once -----------------
@pytest.mark.requirement("REQ-DOC-009")
def test_a_regulation_or_product_code_of_the_other_claim(case):  # C1
    run, write = case
    found = _codes(run, write(claim={"type": "cadt", "regulation": "21 CFR 892.2070", "product_code": "MYN"}))
    assert {f.right.source for f in found["claim-pair"]} == {"profile: claim.regulation", "profile: claim.product_code"}
    assert "claim-pair" not in _codes(run, write(claim={"type": "cadt", "regulation": "21 CFR 892.2080",
                                                        "product_code": "QFM"}))


@pytest.mark.requirement("REQ-DOC-009")
def test_an_intended_use_that_makes_the_other_claim(case):  # C1: CADe wording in a CADt device
    run, write = case
    text = "The software is intended to assist radiologists in the detection of findings suggestive of pneumonia."
    found = _codes(run, write(intended_use=text))["claim-other"]
    assert any(f.left.source == "profile: intended_use" for f in found)  # the profile says it
    assert any(f.left.source.endswith(".md") for f in found)  # and so do the documents that print it


@pytest.mark.requirement("REQ-DOC-009")
def test_a_cadt_package_says_triage_throughout(case, tmp_path):
    run, write = case
    written = render_documents(run, tmp_path / "docs", write(), formats=("md",))
    texts = {p.stem: p.read_text() for p in written["md"]}
    for name in ("device_description", "summary_510k", "labeling"):
        assert "892.2080" in texts[name] and "QFM" in texts[name], name
        assert "triage and notification" in texts[name], name
    assert "De Novo" in texts["summary_510k"]  # the pathway depends on the predicate


@pytest.mark.parametrize("text, code", [
    ("Performance on the internal test split, data the model has never seen, is high.", "claim-never-seen"),  # C2
    ("The DICOM path was validated on hospital DICOM exports.", "claim-site-dicom"),  # C10
])
def test_words_the_data_do_not_back(case, text, code):
    run, write = case
    (finding, *_) = _codes(run, write(clinical_workflow=text))[code]
    assert finding.right.source == "the run"


@pytest.mark.requirement("REQ-DOC-009")
def test_users_and_who_reads_every_study_disagree(case):  # C18
    run, write = case
    text = "The flag reorders the worklist; every study is read by a radiologist."
    found = _codes(run, write(readers="the radiologist or emergency physician who reads the study",
                              clinical_workflow=text))["users-readers"]
    assert found and found[0].right.source == "profile: readers"
    agree = "The flag reorders the worklist; every study is read by the radiologist or emergency physician."
    assert "users-readers" not in _codes(run, write(readers="the radiologist or emergency physician who reads the "
                                                          "study", clinical_workflow=agree))


def test_a_term_used_but_defined_nowhere(case):  # C17
    from fda_submission.consistency import check_wording

    run, write = case
    prepared = prepare(run, write())
    texts = {name: finished.text for name, finished in prepared.finished.items()}
    assert not [f for f in check_wording(texts, prepared.context) if f.code == "undefined-term"]
    plan = texts["validation_plan"]
    start = plan.index("**The collection window**")
    texts["validation_plan"] = plan[:start] + plan[plan.index("\n", start):]
    (finding,) = [f for f in check_wording(texts, prepared.context) if f.code == "undefined-term"]
    assert "collection window" in finding.message


def test_a_recipe_setting_the_algorithm_description_does_not_state(case):  # C6
    from fda_submission.wording import RECIPE_DESCRIBED

    run, write = case
    assert "recipe-coverage" not in _codes(run, write())
    config = run / "model" / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["mixup_alpha"] = 0.2
    config.write_text(yaml.safe_dump(data))
    (finding,) = _codes(run, write())["recipe-coverage"]
    assert finding.left.value == "mixup_alpha"
    template = (Path(fda_submission.__file__).parent / "templates" / "algorithm_description.md.j2").read_text()
    for key in RECIPE_DESCRIBED - {"model.arch", "model.weights", "model.freeze", "model.head_hidden"}:
        assert key.split(".")[-1] in template, f"{key} is said to be described but the template never reads it"


def test_the_arithmetic_of_the_training_steps_is_stated(case, tmp_path):
    """A run trained with ``cpu_bf16`` says bf16 autocast on the CPU and 32-bit scores; one trained
    in 32-bit says so (the summary's ``amp`` is what training recorded)."""
    run, write = case

    def algorithm(out):
        written = render_documents(run, out, write(), formats=("md",))["md"]
        return next(p for p in written if p.stem == "algorithm_description").read_text()

    assert "Arithmetic of the training steps: 32-bit floating point" in algorithm(tmp_path / "fp32")
    summary, config = run / "model" / "train_summary.json", run / "model" / "config.yaml"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "amp": "bf16", "device": "cpu"}))
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "cpu_bf16": True}))
    text = algorithm(tmp_path / "bf16")
    assert "bfloat16 autocast on cpu" in text and "the validation and every score of the device in 32-bit" in text


def test_the_dataset_table_has_a_test_column_and_the_plan_uses_exact_bounds(case, tmp_path):  # C14, planning values
    run, write = case
    written = render_documents(run, tmp_path / "docs", write(), formats=("md",))
    algorithm = next(p for p in written["md"] if p.stem == "algorithm_description").read_text()
    header = next(line for line in algorithm.split("## 4. Databases")[1].splitlines() if line.startswith("| "))
    assert "test" in header
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())["splits"]["test"]
    prepared = prepare(run, write())
    expected = prepared.context["expected"]
    assert expected["sensitivity"] == pytest.approx(metrics["sensitivity"]["clopper_pearson"][0])
    assert expected["specificity"] == pytest.approx(metrics["specificity"]["clopper_pearson"][0])

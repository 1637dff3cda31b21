"""cxr-device compare: two locked bundles on the same labelled set, through the predict path,
paired; nothing vanishes; the verdict gates the exit code; bad input is one line."""
from __future__ import annotations

import csv
import json
import shutil
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib

from cxr_device import cli
from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from validation.assessment import assess
from validation.assessment_inputs import (
    LABEL_WITHOUT_FILE,
    from_cohort,
)
from validation.comparison import (
    BOTH,
    COMPARISON,
    PREDICTIONS,
    REPORT,
    ROC,
    compare,
    pair_scores,
    refusal_summary,
)
from validation.margins import NOT_ENOUGH_DATA, NOT_MET, Margins

ROOT = Path(__file__).resolve().parents[1]
LOOSE = Margins(auroc=-0.9, sensitivity=-0.9, specificity=-0.9, min_positives=2, min_negatives=2)


@pytest.fixture(autouse=True)
def tree_commands(monkeypatch):
    """The commands this source tree declares in pyproject.toml, whatever the installed metadata says
    (a venv installed before `compare` existed, or from another checkout)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    group = "cxr_device.commands"
    points = [EntryPoint(name, value, group) for name, value in declared[group].items()]
    monkeypatch.setattr(cli, "entry_points", lambda group: points if group == "cxr_device.commands" else [])


def test_pyproject_declares_the_command():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["cxr_device.commands"]
    assert declared["compare"] == "validation.commands:compare_command"


@pytest.fixture(scope="module")
def candidate_run(trained_run, tmp_path_factory):
    """The same cohort retrained with another seed and evaluated: a retrained device."""
    from cxr_device.models import ModelSpec
    from cxr_device.train_config import TrainConfig
    from cxr_device.training import train
    from validation.evaluation import evaluate_run

    run = tmp_path_factory.mktemp("candidate") / "run"
    shutil.copytree(trained_run / "cohort", run / "cohort")
    config = TrainConfig(model=ModelSpec(arch="small_cnn"), image_size=32, epochs=3, batch_size=16, lr=2e-3,
                         workers=0, seed=7)
    train(run / "cohort", run, config, progress=False)
    evaluate_run(run, n_bootstrap=100, progress=False)
    return run


@pytest.fixture(scope="module")
def bundles(trained_run, candidate_run):
    return load_bundle(trained_run / "bundle"), load_bundle(candidate_run / "bundle")


@pytest.mark.requirement("REQ-COMPARE-001")
def test_two_bundles_on_a_cohort_split_through_the_assess_path(trained_run, bundles, tmp_path):
    baseline, candidate = bundles
    assert baseline.device_sha256 != candidate.device_sha256
    inputs = from_cohort(trained_run / "cohort", "test")
    document = compare(baseline, candidate, inputs, tmp_path / "c", "internal", Margins(), "defaults")
    # each device's own numbers are those `assess` reports for it on the same set
    for device, bundle in zip(("baseline", "candidate"), bundles):
        alone = assess(bundle, inputs, tmp_path / device, device, n_bootstrap=100)["accepted"]
        assert document["auroc"][device] == pytest.approx(alone["auroc"]["value"], abs=1e-12)
        assert document["sensitivity"][device]["k"] == alone["sensitivity"]["k"]
        assert document["specificity"][device]["k"] == alone["specificity"]["k"]
        assert document["devices"][device]["threshold"] == bundle.threshold
    frame = pd.read_csv(tmp_path / "c" / PREDICTIONS)
    assert len(frame) == len(inputs.items) == document["paired"]["n_cases"] and set(frame["scored_by"]) == {BOTH}
    n_pos, n_neg = document["paired"]["n_positive"], document["paired"]["n_negative"]
    assert document["verdict"] == NOT_ENOUGH_DATA  # a handful of synthetic cases: fewer than 30 per class
    assert f"{n_pos} positive(s) scored by both devices" in document["judgement"]["not_enough_data"][0]
    table = document["agreement"]["table"]
    assert sum(table.values()) == n_pos + n_neg
    assert document["sensitivity"]["interval_method"].startswith("Newcombe (1998) method 10")
    assert (tmp_path / "c" / ROC).is_file() and document["figures"] == {"roc": ROC}
    page = (tmp_path / "c" / REPORT).read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "http" not in page.replace(
        "http-equiv", "")
    saved = json.loads((tmp_path / "c" / COMPARISON).read_text())
    assert saved["verdict"] == NOT_ENOUGH_DATA and saved["margins"]["auroc"] == -0.02
    assert saved["inputs"]["header_checks"].startswith("none possible (PNG/JPEG)")


@pytest.mark.requirement("REQ-COMPARE-001")
def test_swapping_the_bundles_flips_every_sign_end_to_end(trained_run, bundles, tmp_path):
    inputs = from_cohort(trained_run / "cohort", "test")
    forward = compare(*bundles, inputs, tmp_path / "f", "s", LOOSE, "test")
    backward = compare(*reversed(bundles), inputs, tmp_path / "b", "s", LOOSE, "test")
    assert backward["auroc"]["difference"] == -forward["auroc"]["difference"]
    assert backward["auroc"]["ci95"] == [-forward["auroc"]["ci95"][1], -forward["auroc"]["ci95"][0]]
    for name in ("sensitivity", "specificity"):
        assert backward[name]["difference"] == -forward[name]["difference"]
        assert backward[name]["ci95"] == [-forward[name]["ci95"][1], -forward[name]["ci95"][0]]
        assert backward[name]["mcnemar"]["p_value"] == forward[name]["mcnemar"]["p_value"]
    assert backward["agreement"]["kappa"] == forward["agreement"]["kappa"]


def _profile(tmp_path: Path, **margins) -> Path:
    path = tmp_path / "profile.yaml"
    body = "".join(f"    {k}: {'null' if v is None else v}\n" for k, v in margins.items())
    path.write_text(f"pccp:\n  margins:\n{body}")
    return path


@pytest.mark.requirement("REQ-COMPARE-001")
def test_the_exit_code_gates_a_release(trained_run, candidate_run, tmp_path, capsys):
    baseline, candidate = str(trained_run / "bundle"), str(candidate_run / "bundle")
    cohort = ["--cohort", str(trained_run / "cohort"), "--split", "test", "--quiet"]
    loose = _profile(tmp_path, auroc=-0.9, sensitivity=-0.9, specificity=-0.9, min_positives=2, min_negatives=2)
    # the released device against itself: identical, met, exit 0
    code = main(["compare", "--baseline", baseline, "--candidate", baseline, "--name", "same", *cohort,
                 "--profile", str(loose), "--out", str(tmp_path / "same")])
    out = capsys.readouterr().out
    assert code == 0 and "verdict: met" in out and "same locked device" in out
    same = json.loads((tmp_path / "same" / COMPARISON).read_text())
    assert same["auroc"]["difference"] == 0 and same["auroc"]["ci95"] == [0, 0]
    assert same["sensitivity"]["difference"] == 0 and same["agreement"]["observed_agreement"] == 1
    # the seed-7 model ranks these cases better (AUROC 0.87 against 0.58): as the released device,
    # the other one is a worse candidate, whose AUROC difference misses the -0.02 margin
    auroc_only = _profile(tmp_path, auroc=-0.02, sensitivity=None, specificity=None, min_positives=2,
                          min_negatives=2)
    code = main(["compare", "--baseline", candidate, "--candidate", baseline, "--name", "worse", *cohort,
                 "--profile", str(auroc_only), "--out", str(tmp_path / "worse")])
    assert code == 1 and "verdict: not met" in capsys.readouterr().out
    worse = json.loads((tmp_path / "worse" / COMPARISON).read_text())
    assert worse["verdict"] == NOT_MET and worse["auroc"]["ci95"][1] < 0 and worse["auroc"]["p_value"] < 0.05
    code = main(["compare", "--baseline", baseline, "--candidate", candidate, "--name", "better", *cohort,
                 "--profile", str(auroc_only), "--out", str(tmp_path / "better")])
    assert code == 0 and "verdict: met" in capsys.readouterr().out
    # the defaults: too few cases, with --run the outputs go to RUN/comparison/NAME
    run = shutil.copytree(candidate_run, tmp_path / "run")
    code = main(["compare", "--baseline", baseline, "--candidate", str(run / "bundle"), "--name", "internal",
                 *cohort, "--run", str(run)])
    assert code == 1 and "verdict: not enough data" in capsys.readouterr().out
    assert json.loads((run / "comparison" / "internal" / COMPARISON).read_text())["verdict"] == NOT_ENOUGH_DATA


def _chest(make_dicom, name, seed, **header):
    pixels = (np.random.default_rng(seed).random((512, 512)) * 4095).astype(np.uint16)
    return make_dicom(name, pixels, bits_stored=12, **header)


@pytest.fixture
def strict_ages_bundle(trained_run, tmp_path):
    """The released model re-locked with input rules that stop at 50 years: a candidate that
    refuses inputs the baseline scores."""
    from validation.evaluation import evaluate_run

    run = shutil.copytree(trained_run, tmp_path / "strict_run", ignore=shutil.ignore_patterns("cache"))
    rules = (ROOT / "cxr_device" / "runtime" / "rules" / "chest_radiograph.yaml").read_text()
    assert "age_range: {min: 1, max: 95}" in rules
    (tmp_path / "rules.yaml").write_text(rules.replace("age_range: {min: 1, max: 95}", "age_range: {min: 1, max: 50}"))
    evaluate_run(run, n_bootstrap=100, rules=tmp_path / "rules.yaml", progress=False)
    return run / "bundle"


@pytest.mark.requirement("REQ-COMPARE-001", "REQ-DATA-001")
def test_every_input_is_scored_by_both_or_listed_with_its_reason(trained_run, strict_ages_bundle, make_dicom,
                                                                  tmp_path, capsys):
    folder = tmp_path / "set"
    for i in range(8):
        _chest(make_dicom, f"set/chest{i}.dcm", i, PatientAge="070Y" if i < 3 else "030Y")
    _chest(make_dicom, "set/lateral.dcm", 20, ViewPosition="LL")
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["path", "label"], *[[f"chest{i}.dcm", i % 2] for i in range(8)], ["lateral.dcm", 1],
                          ["missing.dcm", 0]])
    out = tmp_path / "out"
    code = main(["compare", "--baseline", str(trained_run / "bundle"), "--candidate", str(strict_ages_bundle),
                 "--name", "dicom", "--dicom", str(folder), "--labels", str(labels), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "1 labelled input(s) excluded before scoring" in captured.err
    document = json.loads((out / COMPARISON).read_text())
    refusals = document["refusals"]
    assert refusals["n_inputs"] == 9 and refusals["scored_by_both"] == 5
    assert sorted(r["key"] for r in refusals["unscored_by_candidate_only"]) == ["chest0.dcm", "chest1.dcm", "chest2.dcm"]
    assert all("PatientAge" in r["candidate_reason"] and r["baseline_status"] == "accepted"
               for r in refusals["unscored_by_candidate_only"])
    assert [r["key"] for r in refusals["unscored_by_both"]] == ["lateral.dcm"]
    assert refusals["unscored_by_baseline_only"] == [] and "leaves 3 input(s) unscored" in refusals["finding"]
    assert refusals["increase"] == pytest.approx(3 / 9)
    assert document["judgement"]["criteria"]["refusals"]["met"] is False
    assert [e["reason"] for e in document["inputs"]["excluded"]] == [LABEL_WITHOUT_FILE]
    # nothing vanished: scored by both + listed unscored = labelled; labelled + excluded = the labels file's rows
    listed = sum(len(refusals[k]) for k in ("unscored_by_candidate_only", "unscored_by_baseline_only",
                                            "unscored_by_both"))
    assert refusals["scored_by_both"] + listed == document["inputs"]["n_labelled"] == 9
    assert document["inputs"]["n_labelled"] + document["inputs"]["n_excluded"] == 10
    frame = pd.read_csv(out / PREDICTIONS)
    assert len(frame) == 9 and frame["scored_by"].value_counts().to_dict() == {"both": 5, "baseline only": 3,
                                                                               "neither": 1}
    page = (out / REPORT).read_text()
    assert "missing.dcm" in page and "chest0.dcm" in page and "PatientAge" in page


def test_pairing_and_refusals_on_hand_made_answers():
    def frame(statuses):
        return pd.DataFrame({"key": list("abcd"), "patient": list("abcd"), "label": [1, 0, 1, 0],
                             "status": statuses, "probability": [0.9 if s == "accepted" else None for s in statuses],
                             "decision": ["pneumonia" if s == "accepted" else "" for s in statuses],
                             "reason": ["" if s == "accepted" else f"{s} because" for s in statuses]})

    paired = pair_scores(frame(["accepted", "refused", "accepted", "unreadable"]),
                         frame(["accepted", "accepted", "refused", "refused"]))
    assert list(paired["scored_by"]) == ["both", "candidate only", "baseline only", "neither"]
    summary = refusal_summary(paired)
    assert summary["not_scored_by_baseline"] == 2 and summary["not_scored_by_candidate"] == 2
    assert summary["increase"] == 0.0 and "scores 1 that the baseline left unscored" in summary["finding"]
    assert summary["unscored_by_both"][0]["baseline_reason"] == "unreadable because"
    with pytest.raises(ValueError, match="same inputs"):
        pair_scores(frame(["accepted"] * 4), frame(["accepted"] * 4).iloc[::-1])


def _one_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.requirement("REQ-INPUT-001")
def test_bad_input_is_one_precise_line(trained_run, tmp_path, capsys):
    bundle = str(trained_run / "bundle")
    base = ["compare", "--baseline", bundle, "--candidate", bundle, "--name", "x",
            "--cohort", str(trained_run / "cohort")]
    assert main([*base, "--out", str(tmp_path / "o"), "--run", str(trained_run)]) == 2
    _one_line(capsys, "--run RUN", "not both")
    assert main(base) == 2
    _one_line(capsys, "--out DIR", "not neither")
    assert main([*base, "--run", str(tmp_path / "nope")]) == 2
    _one_line(capsys, "nope", "not a run folder")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pccp:\n  margins:\n    auroc: 0.02\n")
    assert main([*base, "--out", str(tmp_path / "o"), "--profile", str(bad)]) == 2
    _one_line(capsys, str(bad), "pccp.margins.auroc", "less than or equal to 0")
    bad.write_text("pccp:\n  margins:\n    sensitivty: -0.05\n")
    assert main([*base, "--out", str(tmp_path / "o"), "--profile", str(bad)]) == 2
    _one_line(capsys, str(bad), "pccp.margins.sensitivty: unknown key")
    bad.write_text("pccp: [1, 2]\n")
    assert main([*base, "--out", str(tmp_path / "o"), "--profile", str(bad)]) == 2
    _one_line(capsys, str(bad), "pccp: expected a mapping")
    missing = ["compare", "--baseline", bundle, "--candidate", str(tmp_path / "no_bundle"), "--name", "x",
               "--cohort", str(trained_run / "cohort"), "--out", str(tmp_path / "o")]
    assert main(missing) == 2
    _one_line(capsys, "no_bundle")
    assert main([*base[:6], "../up", *base[7:], "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, "--name '../up'")
    assert main(["compare", "--baseline", bundle, "--candidate", bundle, "--name", "x", "--out",
                 str(tmp_path / "o")]) == 2
    _one_line(capsys, "give exactly one of --cohort")
    assert not (tmp_path / "o" / COMPARISON).exists()


def test_profile_margins_default_to_the_model(tmp_path):
    from fda_submission.profile import default_profile_path, load_profile

    shipped = load_profile()["pccp"]["margins"]
    assert shipped == Margins().model_dump()
    example = load_profile(ROOT / "fda_submission" / "examples" / "pediatric_profile.yaml")["pccp"]["margins"]
    assert example == Margins().model_dump()
    partial = tmp_path / "p.yaml"
    partial.write_text("pccp:\n  margins:\n    auroc: -0.03\n")
    assert load_profile(partial)["pccp"]["margins"] == {**Margins().model_dump(), "auroc": -0.03}
    assert "margins:" in default_profile_path().read_text()


@pytest.mark.requirement("REQ-COMPARE-001", "REQ-DOC-001")
def test_the_pccp_cites_the_comparisons_of_the_run(trained_run, candidate_run, bundles, tmp_path):
    from fda_submission.render import render_documents

    run = shutil.copytree(candidate_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    shutil.copytree(trained_run / "eda", run / "eda")
    summary_path = run / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    summary_path.write_text(json.dumps(summary))
    before = render_documents(run, tmp_path / "before", formats=("md",))
    pccp = (tmp_path / "before" / "pccp.md").read_text()  # the method is stated; no comparison is cited yet
    assert "`cxr-device compare --baseline RELEASED/bundle" in pccp and before["md"]
    assert "comparison.json" not in pccp and "| internal |" not in pccp
    document = compare(bundles[0], load_bundle(run / "bundle"), from_cohort(run / "cohort", "test"),
                       run / "comparison" / "internal", "internal", LOOSE, "test profile")
    render_documents(run, tmp_path / "after", formats=("md",))
    pccp = (tmp_path / "after" / "pccp.md").read_text()
    a = document["auroc"]
    assert "`cxr-device compare --baseline RELEASED/bundle --candidate MODIFIED/bundle" in pccp
    row = next(line for line in pccp.splitlines() if line.startswith("| internal |"))
    assert f"{a['difference']:+.3f} ({a['ci95'][0]:+.3f} to {a['ci95'][1]:+.3f})" in row
    assert row.endswith(f"| -0.9 / -0.9 / -0.9 | **{document['verdict']}** |")  # the margins it was judged against
    assert document["devices"]["baseline"]["device_json_sha256"][:16] in row and "not this one" not in row
    assert "*Sources: `comparison/internal/comparison.json`; profile: acceptance, pccp.*" in pccp
    findings = json.loads((tmp_path / "after" / "checks.json").read_text())["consistency_findings"]
    assert [f["code"] for f in findings if f["code"] == "pccp-margins"] == ["pccp-margins"]  # -0.9 is not -0.02
    appendices = (tmp_path / "after" / "appendices.md").read_text()
    assert "comparison/internal/comparison.json" in appendices  # hashed in the provenance appendix


@pytest.mark.requirement("REQ-INPUT-002")
def test_the_report_escapes_every_text_from_the_inputs(trained_run, bundles, tmp_path):
    from validation.comparison_report import render_report

    document = compare(*bundles, from_cohort(trained_run / "cohort", "test"), tmp_path / "c", "s", LOOSE, "test")
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    document["refusals"]["unscored_by_both"] = [{"key": hostile, "label": 1, "baseline_status": "refused",
                                                 "baseline_reason": hostile, "candidate_status": "unreadable",
                                                 "candidate_reason": hostile}]
    document["inputs"]["excluded"] = [{"key": hostile, "reason": "label_without_file", "detail": hostile}]
    document["margins"]["source"] = hostile
    page = render_report(document, b"\x89PNG")
    assert "<script" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    assert page.count("<img ") == 1 and 'src="data:image/png;base64,' in page  # only the embedded figure

"""The node's time-to-notification benchmark in the documents: a run folder holding ttn/ttn.json
(bench/bench_ttn.py) fills the validation plan and the 510(k) summary, every figure traced to that
file (submission --verify re-reads it), and a benchmark file the documents cannot quote stops with
the file and the field."""
from __future__ import annotations

import json
import shutil

import pytest

from cxr_device.errors import CxrDeviceError
from fda_submission.context import TTN_FILE, time_to_notification
from fda_submission.render import render_documents
from fda_submission.verify import verify_package

#: A benchmark output as bench/bench_ttn.py writes it (the fields the documents print, and more).
TTN = {"format": "cxr-device-ttn/1", "machine": "x86_64 test machine, 2 cores", "sender": "DCMTK storescu v3.6.7",
       "arrival_rate_per_min": 6.0, "images_per_study": "1 to 3", "pixel_side": "2048 to 3072", "p50_s": 1.234,
       "p95_s": 2.345, "max_s": 3.456, "max_sustained_per_min": 13.5, "n": 24, "ladder": []}


@pytest.fixture(scope="module")
def rendered(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("ttn_docs")
    run = shutil.copytree(trained_run, root / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = run / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(run / "cohort")
    summary_path.write_text(json.dumps(summary))
    (run / "ttn").mkdir()
    (run / TTN_FILE).write_text(json.dumps(TTN))
    written = render_documents(run, root / "package", formats=("md", "html"))
    return run, root / "package", {p.name: p.read_text() for p in written["md"]}


@pytest.mark.requirement("REQ-TTN-001", "REQ-DOC-008")
def test_the_plan_and_the_summary_quote_the_benchmark_traced_to_its_file(rendered):
    run, package, texts = rendered
    plan = texts["validation_plan.md"].split("## 9. Time to notification")[1].split("## 10.")[0]
    assert "time to notification p50 1.23 s, p95 2.35 s, maximum 3.46 s" in plan
    assert "13.5 studies per minute (ttn/ttn.json)" in plan and "at 6 studies per minute" in plan
    assert "x86_64 test machine, 2 cores" in plan and "DCMTK storescu v3.6.7" in plan
    assert "not simulated" in plan
    assert "p50 1.23 s, p95 2.35 s" in texts["summary_510k.md"]
    assert "ttn/ttn.json" in json.loads((package / "evidence" / "index.json").read_text()).__repr__()
    trace = json.loads((package / "trace.json").read_text())
    sources = json.dumps(trace)
    assert TTN_FILE in sources and "p95_s" in sources
    assert verify_package(package, run) == []


@pytest.mark.requirement("REQ-TTN-001", "REQ-DOC-008")
def test_a_benchmark_changed_after_rendering_is_named_by_verify(rendered, tmp_path):
    run, package, _ = rendered
    run_copy = shutil.copytree(run, tmp_path / "run")
    (run_copy / TTN_FILE).write_text(json.dumps({**TTN, "p95_s": 2.999}))
    findings = verify_package(shutil.copytree(package, tmp_path / "package"), run_copy)
    assert findings and any("ttn" in f.line() for f in findings)


@pytest.mark.requirement("REQ-TTN-001")
@pytest.mark.parametrize("change, field", [({"p50_s": "fast"}, "p50_s"), ({"max_s": None}, "max_s"),
                                           ({"machine": ""}, "machine"), ({"p95_s": 0.5}, "percentiles out of order"),
                                           ({"max_sustained_per_min": float("nan")}, "max_sustained_per_min")])
def test_a_benchmark_the_documents_cannot_quote_names_the_file_and_the_field(tmp_path, change, field):
    (tmp_path / "ttn").mkdir()
    (tmp_path / TTN_FILE).write_text(json.dumps({**TTN, **change}))
    with pytest.raises(CxrDeviceError, match=field) as err:
        time_to_notification(tmp_path, {})
    assert "ttn.json" in str(err.value) and "bench_ttn.py" in str(err.value)
    assert time_to_notification(tmp_path / "elsewhere", {}) is None

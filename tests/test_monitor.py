"""`cxr-device monitor`: the post-market signals from what a node recorded, never an image.

Node folders are written by the node's own study-record writer (``study_record.record_answer``)
with chosen values, so every count, share, limit and percentile is known by hand; one test runs a
real node on loopback and checks that monitor reports what its study.json files hold."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from cxr_device.cli import main
from cxr_device.runtime import study_record
from cxr_device.runtime.bundle import load_bundle, write_bundle
from cxr_device.runtime.inference import NEGATIVE, POSITIVE
from cxr_device.runtime.node import RESULTS, hashed
from cxr_device.runtime.pipeline import ACCEPTED, REFUSED
from validation import ttn
from validation.control_limits import TAIL, expected_flag_rate, p_chart
from validation.drift import psi, score_drift
from validation.monitor import CROSSED, WITHIN

from . import test_dicom_results as shared_fixtures
from . import test_node as node_fixtures
from .test_node import TIMEOUT, send

quick_bundle, node_factory, demo_dicoms = (shared_fixtures.quick_bundle, node_fixtures.node_factory,
                                           shared_fixtures.demo_dicoms)  # the same fixtures

REQ = "REQ-MON-001"
CLOCK = "boot:test-clock"
#: Stands in for patient data a study record must never carry into monitor.json.
SECRET = "PHI-SECRET-7f3a"


# --- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def monitored_bundle(tmp_path_factory) -> Path:
    """A locked small CNN with an internal test operating point (sensitivity 0.8, specificity 0.9)
    and 400 reference scores spread evenly over [0.05, 0.95]."""
    import torch

    from cxr_device.models import ModelSpec, build_model
    from cxr_device.preprocessing import Preprocessing
    from cxr_device.runtime.input_rules import default_rules_path

    root = tmp_path_factory.mktemp("monitored_bundle")
    (root / "cohort.csv").write_text("image_id\n")
    torch.manual_seed(0)
    reference = [round(float(p), 6) for p in np.linspace(0.05, 0.95, 400)]
    write_bundle(root / "bundle", build_model(ModelSpec(arch="small_cnn", weights="none")),
                 Preprocessing(image_size=32),
                 {"value": 0.5, "rule": "max_f1", "test": {"sensitivity": 0.8, "specificity": 0.9}},
                 default_rules_path(), root / "cohort.csv",
                 extra={"reference_scores": {"source": "validation split", "probabilities": reference}})
    return root / "bundle"


def image(uid: str, probability: float | None = 0.3, status: str = ACCEPTED, received: float = 100.0,
          answered: float = 101.0, day: str = "2026-12-01", ae: str = "PACS1", refusal: str | None = None,
          device: str | None = None, **extra) -> dict:
    """One image's answer as the node records it (format /3)."""
    return {"sop_instance_uid": uid, "status": status, "view": "PA",
            "probability": probability if status == ACCEPTED else None,
            "decision": (POSITIVE if probability >= 0.5 else NEGATIVE) if status == ACCEPTED else None,
            "refusal": None if status == ACCEPTED else (refusal or "view-position"),
            "sr": f"{uid}.sr.dcm", "received_at": f"{day}T08:00:00.000Z", "answered_at": f"{day}T08:00:01.000Z",
            "received_monotonic": received, "answered_monotonic": answered, "monotonic_clock": CLOCK,
            "notified_by": "sr", "calling_ae": ae, "manufacturer": "ACME", "model_name": "DX-1",
            "device_sha256": device, **extra}


def write_node(root: Path, studies: dict[str, list[dict]], log: list[dict] | None = None) -> Path:
    """A node folder whose results/<study>/study.json files the node's own writer made."""
    for uid, images in studies.items():
        folder = root / RESULTS / uid
        folder.mkdir(parents=True, exist_ok=True)
        for entry in images:
            study_record.record_answer(folder, uid, entry)
    (root / RESULTS).mkdir(parents=True, exist_ok=True)
    if log is not None:
        (root / "node.log").write_text("".join(json.dumps(e) + "\n" for e in log))
    return root


def run_monitor(node: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(["monitor", "--node", str(node), "--out", str(out), "--quiet", *extra])
    document = json.loads((out / "monitor.json").read_text()) if (out / "monitor.json").is_file() else {}
    return code, document


def studies_from(probabilities: list[float], prefix: str = "1.2.3", **kwargs) -> dict[str, list[dict]]:
    """One accepted single-image study per probability."""
    return {f"{prefix}.{k}": [image(f"{prefix}.{k}.1", p, **kwargs)] for k, p in enumerate(probabilities)}


# --- control limits and the expected flag rate, by hand ---------------------------------------------
def _binomial_limits(rate: float, n: int) -> tuple[int, int]:
    """The p-chart's count limits from the binomial pmf summed by hand (no scipy)."""
    def pmf(k: int) -> float:
        return math.comb(n, k) * rate ** k * (1 - rate) ** (n - k)

    cdf, lower = 0.0, None
    for k in range(n + 1):
        cdf += pmf(k)
        if cdf >= TAIL:
            lower = k
            break
    upper = next(k for k in range(n + 1) if 1.0 - sum(pmf(j) for j in range(k + 1)) <= TAIL)
    return lower, upper


@pytest.mark.requirement(REQ)
@pytest.mark.parametrize("rate, n, lower, upper", [(0.2, 50, 3, 19), (0.5, 500, 217, 283), (0.99, 20, 18, 20),
                                                   (0.001, 30, 0, 1)])
def test_p_chart_limits_are_the_exact_binomial_quantiles_clipped_to_0_1(rate, n, lower, upper):
    assert _binomial_limits(rate, n) == (lower, upper)
    limits = p_chart(rate, n)
    assert (limits.lower, limits.upper) == pytest.approx((lower / n, upper / n))
    assert 0.0 <= limits.lower <= rate <= limits.upper <= 1.0


@pytest.mark.requirement(REQ)
def test_expected_flag_rate_is_prevalence_times_sensitivity_plus_false_positives():
    assert expected_flag_rate(0.3, 0.8, 0.9) == pytest.approx(0.3 * 0.8 + 0.7 * 0.1)
    assert expected_flag_rate(0.0, 0.8, 1.0) == 0.0 and expected_flag_rate(1.0, 1.0, 0.0) == 1.0


# --- score drift against scipy and by hand -----------------------------------------------------------
@pytest.mark.requirement(REQ)
def test_psi_by_hand_on_deciles_and_ks_as_scipy():
    reference = np.arange(1, 101) / 100.0  # deciles 0.109 ... 0.901: ten bins of 10 scores
    observed = np.array([0.05] * 30 + [0.95] * 70)  # 30 in the first bin, 70 in the last
    e = np.full(10, 0.1)
    a = np.array([0.3] + [1e-4] * 8 + [0.7])
    assert psi(reference, observed) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    found = score_drift(reference, observed, 0.2, 0.01, 10)
    expected = ks_2samp(observed, reference)
    assert found["ks_statistic"] == pytest.approx(expected.statistic)
    assert found["ks_p_value"] == pytest.approx(expected.pvalue)
    # the KS statistic by hand: the largest distance between the two empirical distribution functions
    grid = np.union1d(reference, observed)
    ecdf = lambda x, s: np.searchsorted(np.sort(s), x, side="right") / len(s)  # noqa: E731
    assert found["ks_statistic"] == pytest.approx(np.max(np.abs(ecdf(grid, reference) - ecdf(grid, observed))))
    assert found["judged"] and found["crossed"]
    assert not score_drift(reference, observed, 0.2, 0.01, 101)["judged"]  # too few scores: not judged


# --- time to notification ---------------------------------------------------------------------------
@pytest.mark.requirement(REQ)
def test_time_to_notification_is_last_notification_minus_last_arrival_on_one_clock():
    record = {"images": [image("1", received=10.0, answered=12.5), image("2", received=11.0, answered=13.0)]}
    assert ttn.study_ttn(record) == (pytest.approx(2.0), "sr", None)
    forwarded = {"images": [image("1", received=10.0, answered=11.0, notified_by="forward",
                                  forwarded_monotonic=14.25, forwarded_clock=CLOCK)]}
    assert ttn.study_ttn(forwarded) == (pytest.approx(4.25), "forward", None)
    pending = {"images": [image("1", notified_by="forward")]}
    assert ttn.study_ttn(pending) == (None, None, ttn.NOT_NOTIFIED)
    two_clocks = {"images": [image("1"), image("2", monotonic_clock="boot:other")]}
    assert ttn.study_ttn(two_clocks) == (None, None, ttn.TWO_CLOCKS)
    old = {"images": [{k: v for k, v in image("1").items() if "monotonic" not in k}]}
    assert ttn.study_ttn(old) == (None, None, ttn.NO_RECEIPT)
    summary = ttn.summary([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (summary["p50_s"], summary["p95_s"], summary["max_s"]) == (3.0, pytest.approx(8.8), 10.0)


# --- the command over synthetic node folders --------------------------------------------------------
@pytest.mark.requirement(REQ)
def test_counts_limits_and_ttn_are_those_the_study_records_hold(monitored_bundle, tmp_path):
    bundle = load_bundle(monitored_bundle)
    sha = bundle.device_sha256
    # 20 single-image studies on two days: 6 flagged (p >= 0.5); 2 more studies fully refused;
    # one study of two images (one refused); ttn 1..20 s
    probabilities = [0.9] * 6 + [0.1] * 14
    studies = {f"1.2.3.{k}": [image(f"1.2.3.{k}.1", p, received=100.0 * k, answered=100.0 * k + k + 1,
                                    day="2026-12-01" if k < 10 else "2026-12-02", device=sha,
                                    ae="PACS1" if k % 2 else "ROUTER")]
               for k, p in enumerate(probabilities)}
    studies["1.2.4.1"] = [image("1.2.4.1.1", status=REFUSED, refusal="modality", device=sha)]
    studies["1.2.4.2"] = [image("1.2.4.2.1", status="unreadable", refusal="unreadable", device=sha)]
    studies["1.2.5.1"] = [image("1.2.5.1.1", 0.2, device=sha),
                          image("1.2.5.1.2", status=REFUSED, refusal="view-position", device=sha)]
    node = write_node(tmp_path / "node", studies, log=[
        {"ts": "2026-12-01T07:00:00.000Z", "event": "store_refused", "reason_code": "sop_class_mismatch"},
        {"ts": "2026-12-01T07:00:01.000Z", "event": "started"}, "not json"])
    profile = tmp_path / "profile.yaml"
    profile.write_text("expected_prevalence: 0.3\nstudy:\n  refusal_limit: 0.001\npostmarket:\n"
                       "  drift_min_scores: 1000\n")
    code, doc = run_monitor(node, tmp_path / "out", "--bundle", str(monitored_bundle), "--profile", str(profile))
    overall = doc["overall"]
    assert overall["volume"] == {"studies": 23, "images": 24,
                                 "images_by_status": {ACCEPTED: 21, REFUSED: 2, "unreadable": 1}}
    assert (overall["refusal"]["not_scored"], overall["refusal"]["n_studies"]) == (2, 23)
    assert overall["refusal"]["upper"] == _binomial_limits(0.001, 23)[1] / 23 == 1 / 23
    assert (overall["flag"]["flagged"], overall["flag"]["n_studies"]) == (6, 21)
    rate = 0.3 * 0.8 + 0.7 * 0.1
    lower, upper = _binomial_limits(rate, 21)
    assert overall["flag"]["expected"] == pytest.approx(rate)
    assert (overall["flag"]["lower"], overall["flag"]["upper"]) == pytest.approx((lower / 21, upper / 21))
    assert doc["refusals_by_reason"] == {"images": {"modality": 1, "unreadable": 1, "view-position": 1},
                                         "store_refused_by_node": {"sop_class_mismatch": 1}}
    assert doc["node"]["log"]["unreadable_lines"] == 1
    assert [d["day"] for d in doc["days"]] == ["2026-12-01", "2026-12-02"]
    assert [d["volume"]["studies"] for d in doc["days"]] == [13, 10]
    by_ae = {row["value"]: row["volume"]["studies"] for row in doc["breakdown"]["calling_ae"]}
    assert by_ae == {"PACS1": 13, "ROUTER": 10}
    seconds = [k + 1 for k in range(20)] + [1.0, 1.0, 1.0]
    assert overall["ttn"]["n"] == 23
    assert overall["ttn"]["p50_s"] == pytest.approx(np.percentile(seconds, 50))
    assert overall["ttn"]["p95_s"] == pytest.approx(np.percentile(seconds, 95))
    assert overall["ttn"]["max_s"] == 20.0
    assert overall["drift"]["n_observed"] == 21 and not overall["drift"]["judged"]
    # the refusal share 2/23 is above the upper limit of refusal_limit 0.1% for 23 studies (1/23): exit 1
    assert code == 1 and doc["verdict"] == CROSSED
    assert {c["signal"] for c in doc["crossings"] if c["scope"] == "all studies"} == {"refusal share"}
    assert {"report.html", "volume.png", "p_charts.png", "scores.png", "ttn.png"} <= {p.name for p in
                                                                                       (tmp_path / "out").iterdir()}


@pytest.mark.requirement(REQ)
def test_a_node_within_its_limits_exits_0_and_a_planted_drift_exits_1(monitored_bundle, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("expected_prevalence: 0.3\n")
    rng = np.random.default_rng(5)
    reference = np.linspace(0.05, 0.95, 400)
    scores = rng.choice(reference, 200)  # drawn from the reference itself
    # the flag rate must sit inside its limits too: set the decisions to the expected share
    flagged = set(range(int(round(200 * expected_flag_rate(0.3, 0.8, 0.9)))))
    studies = {f"2.1.{k}": [image(f"2.1.{k}.1", float(p), decision=POSITIVE if k in flagged else NEGATIVE)]
               for k, p in enumerate(scores)}
    code, doc = run_monitor(write_node(tmp_path / "same", studies), tmp_path / "out-same", "--bundle",
                            str(monitored_bundle), "--profile", str(profile))
    assert doc["overall"]["drift"]["judged"] and not doc["overall"]["drift"]["crossed"], doc["overall"]["drift"]
    assert code == 0 and doc["verdict"] == WITHIN and doc["crossings"] == []
    shifted = {uid: [{**images[0], "probability": min(1.0, images[0]["probability"] + 0.2)}]
               for uid, images in studies.items()}
    code, doc = run_monitor(write_node(tmp_path / "shifted", shifted), tmp_path / "out-shifted", "--bundle",
                            str(monitored_bundle), "--profile", str(profile))
    drift = doc["overall"]["drift"]
    assert code == 1 and drift["crossed"] and drift["psi"] > 0.2 and drift["ks_p_value"] < 0.01
    assert any(c["signal"] == "score drift" and c["scope"] == "all studies" for c in doc["crossings"])


@pytest.mark.requirement(REQ)
def test_a_flag_rate_outside_its_limits_is_a_crossing(monitored_bundle, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("expected_prevalence: 0.3\npostmarket:\n  drift_min_scores: 100000\n")
    studies = studies_from([0.9] * 40 + [0.1] * 10)  # 80% flagged, expected 31%
    code, doc = run_monitor(write_node(tmp_path / "node", studies), tmp_path / "out", "--bundle",
                            str(monitored_bundle), "--profile", str(profile))
    flag = doc["overall"]["flag"]
    assert code == 1 and flag["crossed"] and flag["share"] == 0.8 and flag["upper"] < 0.8
    assert "score drift: 50 accepted score(s), fewer than postmarket.drift_min_scores (100000)" in doc["not_judged"]


@pytest.mark.requirement(REQ)
def test_since_leaves_out_earlier_studies_and_log_lines(tmp_path):
    studies = {**studies_from([0.1, 0.2], prefix="3.1", day="2026-11-30"),
               **studies_from([0.3], prefix="3.2", day="2026-12-02")}
    code, doc = run_monitor(write_node(tmp_path / "node", studies), tmp_path / "out", "--since", "2026-12-01")
    assert doc["overall"]["volume"]["studies"] == 1 and doc["records"]["outside_window"] == 2
    assert doc["window"]["since"] == "2026-12-01T00:00:00Z" and code == 0
    assert any(r.startswith("flag rate: no --bundle given") for r in doc["not_judged"])


# --- bad input: one message naming the file and field, never a traceback ----------------------------
@pytest.mark.requirement(REQ)
def test_bad_inputs_get_a_precise_message_and_exit_2(tmp_path, capsys):
    assert main(["monitor", "--node", str(tmp_path / "absent"), "--out", str(tmp_path / "o1")]) == 2
    assert "absent: no such folder" in capsys.readouterr().err
    (tmp_path / "not-a-node").mkdir()
    assert main(["monitor", "--node", str(tmp_path / "not-a-node"), "--out", str(tmp_path / "o2")]) == 2
    assert "not the folder of a cxr-device node" in capsys.readouterr().err
    node = write_node(tmp_path / "node", studies_from([0.2]))
    assert main(["monitor", "--node", str(node), "--out", str(tmp_path / "o3"), "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err
    profile = tmp_path / "bad.yaml"
    profile.write_text("postmarket:\n  psi_limit: -1\n")
    assert main(["monitor", "--node", str(node), "--out", str(tmp_path / "o4"), "--profile", str(profile)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "postmarket.psi_limit" in err and "Traceback" not in err


@pytest.mark.requirement(REQ)
def test_an_unreadable_study_record_is_listed_by_hash_and_exits_1(tmp_path, capsys):
    node = write_node(tmp_path / "node", studies_from([0.2, 0.3], prefix="4.1"))
    broken = node / RESULTS / "4.9.9"
    broken.mkdir()
    (broken / "study.json").write_text("{not json")
    wrong = node / RESULTS / "4.9.8"
    wrong.mkdir()
    (wrong / "study.json").write_text(json.dumps({"format": "something/9", "images": []}))
    code, doc = run_monitor(node, tmp_path / "out")
    assert code == 1 and doc["records"]["read"] == 2 and doc["records"]["unreadable"] == 2
    reasons = {u["study"]: u["reason"] for u in doc["records"]["unreadable_list"]}
    assert reasons[hashed("4.9.9")].startswith("not JSON") and "unknown format" in reasons[hashed("4.9.8")]
    assert "Traceback" not in capsys.readouterr().err


# --- no patient data in the outputs -----------------------------------------------------------------
_uid_part = st.integers(min_value=1, max_value=10**9).map(str)


@pytest.mark.requirement(REQ)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tails=st.lists(_uid_part, min_size=1, max_size=6, unique=True),
       probabilities=st.lists(st.floats(0, 1), min_size=6, max_size=6),
       refused=st.lists(st.booleans(), min_size=6, max_size=6))
def test_no_uid_and_no_unexpected_record_field_reaches_monitor_json_or_the_report(tmp_path_factory, tails,
                                                                                  probabilities, refused):
    root = tmp_path_factory.mktemp("phi")
    studies = {}
    for k, tail in enumerate(tails):
        uid = f"1.2.826.0.1.3680043.99.{tail}"
        status = REFUSED if refused[k] else ACCEPTED
        # fields a future node version might add: monitor copies only the fields it knows
        studies[uid] = [image(f"{uid}.7", probabilities[k], status=status, PatientName=SECRET, PatientID=SECRET,
                              accession=SECRET)]
    node = write_node(root / "node", studies)
    for uid in studies:  # the study record's own UIDs and any field added to it
        path = node / RESULTS / uid / "study.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "patient": SECRET}))
    code, doc = run_monitor(node, root / "out")
    text = (root / "out" / "monitor.json").read_text() + (root / "out" / "report.html").read_text()
    assert SECRET not in text
    for uid in studies:
        assert uid not in text and f"{uid}.7" not in text
    assert doc["overall"]["volume"]["studies"] == len(tails)
    assert doc["overall"]["refusal"]["not_scored"] == sum(refused[:len(tails)])


# --- a real node on loopback ------------------------------------------------------------------------
@pytest.mark.requirement(REQ, "REQ-TTN-001")
def test_monitor_reports_what_a_real_node_recorded(node_factory, demo_dicoms, tmp_path):
    node = node_factory()
    assert send(node.port, list(demo_dicoms.values()), calling="MODALITY1") == [0x0000] * 4
    assert node.wait_idle(TIMEOUT)
    records = [json.loads(p.read_text()) for p in (node.folder(RESULTS)).glob("*/study.json")]
    code, doc = run_monitor(node.out, tmp_path / "out")
    overall = doc["overall"]
    assert overall["volume"]["studies"] == len(records)
    assert overall["volume"]["images"] == sum(len(r["images"]) for r in records) == 4
    for status in (ACCEPTED, REFUSED):
        assert overall["volume"]["images_by_status"].get(status, 0) == sum(r["counts"][status] for r in records)
    assert overall["refusal"]["not_scored"] == sum(r["chosen"] is None for r in records)
    assert [row["value"] for row in doc["breakdown"]["calling_ae"]] == ["MODALITY1"]
    assert overall["ttn"]["n"] == len(records) and overall["ttn"]["by_notification"] == {"sr": len(records)}
    assert 0 < overall["ttn"]["max_s"] < TIMEOUT
    assert doc["node"]["status"]["state"] in ("running", "stopped")
    assert code in (0, 1)  # no bundle: only the refusal share is judged (half the demo's images are refused)

"""What the documents say about the statistics, built from the numbers (issue 18, classes C7-C9):
the calibration explained as what it is and the prevalence it is calibrated to, the post-market
bands inside [0, 1] with their method, the inference of an ensemble and its views."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fda_submission import wording
from validation.control_limits import METHOD, expected_flag_rate, p_chart

pytestmark = pytest.mark.requirement("REQ-DOC-001")

PLATT = {"method": "platt", "slope": 0.8, "offset": -0.2, "fitted_on": "kermany_test_dev"}


def test_calibration_text_names_the_set_it_was_fitted_on_and_what_it_leaves_unchanged():
    text = wording.calibration_text({"calibration": PLATT})
    assert "fitted by maximum likelihood on the external development set kermany_test_dev" in text
    assert "never the order of the images" in text and "AUROC" in text  # monotone: ranks unchanged
    assert "no calibration was fitted" in wording.calibration_text({"calibration": {"method": "none"}})


def test_a_calibration_at_another_prevalence_states_the_mismatch_and_its_effect():  # C8
    mismatch = {**PLATT, "prevalence": {"fitted": 0.74, "intended": 0.3, "adjusted": False}}
    text = wording.calibration_text({"calibration": mismatch})
    assert "74.0%" in text and "30.0%" in text and "overstates the risk" in text and "PPV" in text
    adjusted = {**PLATT, "prevalence": {"fitted": 0.74, "intended": 0.3, "adjusted": True, "offset_shift": -1.89}}
    text = wording.calibration_text({"calibration": adjusted})
    assert "calibrated to the intended prevalence" in text and "-1.890" in text


@given(rate=st.floats(0, 1), n=st.integers(1, 5000))
def test_control_limits_never_leave_zero_to_one(rate, n):  # C9: a band once reached 109.6%
    limits = p_chart(rate, n)
    assert 0.0 <= limits.lower <= limits.upper <= 1.0 and limits.method == METHOD


def test_monitoring_bands_of_the_plan_are_proportions_with_their_method():
    flag = {"rate": expected_flag_rate(0.3, 0.99, 0.2), "prevalence": 0.3, "sensitivity": 0.99, "specificity": 0.2,
            "basis": "the test"}
    limits = p_chart(flag["rate"], 20)
    context = {"profile": {"postmarket": {"review_volume": 20, "psi_limit": 0.2, "drift_p_value": 0.01},
                           "study": {"refusal_limit": 0.05}},
               "flag_limits": {**flag, "lower": limits.lower, "upper": limits.upper}, "assessments": []}
    view = wording.monitoring(context)
    band = view["signals"][0]["limit"]
    low, high = (float(x.rstrip("%")) for x in band.split("outside ")[1].split(" over")[0].split(" to "))
    assert 0.0 <= low <= high <= 100.0
    assert "never leave 0% to 100%" in view["method"]


def test_inference_text_of_an_ensemble_with_views():
    single = wording.inference_text({"metrics": {}})
    assert "the centre crop" in single and "one trained model" in single and "averaged" not in single
    views = ["center", "top_left", "top_right", "bottom_left", "bottom_right"]
    text = wording.inference_text({"metrics": {"inference": {"members": 3, "views": views}}})
    assert "an ensemble of 3 models" in text and "5 crops" in text and "averaged before calibration" in text


def test_an_assessment_with_no_positive_call_has_captions_without_a_ppv():
    """A set on which the device calls nothing positive (16 adult images, once) has no PPV; its
    precision-recall caption says so instead of failing the whole package."""
    value = {"value": 0.5}
    accepted = {"auroc": value, "ece": value, "n_images": 16, "ppv": {"value": None, "k": 0, "n": 0}}
    view = wording.assessment_view({"name": "nih_images_1024", "device": {"threshold": 0.42}, "accepted": accepted})
    assert "no PPV: the device called no image of this set positive" in view["figure_captions"]["pr"]
    accepted["ppv"] = {"value": 0.75, "k": 3, "n": 4}
    assert "(PPV 0.750)" in wording.assessment_view({"name": "s", "device": {"threshold": 0.42},
                                                     "accepted": accepted})["figure_captions"]["pr"]


def test_the_decision_procedure_names_the_chosen_candidate_and_where_the_study_was_declared():
    procedure = {"candidates": ["c1", "c2", "e1"], "metric": "AUROC on dev", "tie_break": "accuracy",
                 "chosen": "e1", "declared_in": "configs/study/README.md"}
    text = wording.decisions_text({"metrics": {"decision_procedure": procedure}})
    assert "each declared before it was scored (configs/study/README.md): c1, c2, e1; chosen: e1." in text
    assert "internal test split made no decision" in text
    assert "no external development set" in wording.decisions_text({"metrics": {}})

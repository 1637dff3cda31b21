"""Sample size of the validation study: exact binomial sizing against published worked examples and
brute-force exact power, the AUROC form z(1-a) SE(A0) + z(1-b) SE(A1), the joint power of the
co-primary endpoints by simulation, and subgroup sizing over the population's levels only."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fda_submission.sample_size import (
    SubgroupFactor,
    auroc_n,
    binormal_model,
    exact_critical,
    exact_power,
    exact_proportion_n,
    hanley_mcneil_se,
    plan_study,
    proportion_n,
    simulate_power,
)
from validation.intervals import clopper_pearson, delong

pytestmark = pytest.mark.requirement("REQ-STAT-001")


def test_exact_size_reproduces_ahern_worked_example():
    # Khan et al. (2012, PMC3504941) after A'Hern (Stat Med 2001): p0 = 10%, p1 = 20%, one-sided
    # alpha 5%, power 80% -> n = 78 with exact alpha 4.53% and power 80.81%.
    size = exact_proportion_n(0.10, 0.20, alpha=0.05, power=0.80)
    assert size.n == 78
    assert size.alpha_exact == pytest.approx(0.0453, abs=5e-5)
    assert size.power == pytest.approx(0.8081, abs=2e-4)


def test_exact_power_equals_brute_force_over_clopper_pearson_bounds():
    # the power is the probability that the lower Clopper-Pearson bound (two-sided 95%) reaches p0
    for n, p0, p1 in [(26, 0.8, 0.978), (40, 0.7, 0.9), (61, 0.5, 0.65)]:
        brute = sum(stats.binom.pmf(k, n, p1) for k in range(n + 1) if clopper_pearson(k, n)[0] >= p0)
        assert exact_power(n, p0, p1) == pytest.approx(brute, abs=1e-12)
        k = exact_critical(n, p0)
        assert clopper_pearson(k, n)[0] >= p0 > clopper_pearson(k - 1, n)[0]


def test_smallest_n_and_the_saw_tooth():
    size = exact_proportion_n(0.10, 0.20, alpha=0.05)
    assert all(exact_power(n, 0.10, 0.20, 0.05) < 0.8 for n in range(1, size.n))
    assert exact_power(80, 0.10, 0.20, 0.05) < 0.8  # power dips again after 78: printed, not hidden
    assert exact_proportion_n(0.9, 0.85) is None and exact_proportion_n(0.9, 0.9) is None
    assert proportion_n(0.8, 0.9) == 108  # the normal approximation, for comparison (Flahault 2005)


def test_auroc_uses_the_null_and_alternative_standard_errors():
    # at AUROC 0.5 Hanley-McNeil is the exact Mann-Whitney null variance (m + n + 1) / (12 m n)
    assert hanley_mcneil_se(0.5, 11, 26) == pytest.approx(math.sqrt(38 / (12 * 11 * 26)))
    # the pediatric example of the issue: criterion 0.80, expected 0.994 (internal lower bound),
    # prevalence 30% -> 11 positives and 26 negatives
    size = auroc_n(0.80, 0.994, 0.7 / 0.3)
    assert (size.n_pos, size.n_neg) == (11, 26)
    z = stats.norm.ppf
    assert z(0.975) * size.se_null + z(0.8) * size.se_expected <= 0.994 - 0.80
    smaller = 10, math.ceil(10 * 0.7 / 0.3)
    assert z(0.975) * hanley_mcneil_se(0.8, *smaller) + z(0.8) * hanley_mcneil_se(0.994, *smaller) > 0.194
    assert size.power >= 0.8 and auroc_n(0.9, 0.85, 2.0) is None


def test_binormal_model_has_the_planning_values_and_falls_back_when_none_can():
    model = binormal_model(0.9, 0.8, 0.9)
    assert model.coupled
    assert stats.norm.cdf(model.threshold) == pytest.approx(0.8)
    assert 1 - stats.norm.cdf((model.threshold - model.mu) / model.sigma) == pytest.approx(0.9, abs=1e-6)
    assert stats.norm.cdf(model.mu / math.sqrt(1 + model.sigma ** 2)) == pytest.approx(0.9, abs=1e-6)
    assert not binormal_model(0.978, 0.924, 0.994).coupled  # no binormal model has all three
    perfect = binormal_model(1.0, 1.0, 1.0)  # a perfect internal split (the study's c2 run stopped here)
    assert math.isfinite(perfect.mu) and math.isfinite(perfect.threshold) and perfect.sigma > 0


def test_simulated_power_matches_the_exact_power_and_the_delong_analysis():
    criteria, expected = {"sensitivity": 0.8}, {"sensitivity": 0.9, "specificity": 0.8, "auroc": 0.9}
    simulated = simulate_power(60, 60, criteria, expected, replicates=4000, seed=1)
    assert simulated["per_endpoint"]["sensitivity"] == pytest.approx(exact_power(60, 0.8, 0.9), abs=0.025)
    again = simulate_power(60, 60, criteria, expected, replicates=4000, seed=1)
    assert again == simulated  # seeded
    # the vectorised DeLong bound of the simulation is validation.intervals.delong's
    from fda_submission.sample_size import _delong_lower

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, (3, 15)), rng.normal(0, 1, (3, 20))
    for i in range(3):
        scores, labels = np.r_[pos[i], neg[i]], np.r_[np.ones(15), np.zeros(20)]
        assert _delong_lower(pos[i:i + 1], neg[i:i + 1], stats.norm.ppf(0.975))[0] == \
            pytest.approx(delong(scores, labels)["ci95"][0])


def test_plan_sizes_for_the_joint_power_and_prints_its_planning_values():
    criteria = {"auroc": 0.8, "sensitivity": 0.8, "specificity": 0.7}
    expected = {"auroc": 0.994, "sensitivity": 0.978, "specificity": 0.924}
    factors = [SubgroupFactor("age band", ("1 to <2 years", "2 to 5 years")), SubgroupFactor("sex", ("female", "male"))]
    plan = plan_study(criteria, expected, 0.3, factors=factors, floor=10, replicates=1000, seed=0)
    assert plan.achievable and plan.joint["joint"] >= 0.8
    assert plan.positives >= max(plan.rows["sensitivity"]["n"], plan.rows["auroc"]["n_pos"], 20)
    assert plan.negatives >= max(plan.rows["specificity"]["n"], plan.rows["auroc"]["n_neg"], 20)
    assert plan.total == max(math.ceil(plan.positives / 0.3), math.ceil(plan.negatives / 0.7))
    assert plan.rows["sensitivity"]["power"] >= 0.8 and plan.rows["sensitivity"]["critical"] <= plan.rows["sensitivity"]["n"]
    # subgroup sizing covers only the population's levels, with the Bonferroni split stated
    assert [f["levels"] for f in plan.subgroups["factors"]] == [["1 to <2 years", "2 to 5 years"], ["female", "male"]]
    assert plan.subgroups["bonferroni_alpha"] == pytest.approx(0.025 / 4)
    unreachable = plan_study({"sensitivity": 0.95}, {"sensitivity": 0.9}, 0.2, replicates=100)
    assert not unreachable.achievable and unreachable.unreachable == ["sensitivity"]

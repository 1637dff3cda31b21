"""Two independent samples: Newcombe's method 10, Fisher's exact test, the unpaired DeLong difference."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from validation.two_sample import (
    auroc_difference,
    fisher_p,
    newcombe_difference,
    proportion_difference,
)


@pytest.mark.requirement("REQ-ASSESS-001")
@pytest.mark.parametrize("k2, n2, k1, n1, expected", [
    # Newcombe (1998), Stat Med 17:873-890, table II, method 10 (first proportion minus second)
    (56, 70, 48, 80, (0.0524, 0.3339)),
    (9, 10, 3, 10, (0.1705, 0.8090)),
    (5, 56, 0, 29, (-0.0381, 0.1926)),
    (0, 10, 0, 20, (-0.1611, 0.2775)),
    (0, 10, 0, 10, (-0.2775, 0.2775)),
    (10, 10, 0, 20, (0.6791, 1.0000)),
    (10, 10, 0, 10, (0.6075, 1.0000)),
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), ch. 4: 7/34 vs 1/34
    (7, 34, 1, 34, (0.0189, 0.3404)),
])
def test_newcombe_method_10_reproduces_published_intervals(k2, n2, k1, n1, expected):
    assert newcombe_difference(k1, n1, k2, n2) == pytest.approx(expected, abs=5e-5)


def test_newcombe_method_10_and_fisher_by_hand():
    # internal 9/10 against external 1/10. Wilson 95% for 1/10: centre (0.1 + z^2/20) / (1 + z^2/10)
    # = 0.292073 / 1.384146 = 0.211013, half-width z sqrt(0.009 + z^2/400) / 1.384146 = 0.193138
    # -> [0.017875, 0.404151]; for 9/10 the mirror image [0.595849, 0.982125].
    # difference 0.1 - 0.9 = -0.8; lower -0.8 - sqrt(0.082125^2 + 0.082125^2) = -0.916142,
    # upper -0.8 + sqrt(0.304151^2 + 0.304151^2) = -0.369866.
    result = proportion_difference(9, 10, 1, 10)
    assert result["difference"] == pytest.approx(-0.8)
    assert result["ci95"] == pytest.approx([-0.916142, -0.369866], abs=2e-6)
    # Fisher: margins 10/10 and 10/10, C(20, 10) = 184756 tables; as or less likely than the observed
    # 9-1/1-9 are X = 0, 1, 9, 10 successes in the first row: (1 + 100 + 100 + 1) / 184756 = 0.00109333
    assert result["p_value"] == pytest.approx(202 / math.comb(20, 10), rel=1e-9)


def test_fisher_matches_scipy_and_a_published_value():
    # Fagerland et al. (2017), ch. 4: the CHRNA4 genotype table (0, 16; 15, 57): P = 0.06287
    assert fisher_p(0, 16, 15, 72) == pytest.approx(0.06287, abs=5e-6)
    for k1, n1, k2, n2 in ((3, 17, 11, 20), (0, 5, 5, 5), (40, 100, 52, 110)):
        reference = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
        assert fisher_p(k1, n1, k2, n2) == pytest.approx(reference, rel=1e-12)
    assert math.isnan(fisher_p(0, 0, 3, 4)) and all(math.isnan(v) for v in newcombe_difference(0, 0, 3, 4))


def test_unpaired_delong_difference_by_hand():
    # internal 0.90 (variance 0.0004), external 0.80 (variance 0.0012): difference -0.10,
    # se sqrt(0.0004 + 0.0012) = 0.04, z = -2.5, p = 2 Phi(-2.5) = 0.012419,
    # 95% CI -0.10 -+ 1.959964 x 0.04 = [-0.178399, -0.021601]
    result = auroc_difference(0.90, 0.0004, 0.80, 0.0012)
    assert result["difference"] == pytest.approx(-0.10) and result["se"] == pytest.approx(0.04)
    assert result["z"] == pytest.approx(-2.5) and result["p_value"] == pytest.approx(0.012419, abs=1e-6)
    assert result["ci95"] == pytest.approx([-0.178399, -0.021601], abs=1e-6)
    assert auroc_difference(1.0, 0.0, 1.0, 0.0)["p_value"] == 1.0
    assert math.isnan(auroc_difference(0.9, None, 0.8, 0.001)["p_value"])

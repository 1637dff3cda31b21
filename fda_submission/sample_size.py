"""Sample size and power of the standalone validation study, from its acceptance criteria.

The study judges each co-primary endpoint on the lower bound of its two-sided 95% interval, by
the methods ``cxr-device assess`` uses (:data:`validation.assessment.ACCEPTANCE_METHODS`):
Clopper-Pearson for sensitivity and specificity, DeLong for AUROC. The sizes are computed for
exactly those analyses (one-sided level ``alpha`` = 0.025 is the lower bound of a two-sided 95%
interval):

* **Proportions (exact).** The lower Clopper-Pearson bound of ``k`` successes in ``n`` reaches
  the criterion ``p0`` exactly when ``P(X >= k | n, p0) <= alpha`` (the duality of the exact
  interval and the exact binomial test). For each ``n`` the critical count is the smallest such
  ``k``; the exact power is ``P(X >= k | n, p1)`` at the expected value ``p1``. The size is the
  smallest ``n`` whose exact power reaches the target (A'Hern, Stat Med 2001): exact power is a
  saw-tooth in ``n``, so the power at the chosen ``n`` is printed, and the study collects at
  least that many subjects of the class. :func:`proportion_n` keeps the normal approximation
  (Flahault et al., J Clin Epidemiol 2005) for comparison only.
* **AUROC.** The smallest number of positives (negatives following the negatives-per-positive
  ratio) with ``z(1-alpha) SE(A0) + z(power) SE(A1) <= A1 - A0``, the standard errors by
  Hanley and McNeil (Radiology 1982) at the criterion ``A0`` and at the expected ``A1``
  (Obuchowski, Acad Radiol 1998: the variance under the null at A0, under the alternative at A1).
* **Joint power.** The three endpoints must all pass. Their joint power at the planned counts
  is estimated by simulation (seeded): scores of negatives ``N(0, 1)`` and positives
  ``N(mu, sigma^2)``, with ``mu, sigma`` and the threshold chosen so that the model has exactly
  the expected sensitivity, specificity and AUROC; each replicate is analysed as the study will
  be (DeLong and Clopper-Pearson lower bounds). When no binormal model has all three planning
  values, the endpoints are simulated independently (sensitivity and specificity binomial,
  AUROC from an equal-variance binormal model); the pass events all increase with the positives'
  scores and decrease with the negatives', so by the Harris-FKG inequality independence
  understates the joint power. When the joint power misses the target, both class counts grow
  by 5% steps until it is reached.
* **Subgroups.** Per factor of the intended population (only the levels the population has),
  a floor of positives and negatives per level; subgroup results are descriptive (no alpha is
  spent, no subgroup claim is made). For a level-by-level claim the exact size per level under a
  Bonferroni split of alpha over the levels of all factors is printed as well.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np
from scipy import stats

#: One-sided level of every co-primary endpoint: the lower bound of a two-sided 95% interval.
ALPHA = 0.025
#: Growth of both class counts per step when the joint power misses its target.
GROWTH = 1.05
MAX_N = 200_000
EDGE = 1e-6


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


# --- proportions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProportionSize:
    """Exact size for one proportion: ``n`` subjects of the class, the critical count (at least
    that many successes make the lower Clopper-Pearson bound reach the criterion), the exact
    power at the expected value and the exact type I error at the criterion."""

    n: int
    critical: int
    power: float
    alpha_exact: float


def exact_critical(n: int, criterion: float, alpha: float = ALPHA) -> int | None:
    """The smallest ``k`` with ``P(X >= k | n, criterion) <= alpha``: with ``k`` or more successes
    the lower bound of the two-sided ``1 - 2 alpha`` Clopper-Pearson interval is at least
    ``criterion``. None when even ``n`` successes do not reach it."""
    k = _critical(np.array([n]), criterion, alpha)[0]
    return None if k > n else int(k)


def _critical(n: np.ndarray, criterion: float, alpha: float) -> np.ndarray:
    # isf gives the smallest j with P(X > j) <= alpha; the critical count is j + 1. The guard
    # steps corrects the last-bit rounding of isf in both directions.
    k = np.asarray(stats.binom.isf(alpha, n, criterion), dtype=np.int64) + 1
    k = np.where(stats.binom.sf(k - 2, n, criterion) <= alpha, k - 1, k)
    k = np.where(stats.binom.sf(k - 1, n, criterion) > alpha, k + 1, k)
    return k


def exact_power(n: int, criterion: float, expected: float, alpha: float = ALPHA) -> float:
    """Probability that the lower Clopper-Pearson bound of ``n`` subjects reaches ``criterion``
    when the true proportion is ``expected``."""
    k = exact_critical(n, criterion, alpha)
    return 0.0 if k is None else float(stats.binom.sf(k - 1, n, expected))


def exact_proportion_n(criterion: float, expected: float, alpha: float = ALPHA, power: float = 0.8,
                       n_max: int = MAX_N) -> ProportionSize | None:
    """The smallest ``n`` whose exact power reaches ``power``; None when ``expected <= criterion``
    (no size can show it) or none up to ``n_max`` does."""
    if not 0 < criterion < 1 or expected <= criterion or expected > 1:
        return None
    start = 1
    while start <= n_max:
        n = np.arange(start, min(start * 4, n_max) + 1)
        k = _critical(n, criterion, alpha)
        achieved = np.where(k <= n, stats.binom.sf(k - 1, n, expected), 0.0)
        hits = np.flatnonzero(achieved >= power)
        if len(hits):
            i = int(hits[0])
            return ProportionSize(int(n[i]), int(k[i]), float(achieved[i]),
                                  float(stats.binom.sf(k[i] - 1, n[i], criterion)))
        start = int(n[-1]) + 1
    return None


def proportion_n(criterion: float, expected: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Normal approximation (Flahault et al. 2005), for comparison with the exact size only:
    ``((z(1-a) sqrt(p0 q0) + z(power) sqrt(p1 q1)) / (p1 - p0))^2``; None when ``expected <= criterion``."""
    if expected <= criterion or expected >= 1:
        return None
    numerator = _z(1 - alpha) * math.sqrt(criterion * (1 - criterion)) + _z(power) * math.sqrt(expected * (1 - expected))
    return math.ceil((numerator / (expected - criterion)) ** 2)


# --- AUROC ------------------------------------------------------------------------------------
def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of the empirical AUROC (Hanley & McNeil 1982, exponential approximation of
    Q1 and Q2); at AUROC 0.5 it is the exact Mann-Whitney null value ``sqrt((m + n + 1) / (12 m n))``."""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


@dataclass(frozen=True)
class AurocSize:
    """Positives and negatives for the AUROC criterion, and the power they give (normal theory)."""

    n_pos: int
    n_neg: int
    power: float
    se_null: float
    se_expected: float


def auroc_power(criterion: float, expected: float, n_pos: int, n_neg: int, alpha: float = ALPHA) -> float:
    """``Phi((A1 - A0 - z(1-alpha) SE(A0)) / SE(A1))``."""
    se0, se1 = hanley_mcneil_se(criterion, n_pos, n_neg), hanley_mcneil_se(expected, n_pos, n_neg)
    if se1 == 0:
        return 1.0 if expected - criterion - _z(1 - alpha) * se0 >= 0 else 0.0
    return NormalDist().cdf((expected - criterion - _z(1 - alpha) * se0) / se1)


def auroc_n(criterion: float, expected: float, negatives_per_positive: float, alpha: float = ALPHA,
            power: float = 0.8) -> AurocSize | None:
    """The smallest number of positives (negatives = ceil(positives x ratio)) with
    ``z(1-alpha) SE(A0) + z(power) SE(A1) <= A1 - A0``; None when ``expected <= criterion``."""
    if expected <= criterion or expected > 1 or negatives_per_positive <= 0:
        return None
    za, zb = _z(1 - alpha), _z(power)
    for n_pos in range(2, MAX_N):
        n_neg = max(2, math.ceil(n_pos * negatives_per_positive - 1e-9))
        se0, se1 = hanley_mcneil_se(criterion, n_pos, n_neg), hanley_mcneil_se(expected, n_pos, n_neg)
        if za * se0 + zb * se1 <= expected - criterion:
            return AurocSize(n_pos, n_neg, auroc_power(criterion, expected, n_pos, n_neg, alpha), se0, se1)
    return None


# --- joint power by simulation -----------------------------------------------------------------
@dataclass(frozen=True)
class BinormalModel:
    """Scores of negatives ``N(0, 1)``, of positives ``N(mu, sigma^2)``, decision ``score >= threshold``."""

    mu: float
    sigma: float
    threshold: float
    coupled: bool  # True: one model has all three planning values; False: endpoints simulated independently


def binormal_model(sensitivity: float, specificity: float, auroc: float) -> BinormalModel:
    """The binormal model with exactly these sensitivity, specificity and AUROC, or (``coupled``
    False) the equal-variance model with this AUROC when none has all three. Planning values of
    exactly 0 or 1 (a perfect internal split) are taken as 1e-6 from the edge: no finite model has them."""
    sensitivity, specificity, auroc = (min(max(v, EDGE), 1 - EDGE) for v in (sensitivity, specificity, auroc))
    t = _z(specificity)
    zs = _z(1 - sensitivity)
    d = _z(auroc)
    # mu = t - sigma zs makes the sensitivity exact; solve AUROC: (t - sigma zs) / sqrt(1 + sigma^2) = d
    grid = np.geomspace(1e-3, 1e3, 4000)
    f = (t - grid * zs) / np.sqrt(1 + grid ** 2) - d
    crossing = np.flatnonzero(np.sign(f[:-1]) != np.sign(f[1:]))
    if len(crossing):
        i = int(crossing[0])
        lo, hi = grid[i], grid[i + 1]
        for _ in range(80):
            mid = (lo + hi) / 2
            if np.sign((t - mid * zs) / math.sqrt(1 + mid ** 2) - d) == np.sign(f[i]):
                lo = mid
            else:
                hi = mid
        sigma = (lo + hi) / 2
        return BinormalModel(float(t - sigma * zs), float(sigma), float(t), True)
    return BinormalModel(float(d * math.sqrt(2)), 1.0, float(t), False)


def _delong_lower(pos: np.ndarray, neg: np.ndarray, z: float) -> np.ndarray:
    """Lower DeLong bound of each row (replicate), as :func:`validation.intervals.delong` computes it."""
    m, n = pos.shape[1], neg.shape[1]
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    tx, ty = stats.rankdata(pos, axis=1), stats.rankdata(neg, axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    se = np.sqrt(np.maximum(v10.var(axis=1, ddof=1) / m + v01.var(axis=1, ddof=1) / n, 0.0))
    return np.maximum(0.0, auc - z * se)


def _cp_lower(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    safe = np.maximum(k, 1)
    return np.where(k == 0, 0.0, stats.beta.ppf(alpha, safe, n - safe + 1))


def simulate_power(n_pos: int, n_neg: int, criteria: dict[str, float], expected: dict[str, float],
                   alpha: float = ALPHA, replicates: int = 2000, seed: int = 0) -> dict:
    """Simulated power of each endpoint in ``criteria`` (auroc, sensitivity, specificity) and of
    all of them together, at ``n_pos`` positives and ``n_neg`` negatives."""
    rng = np.random.default_rng(seed)
    model = binormal_model(expected.get("sensitivity", 0.9), expected.get("specificity", 0.9),
                           expected.get("auroc", 0.9))
    z = _z(1 - alpha)
    passed: dict[str, np.ndarray] = {}
    chunk = max(1, min(replicates, 2_000_000 // max(n_pos + n_neg, 1)))
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        neg = rng.standard_normal((size, n_neg))
        pos = model.mu + model.sigma * rng.standard_normal((size, n_pos))
        if model.coupled:
            tp, tn = (pos >= model.threshold).sum(axis=1), (neg < model.threshold).sum(axis=1)
        else:
            tp = rng.binomial(n_pos, expected.get("sensitivity", 0.9), size)
            tn = rng.binomial(n_neg, expected.get("specificity", 0.9), size)
        outcome = {}
        if "auroc" in criteria:
            outcome["auroc"] = _delong_lower(pos, neg, z) >= criteria["auroc"]
        if "sensitivity" in criteria:
            outcome["sensitivity"] = _cp_lower(tp, n_pos, alpha) >= criteria["sensitivity"]
        if "specificity" in criteria:
            outcome["specificity"] = _cp_lower(tn, n_neg, alpha) >= criteria["specificity"]
        for key, value in outcome.items():
            passed[key] = np.concatenate([passed.get(key, np.zeros(0, bool)), value])
    every = np.logical_and.reduce(list(passed.values())) if passed else np.zeros(0, bool)
    return {"per_endpoint": {k: float(v.mean()) for k, v in passed.items()}, "joint": float(every.mean()),
            "replicates": replicates, "seed": seed, "model": asdict(model)}


# --- subgroups ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubgroupFactor:
    """A factor of the intended population and its levels."""

    name: str
    levels: tuple[str, ...]


def subgroup_sizes(factors: list[SubgroupFactor], floor: int, criterion: float | None, expected: float | None,
                   alpha: float = ALPHA, power: float = 0.8) -> dict:
    """Per factor: its levels, the descriptive floor (positives and negatives per level), and - for
    information - the exact positives per level for a level-by-level sensitivity claim with alpha
    split over every level of every factor (Bonferroni)."""
    n_levels = sum(len(f.levels) for f in factors)
    per_level_alpha = alpha / n_levels if n_levels else alpha
    claim = exact_proportion_n(criterion, expected, per_level_alpha, power) \
        if n_levels and criterion is not None and expected is not None else None
    return {"floor_per_class_per_level": floor, "n_levels": n_levels, "bonferroni_alpha": per_level_alpha,
            "claim_positives_per_level": claim.n if claim else None,
            "factors": [{"name": f.name, "levels": list(f.levels), "positives": floor * len(f.levels),
                         "negatives": floor * len(f.levels)} for f in factors]}


# --- the plan -----------------------------------------------------------------------------------
@dataclass
class StudyPlan:
    """Every number of the sample-size section, with the planning values to recompute it."""

    criteria: dict[str, float]
    expected: dict[str, float]
    prevalence: float
    alpha: float
    power: float
    rows: dict[str, dict] = field(default_factory=dict)
    positives: int | None = None
    negatives: int | None = None
    total: int | None = None
    joint: dict | None = None
    growth_steps: int = 0
    subgroups: dict | None = None
    achievable: bool = True
    unreachable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_study(criteria: dict[str, float], expected: dict[str, float], prevalence: float, alpha: float = ALPHA,
               power: float = 0.8, factors: list[SubgroupFactor] | None = None, floor: int = 10,
               replicates: int = 2000, seed: int = 0) -> StudyPlan:
    """The study size: exact sizes per endpoint, the subgroup floors, the joint power of the
    co-primary endpoints by simulation (counts grown until it reaches ``power``) and the
    expected total at ``prevalence``."""
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence!r}")
    plan = StudyPlan(dict(criteria), dict(expected), prevalence, alpha, power)
    ratio = (1 - prevalence) / prevalence
    need_pos, need_neg = [], []
    for name, klass in (("sensitivity", "positives"), ("specificity", "negatives")):
        if name not in criteria:
            continue
        size = exact_proportion_n(criteria[name], expected[name], alpha, power)
        normal = proportion_n(criteria[name], expected[name], alpha, power)
        plan.rows[name] = {"class": klass, "n": size.n if size else None, "critical": size.critical if size else None,
                           "power": size.power if size else None, "alpha_exact": size.alpha_exact if size else None,
                           "normal_approximation": normal}
        if size is None:
            plan.unreachable.append(name)
        else:
            (need_pos if klass == "positives" else need_neg).append(size.n)
    if "auroc" in criteria:
        size = auroc_n(criteria["auroc"], expected["auroc"], ratio, alpha, power)
        plan.rows["auroc"] = {"class": "positives and negatives", "n_pos": size.n_pos if size else None,
                              "n_neg": size.n_neg if size else None, "power": size.power if size else None,
                              "se_null": size.se_null if size else None,
                              "se_expected": size.se_expected if size else None}
        if size is None:
            plan.unreachable.append("auroc")
        else:
            need_pos.append(size.n_pos)
            need_neg.append(size.n_neg)
    factors = factors or []
    plan.subgroups = subgroup_sizes(factors, floor, criteria.get("sensitivity"), expected.get("sensitivity"),
                                    alpha, power)
    for factor in plan.subgroups["factors"]:
        need_pos.append(factor["positives"])
        need_neg.append(factor["negatives"])
    if plan.unreachable:
        plan.achievable = False
        return plan
    n_pos, n_neg = max(need_pos, default=floor), max(need_neg, default=floor)
    joint = simulate_power(n_pos, n_neg, criteria, expected, alpha, replicates, seed)
    steps = 0
    while joint["joint"] < power and steps < 60:
        n_pos, n_neg = math.ceil(n_pos * GROWTH), math.ceil(n_neg * GROWTH)
        joint = simulate_power(n_pos, n_neg, criteria, expected, alpha, replicates, seed)
        steps += 1
    plan.positives, plan.negatives, plan.joint, plan.growth_steps = n_pos, n_neg, joint, steps
    plan.total = max(math.ceil(n_pos / prevalence - 1e-9), math.ceil(n_neg / (1 - prevalence) - 1e-9))
    plan.achievable = joint["joint"] >= power
    return plan

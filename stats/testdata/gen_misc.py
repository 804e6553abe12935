#!/usr/bin/python3
"""Golden values for stats/srm, stats/adjust and stats/power.

Run with Debian's Python (SciPy 1.10, statsmodels 0.13):

    /usr/bin/python3 stats/testdata/gen_misc.py > stats/testdata/misc.golden

Every expected value is computed here independently of the C++ code:
  - SRM: scipy.stats.chisquare against expected counts total * w / sum(w);
    for one degree of freedom the p-value is cross-checked with
    erfc(sqrt(X^2 / 2)).
  - Multiple comparisons: statsmodels.stats.multitest.multipletests
    (method="holm" and "fdr_bh"), on the non-null p-values only (null entries
    are outside the family, as in R's p.adjust).
  - Sample size: Fleiss' formula without continuity correction with
    scipy.stats.norm quantiles, cross-checked by solving R's power.prop.test
    power equation (strict = FALSE) for n with scipy.optimize.brentq, and
    compared with statsmodels' NormalIndPower (see cross_check_statsmodels).
  - Sample size of a mean or ratio: 2 ((z_{1-alpha/2} + z_{1-beta}) sd /
    (mean mde))^2 with scipy.stats.norm quantiles, cross-checked against
    statsmodels' NormalIndPower solved for Cohen's d = |mean mde| / sd.
  - Days to power: the sample size above and ceil((n - exposed) / per_day).

Output format: stats/testing/golden.h. Lists hold `null` where the value is
undefined (the adjust cases); scalars are `null` when undefined.
"""

import math
import sys

import numpy as np
from scipy import optimize, special, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

RNG = np.random.default_rng(20240604)
SRM_THRESHOLD = 0.001
lines = []


def num(x):
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def nums(xs):
    return ",".join(num(x) for x in xs)


def emit(name, **fields):
    parts = ["case=" + name]
    for key, value in fields.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            parts.append(f"{key}={nums(value)}")
        elif isinstance(value, str):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={num(value)}")
    lines.append(" ".join(parts))


# ---------------------------------------------------------------- SRM ----

def srm_expected(exposed, weights, threshold=SRM_THRESHOLD):
    """(chi2, p_value, df, mismatch) by the conventions in the docs."""
    exposed = [int(x) for x in exposed]
    weights = [float(w) for w in weights]
    zero_weight_units = [e for e, w in zip(exposed, weights) if w == 0 and e > 0]
    tested = [(e, w) for e, w in zip(exposed, weights) if w > 0]
    df = max(len(tested) - 1, 0)
    if zero_weight_units:
        # SciPy agrees that the statistic is infinite and p is 0.
        total = sum(exposed)
        f_exp = [total * w / sum(weights) for w in weights]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = stats.chisquare(exposed, f_exp=f_exp)
        assert math.isinf(r.statistic) and r.pvalue == 0, r
        return None, 0.0, df, True
    if len(tested) < 2 or sum(e for e, _ in tested) == 0:
        return None, None, df, False
    obs = np.array([e for e, _ in tested], dtype=np.float64)
    w = np.array([w for _, w in tested], dtype=np.float64)
    f_exp = obs.sum() * w / w.sum()
    r = stats.chisquare(obs, f_exp=f_exp)
    if df == 1 and r.statistic > 0:
        alt = special.erfc(math.sqrt(r.statistic / 2))
        assert math.isclose(alt, r.pvalue, rel_tol=1e-12), (alt, r.pvalue)
    return float(r.statistic), float(r.pvalue), df, bool(r.pvalue < threshold)


def srm_case(name, exposed, weights, threshold=SRM_THRESHOLD):
    chi2, p, df, mismatch = srm_expected(exposed, weights, threshold)
    emit(name, kind="srm", exposed=[int(x) for x in exposed],
         weights=[float(w) for w in weights], threshold=threshold, chi2=chi2,
         p_value=p, df=df, mismatch=mismatch)


# The published value: [1000, 1200] at 50/50 -> p = 2.00786561243e-5.
srm_case("srm_published_1000_1200", [1000, 1200], [0.5, 0.5])
srm_case("srm_balanced", [5040, 4960], [0.5, 0.5])
srm_case("srm_identical_counts", [5000, 5000], [1, 1])
srm_case("srm_weights_as_percent", [9512, 488], [95, 5])
srm_case("srm_95_5_biased", [9600, 400], [0.95, 0.05])
srm_case("srm_three_arms", [1980, 3050, 4970], [20, 30, 50])
srm_case("srm_five_arms_mismatch", [2000, 2000, 2000, 2000, 1700], [1] * 5)
srm_case("srm_tiny_p_far_tail", [1000, 2000], [1, 1])
srm_case("srm_tiny_p_three_arms", [3000, 2000, 2000], [1, 1, 1])
# Either side of the 0.001 threshold (p = 0.00102 and 0.00097).
srm_case("srm_just_above_threshold", [10000, 10470], [1, 1])
srm_case("srm_just_below_threshold", [10000, 10472], [1, 1])
srm_case("srm_small_counts", [3, 7], [1, 1])
srm_case("srm_one_unit", [1, 0], [1, 1])
srm_case("srm_looser_threshold", [50500, 49500], [1, 1], threshold=0.01)
srm_case("srm_huge_counts_balanced", [10**12, 10**12 + 10**6], [1, 1])
srm_case("srm_huge_counts_mismatch", [10**12, 10**12 + 10**7], [1, 1])
srm_case("srm_huge_counts_uneven_weights",
         [900_000_000_123, 100_000_000_456], [0.9, 0.1])
# Edge cases: undefined or degenerate tests.
srm_case("srm_zero_total", [0, 0], [0.5, 0.5])
srm_case("srm_single_arm", [1234], [1])
srm_case("srm_zero_weight_arm_empty", [5020, 4980, 0], [0.5, 0.5, 0])
srm_case("srm_zero_weight_arm_with_units", [5020, 4980, 7], [0.5, 0.5, 0])
srm_case("srm_zero_weight_leaves_one_arm", [800, 0], [1, 0])
srm_case("srm_zero_weight_units_one_arm", [800, 3], [1, 0])

for i in range(40):
    k = int(RNG.integers(2, 6))
    weights = RNG.dirichlet(np.ones(k))
    weights = [round(float(w) + 0.001, 4) for w in weights]
    total = int(10 ** RNG.uniform(1, 7))
    probs = np.array(weights) / sum(weights)
    if i % 3 == 0:
        # Biased: one arm loses a share of its units.
        probs[0] *= RNG.uniform(0.8, 0.99)
        probs /= probs.sum()
    exposed = RNG.multinomial(total, probs)
    srm_case(f"srm_random_{i:02d}", exposed, weights)


# ------------------------------------------------------------- adjust ----

STATSMODELS_METHOD = {"holm": "holm", "bh": "fdr_bh"}


def adjust_expected(pvals, method):
    idx = [i for i, p in enumerate(pvals) if p is not None]
    out = [None] * len(pvals)
    if idx:
        _, adj, _, _ = multipletests([pvals[i] for i in idx],
                                     method=STATSMODELS_METHOD[method])
        for i, a in zip(idx, adj):
            out[i] = float(a)
    return out


def adjust_case(name, pvals, method):
    emit(name, kind="adjust", method=method, p=list(pvals),
         adjusted=adjust_expected(pvals, method))


PUBLISHED_HOLM = [0.01, 0.04, 0.03, 0.005, 0.55, 0.6]
PUBLISHED_BH = [0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138]
# The issue lists Holm = [0.03, 0.05, 0.12, 0.12, 1, 1] and BH = [0.964,
# 0.964, 0.7532, 0.2415, 0.2415, 0.0245, 0.0245]. Those are the adjusted
# values sorted by raw p-value (ascending for Holm, descending for BH), not
# in input order; statsmodels, in input order, gives the same values
# permuted. Check that here, so the published lists and the golden file can
# never disagree silently.
for pvals, method, published, descending in (
        (PUBLISHED_HOLM, "holm", [0.03, 0.05, 0.12, 0.12, 1, 1], False),
        (PUBLISHED_BH, "bh",
         [0.964, 0.964, 0.7532, 0.2415, 0.2415, 0.0245, 0.0245], True)):
    adj = adjust_expected(pvals, method)
    order = sorted(range(len(pvals)), key=lambda i: pvals[i],
                   reverse=descending)
    assert np.allclose([adj[i] for i in order], published, rtol=1e-12), adj
    assert not np.allclose(adj, published), "published list is input order?"
adjust_case("adjust_published_holm", PUBLISHED_HOLM, "holm")
adjust_case("adjust_published_holm_as_bh", PUBLISHED_HOLM, "bh")
adjust_case("adjust_published_bh", PUBLISHED_BH, "bh")
adjust_case("adjust_published_bh_as_holm", PUBLISHED_BH, "holm")

for method in ("holm", "bh"):
    adjust_case(f"adjust_{method}_empty", [], method)
    adjust_case(f"adjust_{method}_single", [0.03], method)
    adjust_case(f"adjust_{method}_all_null", [None, None], method)
    adjust_case(f"adjust_{method}_with_nulls",
                [0.01, None, 0.04, 0.03, None, 0.2], method)
    adjust_case(f"adjust_{method}_zeros_and_ones",
                [0.0, 1.0, 0.0, 0.5, 1.0, 0.02], method)
    adjust_case(f"adjust_{method}_all_ties", [0.02] * 5, method)
    adjust_case(f"adjust_{method}_all_ones", [1.0] * 4, method)
    adjust_case(f"adjust_{method}_all_zeros", [0.0] * 3, method)
    adjust_case(f"adjust_{method}_tiny", [1e-300, 3e-250, 2e-17, 0.5], method)
    adjust_case(f"adjust_{method}_descending",
                [0.9, 0.5, 0.2, 0.05, 0.01, 0.001], method)
    for i in range(30):
        m = int(RNG.integers(1, 31))
        kind = i % 5
        if kind == 0:
            p = RNG.uniform(0, 1, m)
        elif kind == 1:  # a few real effects among nulls
            p = np.concatenate([RNG.uniform(0, 1e-3, m // 3 + 1),
                                RNG.uniform(0, 1, m)])[:m]
            RNG.shuffle(p)
        elif kind == 2:  # ties from rounding
            p = np.round(RNG.uniform(0, 0.2, m), 2)
        elif kind == 3:  # zeros and ones mixed in
            p = RNG.choice([0.0, 1.0, 0.01, 0.04, 0.3], m)
        else:  # wide range of magnitudes
            p = 10 ** RNG.uniform(-12, 0, m)
        p = [float(x) for x in p]
        if i % 4 == 3:  # some undefined tests
            p = [None if RNG.uniform() < 0.25 else x for x in p]
        adjust_case(f"adjust_{method}_random_{i:02d}", p, method)


# -------------------------------------------------------------- power ----

def fleiss_n(p1, mde, alpha, power):
    p2 = p1 * (1 + mde)
    z_a = stats.norm.isf(alpha / 2)
    z_b = stats.norm.ppf(power)
    pbar = (p1 + p2) / 2
    root = (z_a * math.sqrt(2 * pbar * (1 - pbar)) +
            z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return root ** 2 / (p1 * mde) ** 2


def r_power_prop_test_n(p1, p2, alpha, power):
    """n solving R's power.prop.test power equation (strict = FALSE)."""
    qu = stats.norm.isf(alpha / 2)

    def gap(n):
        return stats.norm.cdf(
            (math.sqrt(n) * abs(p1 - p2) -
             qu * math.sqrt((p1 + p2) * (1 - (p1 + p2) / 2))) /
            math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) - power

    return optimize.brentq(gap, 1e-3, 1e17, xtol=1e-300, rtol=1e-15,
                           maxiter=1000)


def sample_size_expected(p1, mde, alpha, power):
    n = fleiss_n(p1, mde, alpha, power)
    n_r = r_power_prop_test_n(p1, p1 * (1 + mde), alpha, power)
    assert math.isclose(n, n_r, rel_tol=1e-8), (p1, mde, n, n_r)
    frac = n - math.floor(n)
    # Rounding up is only well defined away from integers.
    assert 1e-6 < frac < 1 - 1e-6, (p1, mde, alpha, power, n)
    return n, math.ceil(n)


def cross_check_statsmodels(p1, mde, alpha, power, n):
    """statsmodels' NormalIndPower does not compute Fleiss' n.

    With proportion_effectsize it uses Cohen's h = 2 asin(sqrt(p2)) -
    2 asin(sqrt(p1)), the variance-stabilizing arcsine transform, so
    n = ((z_{1-alpha/2} + z_{1-beta}) / h)^2 (plus the negligible far tail of
    the two-sided power). It treats both arms as having the same variance on
    the arcsine scale, where Fleiss uses the pooled variance under H0 and the
    arms' own variances under H1. The two agree closely for small lifts and
    drift apart for large lifts or rates near 0 or 1; this check only bounds
    the gap.
    """
    h = proportion_effectsize(p1 * (1 + mde), p1)
    n_sm = NormalIndPower().solve_power(effect_size=h, alpha=alpha,
                                        power=power, ratio=1.0,
                                        alternative="two-sided")
    gap = abs(n_sm - n) / n
    print(f"# p1={p1} mde={mde} alpha={alpha} power={power}: Fleiss n="
          f"{n:.2f}, statsmodels (Cohen's h) n={n_sm:.2f}, gap {gap:.2%}",
          file=sys.stderr)
    return gap


def sample_size_case(name, p1, mde, alpha=0.05, power=0.8):
    n, ceil_n = sample_size_expected(p1, mde, alpha, power)
    emit(name, kind="sample_size", baseline=p1, mde=mde, alpha=alpha,
         power=power, per_variant_exact=n, per_variant=ceil_n,
         treatment=p1 * (1 + mde))
    return n


# The CLI example in the issue, and R's documented power.prop.test examples
# (the C++ test also checks R's printed values).
sample_size_case("ss_cli_example", 0.02, 0.10, 0.05, 0.8)
sample_size_case("ss_r_doc_p50_p75", 0.5, 0.5, 0.05, 0.9)
sample_size_case("ss_r_doc_p50_p501", 0.5, 0.002, 0.001, 0.9)
sample_size_case("ss_negative_mde", 0.10, -0.20)
sample_size_case("ss_power_half", 0.10, 0.10, 0.05, 0.5)
sample_size_case("ss_tiny_alpha", 0.05, 0.10, 1e-9, 0.9)
sample_size_case("ss_high_power", 0.30, 0.05, 0.05, 0.999)
sample_size_case("ss_rare_baseline", 1e-4, 0.5)
sample_size_case("ss_baseline_near_one", 0.99, -0.01)
sample_size_case("ss_tiny_mde", 0.2, 1e-5)
sample_size_case("ss_p2_near_one", 0.5, 0.98)

gaps = []
grid = 0
for p1 in (0.001, 0.01, 0.02, 0.05, 0.1, 0.3, 0.5, 0.9):
    for mde in (-0.5, -0.1, -0.01, 0.01, 0.05, 0.1, 0.25, 1.0):
        if not 0 < p1 * (1 + mde) < 1:
            continue
        alpha = [0.05, 0.01, 0.1][grid % 3]
        power = [0.8, 0.9, 0.95, 0.6][grid % 4]
        grid += 1
        n = sample_size_case(f"ss_grid_{grid:02d}", p1, mde, alpha, power)
        gaps.append(cross_check_statsmodels(p1, mde, alpha, power, n))
for p1, mde in ((0.02, 0.10), (0.1, 0.05), (0.5, 0.01)):
    gap = cross_check_statsmodels(p1, mde, 0.05, 0.8,
                                  fleiss_n(p1, mde, 0.05, 0.8))
    assert gap < 0.01, (p1, mde, gap)  # small lifts: nearly the same n
print(f"# largest Fleiss vs Cohen's h gap on the grid: {max(gaps):.2%}",
      file=sys.stderr)


def mean_n(mean, sd, mde, alpha, power):
    """Two-sample normal sample size for a difference of means."""
    z_a = stats.norm.isf(alpha / 2)
    z_b = stats.norm.ppf(power)
    return 2 * ((z_a + z_b) * sd / abs(mean * mde)) ** 2


def mean_sample_size_expected(mean, sd, mde, alpha, power):
    n = mean_n(mean, sd, mde, alpha, power)
    # Cross-check with statsmodels: its two-sided power at this n, for
    # Cohen's d = |mean mde| / sd, minus the far tail (rejecting in the wrong
    # direction, which the closed form leaves out) is the power asked for.
    d = abs(mean * mde) / sd
    power_sm = NormalIndPower().power(effect_size=d, nobs1=n, alpha=alpha,
                                      ratio=1.0, alternative="two-sided")
    far_tail = stats.norm.cdf(-d * math.sqrt(n / 2) - stats.norm.isf(alpha / 2))
    assert math.isclose(power_sm - far_tail, power, rel_tol=1e-9), (
        mean, sd, mde, alpha, power, n, power_sm, far_tail)
    frac = n - math.floor(n)
    assert 1e-6 < frac < 1 - 1e-6, (mean, sd, mde, alpha, power, n)
    return n, math.ceil(n)


def mean_sample_size_case(name, mean, sd, mde, alpha=0.05, power=0.8):
    n, ceil_n = mean_sample_size_expected(mean, sd, mde, alpha, power)
    emit(name, kind="mean_sample_size", baseline=mean, unit_sd=sd, mde=mde,
         alpha=alpha, power=power, per_variant_exact=n, per_variant=ceil_n,
         treatment=mean * (1 + mde))


# Revenue per user (mean 3.2, a heavy tail: SD 25), clicks per session,
# a negative metric (profit), tiny and huge scales, and several designs.
mean_sample_size_case("mss_revenue", 3.2, 25.0, 0.05)
mean_sample_size_case("mss_revenue_strict", 3.2, 25.0, 0.05, 0.01, 0.9)
mean_sample_size_case("mss_ratio_ctr", 0.31, 0.45, 0.02)
mean_sample_size_case("mss_negative_mean", -12.5, 40.0, -0.1)
mean_sample_size_case("mss_tiny_scale", 3.1e-7, 2.2e-6, 0.1, 0.1, 0.6)
mean_sample_size_case("mss_huge_scale", 8.5e11, 3.3e12, 0.25, 0.05, 0.95)
mean_sample_size_case("mss_power_half", 10.0, 3.0, 0.01, 0.05, 0.5)
mean_sample_size_case("mss_small_sd", 100.0, 0.7, 0.001)


def days_case(name, baseline, mde, exposed, per_day, alpha=0.05, power=0.8,
              unit_sd=None):
    per_variant = None
    more_days = None
    p2 = baseline * (1 + mde)
    if unit_sd is not None:
        defined = baseline != 0 and unit_sd > 0
    else:
        defined = 0 < baseline < 1 and 0 < p2 < 1
    if defined:
        if unit_sd is not None:
            _, per_variant = mean_sample_size_expected(baseline, unit_sd, mde,
                                                       alpha, power)
        else:
            _, per_variant = sample_size_expected(baseline, mde, alpha, power)
        days = 0
        stalled = False
        for e, r in zip(exposed, per_day):
            if e >= per_variant:
                continue
            if r == 0:
                stalled = True
                continue
            days = max(days, math.ceil((per_variant - e) / r))
        more_days = None if stalled else days
    emit(name, kind="days", baseline=baseline, mde=mde, alpha=alpha,
         power=power, exposed=list(exposed), units_per_day=list(per_day),
         unit_sd=unit_sd, per_variant=per_variant, more_days=more_days)


days_case("days_halfway", 0.02, 0.10, [40000, 40100], [5000, 5000])
days_case("days_reached", 0.02, 0.10, [90000, 81000], [5000, 5000])
days_case("days_exactly_reached", 0.5, 0.5, [77, 77], [10, 10])
days_case("days_one_short", 0.5, 0.5, [77, 76], [10, 10])
days_case("days_slowest_arm_decides", 0.05, 0.10, [1000, 1000, 1000],
          [2000, 500, 1000])
days_case("days_uneven_split", 0.1, 0.05, [100000, 5000], [9500, 500])
days_case("days_fractional_traffic", 0.3, 0.2, [10, 12], [0.5, 0.75])
days_case("days_observed_baseline", 123 / 5000, 0.15, [5000, 5021],
          [1234.5, 1240.25], alpha=0.01, power=0.9)
days_case("days_no_units_yet", 0.04, 0.1, [0, 0], [800, 800])
# Edge cases: undefined answers.
days_case("days_no_traffic", 0.02, 0.10, [1000, 1000], [0, 0])
days_case("days_no_traffic_one_arm", 0.02, 0.10, [1000, 1000], [300, 0])
days_case("days_no_traffic_but_reached", 0.5, 0.5, [100, 200], [0, 0])
days_case("days_zero_baseline", 0.0, 0.10, [500, 500], [100, 100])
days_case("days_baseline_one", 1.0, -0.10, [500, 500], [100, 100])
days_case("days_p2_above_one", 0.95, 0.10, [500, 500], [100, 100])
# Continuous metrics (unit_sd set): means and ratios.
days_case("days_mean_halfway", 3.2, 0.05, [200000, 199000], [30000, 29800],
          unit_sd=25.0)
days_case("days_mean_reached", 3.2, 0.5, [20000, 20000], [3000, 3000],
          unit_sd=25.0)
days_case("days_mean_negative", -12.5, 0.1, [1000, 1000], [70, 90],
          unit_sd=40.0)
days_case("days_ratio", 0.31, 0.05, [5000, 5000], [400.5, 399.25],
          unit_sd=0.45, alpha=0.01, power=0.9)
days_case("days_mean_zero", 0.0, 0.05, [1000, 1000], [100, 100],
          unit_sd=3.0)
days_case("days_mean_no_spread", 7.0, 0.05, [1000, 1000], [100, 100],
          unit_sd=0.0)

print("# Generated by stats/testdata/gen_misc.py with /usr/bin/python3 "
      "(SciPy, statsmodels); do not edit by hand.")
print("# kind=srm | adjust | sample_size | mean_sample_size | days; see the script for how each "
      "value is computed.")
for line in lines:
    print(line)

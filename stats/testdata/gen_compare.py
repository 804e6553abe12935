#!/usr/bin/python3
"""Golden values for stats/compare.{h,cc}: writes stats/testdata/compare.golden.

Run with Debian's Python, which has SciPy 1.10 and statsmodels 0.13:

    /usr/bin/python3 stats/testdata/gen_compare.py

Nothing here calls abexp's C++. Each expected value is computed from the
case's inputs independently:

- per-arm moments exactly, with fractions.Fraction on the (double) inputs,
  so the huge-count cases have exact references for the cancellation
  Σx² - (Σx)²/n that the C++ must survive;
- square roots, logs and exps at 60 digits with decimal.Decimal;
- quantiles and tails from scipy.stats (norm, t); the t tails are
  cross-checked against scipy.special.betainc;
- the results are cross-checked (and the script aborts on disagreement
  beyond 1e-9 relative) against independent implementations:
  statsmodels' test_proportions_2indep / confint_proportions_2indep (Wald),
  scipy's ttest_ind_from_stats, statsmodels' ttest_ind(usevar='unequal') and
  CompareMeans.tconfint_diff on raw data drawn here, and for ratios the delta
  method from numpy's sample covariance matrix of the raw data.

Output: one `case=NAME key=value ...` line per case (stats/testing/golden.h);
numbers use repr() (shortest round-trip), `null` marks an undefined quantity.
Keys:
  kind       proportions | means (from sums) | summaries | ratios | sequential
  alpha, tuning                 CompareOptions
  c_*, t_*                      control / treatment inputs
  strict=true                   check every number to 1e-9 relative (no
                                absolute floor): the huge-count cases, whose
                                estimates are ~1e-5
  control, treatment            per-arm estimates
  abs_{estimate,se,df,ci_low,ci_high,p}   absolute difference
  rel_{estimate,se,ci_low,ci_high,p}      relative lift
  seq_{ci_low,ci_high,p}                  always-valid confidence sequence
"""

import math
import os
from decimal import Decimal, getcontext
from fractions import Fraction as F

import numpy as np
from scipy import special, stats
from statsmodels.stats.proportion import (confint_proportions_2indep,
                                          test_proportions_2indep)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

getcontext().prec = 60
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "compare.golden")

RESULT_KEYS = [
    "control", "treatment",
    "abs_estimate", "abs_se", "abs_df", "abs_ci_low", "abs_ci_high", "abs_p",
    "rel_estimate", "rel_se", "rel_ci_low", "rel_ci_high", "rel_p",
    "seq_ci_low", "seq_ci_high", "seq_p",
]


def dec(x):
    """A Fraction, int or float as a 60-digit Decimal."""
    x = F(x)
    return Decimal(x.numerator) / Decimal(x.denominator)


def close(got, want, what, rel=1e-9, abs_tol=1e-300):
    if want is None or got is None:
        assert got is None and want is None, (what, got, want)
        return
    assert abs(got - want) <= max(rel * abs(want), abs_tol), (what, got, want)


class Arm:
    """What the comparison needs from one arm: the estimate and the variance
    of the estimate (both exact Fractions, or None when undefined)."""

    def __init__(self, units, estimate=None, variance=None):
        self.units = units
        self.estimate = estimate
        self.variance = variance


def proportion_arm(units, conversions):
    if units == 0:
        return Arm(0)
    p = F(conversions, units)
    return Arm(units, p, p * (1 - p) / units)


def centered(sum_a, sum_b, sum_ab, n):
    """Σ(a - ā)(b - b̄) from the sums, exactly."""
    return F(sum_ab) - F(sum_a) * F(sum_b) / n


def mean_arm(units, total, total_sq):
    if units == 0:
        return Arm(0)
    mean = F(total) / units
    if units < 2:
        return Arm(units, mean)
    css = centered(total, total, total_sq, units)
    assert css >= 0, "inconsistent sums in a golden case"
    return Arm(units, mean, css / (units - 1) / units)


def summary_arm(units, mean, sd):
    if units == 0:
        return Arm(0)
    if units < 2:
        return Arm(units, F(mean))
    return Arm(units, F(mean), F(sd) ** 2 / units)


def ratio_arm(units, s_num, s_den, s_num_sq, s_den_sq, s_num_den):
    if units == 0 or s_den == 0:
        return Arm(units)
    r = F(s_num) / F(s_den)
    if units < 2:
        return Arm(units, r)
    # Delta method (Deng et al. 2018) with divisor n - 1 sample moments:
    # Var(R) = (s_nn - 2 R s_nd + R² s_dd) / (n · mean_den²).
    n = units
    s_nn = centered(s_num, s_num, s_num_sq, n) / (n - 1)
    s_dd = centered(s_den, s_den, s_den_sq, n) / (n - 1)
    s_nd = centered(s_num, s_den, s_num_den, n) / (n - 1)
    mean_den = F(s_den) / n
    var = (s_nn - 2 * r * s_nd + r * r * s_dd) / (n * mean_den ** 2)
    assert var >= 0
    return Arm(units, r, var)


def t_tail(z, df):
    """P(T > z) for z >= 0 from stats.t.sf, cross-checked by a second route:
    the incomplete beta function, or for df > 1e7 (where betainc loses ~1e-8)
    Fisher's expansion P(T > z) = Q(z) + φ(z)(z³ + z)/(4 df) + O(df⁻²)."""
    a = stats.t.sf(z, df)
    if df > 1e7:
        b = stats.norm.sf(z) + stats.norm.pdf(z) * (z ** 3 + z) / (4 * df)
    else:
        b = special.betainc(df / 2, 0.5, df / (df + z * z)) / 2
    close(a, b, "t tail: stats.t.sf vs a second route", rel=1e-10)
    return a


def t_quantile(upper, df):
    """The q with P(T > q) = upper. stats.t.isf (cephes stdtri) is only
    good to ~2e-9 (df = 44: 2.0153675699 where the quantile is
    2.0153675744), so polish it with Newton steps on stats.t.sf."""
    q = stats.t.isf(upper, df)
    for _ in range(3):
        q += (stats.t.sf(q, df) - upper) / stats.t.pdf(q, df)
    close(t_tail(q, df), upper, "t quantile", rel=1e-13)
    return q


def test(out, prefix, estimate, variance, df, alpha):
    """Fills prefix_{se,ci_low,ci_high,p}, and abs_df, from an exact estimate
    and exact variance."""
    if variance == 0:
        out[prefix + "_se"] = 0.0
        if estimate == 0:
            out[prefix + "_p"] = 1.0
        return
    se = dec(variance).sqrt()
    z = float(dec(estimate) / se)
    if df is None:
        q = stats.norm.isf(alpha / 2)
        p = 2 * stats.norm.sf(abs(z))
    else:
        out["abs_df"] = float(df)
        dff = float(df)
        q = t_quantile(alpha / 2, dff)
        p = 2 * t_tail(abs(z), dff)
    out[prefix + "_se"] = float(se)
    out[prefix + "_p"] = min(1.0, p)
    out[prefix + "_ci_low"] = float(dec(estimate) - dec(q) * se)
    out[prefix + "_ci_high"] = float(dec(estimate) + dec(q) * se)


def sequential(estimate, variance, total_units, alpha, tuning):
    """The asymptotic confidence sequence, literally as issue 4 states it."""
    n = Decimal(total_units)
    a_ = dec(alpha)
    rho2 = (-2 * a_.ln() + (-2 * a_.ln() + 1).ln()) / dec(tuning)
    s2 = dec(variance) * n
    k = n * rho2 + 1
    half = s2.sqrt() * (2 * k / (n * n * rho2) * (k.sqrt() / a_).ln()).sqrt()
    z = dec(estimate) / dec(variance).sqrt()
    p = min(Decimal(1), k.sqrt() * (-rho2 * n * z * z / (2 * k)).exp())
    return (float(dec(estimate) - half), float(dec(estimate) + half), float(p))


def compare(c, t, welch, alpha, tuning):
    out = {k: None for k in RESULT_KEYS}
    if c.estimate is not None:
        out["control"] = float(c.estimate)
    if t.estimate is not None:
        out["treatment"] = float(t.estimate)
    if c.estimate is None or t.estimate is None:
        return out
    d = t.estimate - c.estimate
    out["abs_estimate"] = float(d)
    if c.estimate != 0:
        out["rel_estimate"] = float(d / c.estimate)
    if c.variance is None or t.variance is None:
        return out
    var = c.variance + t.variance
    df = None
    if welch and var > 0:
        df = var ** 2 / (c.variance ** 2 / (c.units - 1) +
                         t.variance ** 2 / (t.units - 1))
    test(out, "abs", d, var, df, alpha)
    if var > 0:
        (out["seq_ci_low"], out["seq_ci_high"],
         out["seq_p"]) = sequential(d, var, c.units + t.units, alpha, tuning)
    elif d == 0:
        out["seq_p"] = 1.0
    if c.estimate != 0:
        # Delta method: Var(t/c) = v_t / c² + t² v_c / c⁴.
        rel_var = (t.variance / c.estimate ** 2 +
                   t.estimate ** 2 * c.variance / c.estimate ** 4)
        test(out, "rel", d / c.estimate, rel_var, None, alpha)
    return out


def fmt(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    v = float(v)
    assert math.isfinite(v), v
    return repr(v)


LINES = []
NAMES = set()


def emit(name, fields):
    assert name not in NAMES, name
    NAMES.add(name)
    LINES.append(" ".join(["case=" + name] +
                          [f"{k}={fmt(v)}" for k, v in fields.items()]))


# ---------------------------------------------------------------- proportions


def proportions(name, c, t, alpha=0.05, tuning=5000, strict=False):
    (nc, xc), (nt, xt) = c, t
    out = compare(proportion_arm(nc, xc), proportion_arm(nt, xt), False,
                  alpha, tuning)
    if 0 < xc < nc and 0 < xt < nt:
        # statsmodels' Wald test and interval (unpooled): count1 is the
        # treatment so that the difference is treatment - control. (It also
        # computes odds and rate ratios, which fail for rates of 0 or 1.)
        res = test_proportions_2indep(xt, nt, xc, nc, method="wald",
                                      compare="diff")
        close(res.pvalue, out["abs_p"], name + " statsmodels p")
        low, high = confint_proportions_2indep(xt, nt, xc, nc, method="wald",
                                               compare="diff", alpha=alpha)
        close(low, out["abs_ci_low"], name + " statsmodels ci_low", 1e-8)
        close(high, out["abs_ci_high"], name + " statsmodels ci_high", 1e-8)
    emit(name, {"kind": "proportions", "alpha": alpha, "tuning": tuning,
                "strict": strict, "c_units": nc, "c_conversions": xc,
                "t_units": nt, "t_conversions": xt, **out})


proportions("proportions_typical", (10000, 1000), (10000, 1090))
proportions("proportions_small", (1000, 100), (1000, 120))
proportions("proportions_unequal_arms", (24000, 2400), (6000, 660))
proportions("proportions_negative_effect", (5000, 750), (5200, 700))
proportions("proportions_alpha_0_01", (10000, 1000), (10000, 1090),
            alpha=0.01)
proportions("proportions_alpha_0_2", (10000, 1000), (10000, 1090), alpha=0.2)
proportions("proportions_tuning_100000", (10000, 1000), (10000, 1090),
            tuning=100000)
proportions("proportions_tuning_500", (10000, 1000), (10000, 1090),
            tuning=500)
proportions("proportions_identical_rates", (500, 50), (1000, 100))
proportions("proportions_identical_arms", (2000, 300), (2000, 300))
# p ~ 1e-40: the tail must come from a complement, not 1 - cdf.
proportions("proportions_tiny_p", (10000, 1000), (10000, 1620))
proportions("proportions_tiny_p_1e_88", (10000, 1000), (10000, 2000))
proportions("proportions_huge", (1000000000, 100000000),
            (1000000000, 100020000), strict=True)
proportions("proportions_huge_unequal", (3000000000, 60000000),
            (1000000000, 20010000), strict=True)
# Edge cases.
proportions("proportions_no_conversions", (1000, 0), (1000, 0))
proportions("proportions_all_converted", (1000, 1000), (500, 500))
proportions("proportions_none_vs_all", (100, 0), (100, 100))
proportions("proportions_zero_baseline", (1000, 0), (1000, 5))
proportions("proportions_control_all_converted", (100, 100), (100, 90))
proportions("proportions_treatment_no_conversions", (1000, 50), (1000, 0))
proportions("proportions_empty_control", (0, 0), (1000, 100))
proportions("proportions_empty_treatment", (1000, 100), (0, 0))
proportions("proportions_empty_both", (0, 0), (0, 0))
proportions("proportions_one_unit_each", (1, 1), (1, 0))
proportions("proportions_one_unit_control", (1, 0), (1000, 10))

# ---------------------------------------------------------------- summaries


def summaries(name, c, t, alpha=0.05, tuning=5000, strict=False):
    (nc, mc, sc), (nt, mt, st) = c, t
    out = compare(summary_arm(nc, mc, sc), summary_arm(nt, mt, st), True,
                  alpha, tuning)
    if out["abs_ci_low"] is not None:
        res = stats.ttest_ind_from_stats(mt, st, nt, mc, sc, nc,
                                         equal_var=False)
        close(res.pvalue, out["abs_p"], name + " scipy ttest_ind_from_stats")
    emit(name, {"kind": "summaries", "alpha": alpha, "tuning": tuning,
                "strict": strict, "c_units": nc, "c_mean": mc, "c_sd": sc,
                "t_units": nt, "t_mean": mt, "t_sd": st, **out})


# The published example: df = 10096.2984, p = 0.138175437242.
summaries("summaries_published_welch", (5000, 12.5, 30), (5100, 13.4, 31))
summaries("summaries_small_samples", (12, 3.2, 1.1), (9, 4.0, 2.3))
summaries("summaries_alpha_0_1", (40, 100.0, 15.0), (45, 108.0, 18.0),
          alpha=0.1)
summaries("summaries_identical", (300, 7.25, 2.5), (300, 7.25, 2.5))
summaries("summaries_negative_means", (800, -4.0, 2.0), (820, -3.8, 2.2))
summaries("summaries_tiny_p", (500, 10.0, 1.0), (500, 11.0, 1.0))
summaries("summaries_zero_baseline", (200, 0.0, 1.0), (200, 0.3, 1.0))
summaries("summaries_one_arm_constant", (50, 5.0, 0.0), (60, 5.5, 1.5))
summaries("summaries_both_constant_equal", (50, 5.0, 0.0), (60, 5.0, 0.0))
summaries("summaries_both_constant_differ", (50, 5.0, 0.0), (60, 6.0, 0.0))
summaries("summaries_one_unit", (1, 5.0, 0.0), (60, 6.0, 1.0))
summaries("summaries_empty_control", (0, 0.0, 0.0), (60, 6.0, 1.0))
summaries("summaries_huge", (1000000000, 1000.0, 1.0),
          (1000000000, 1000.0001, 1.0), strict=True)

# ---------------------------------------------------------------- means (sums)


def exact_sums(xs):
    """(n, Σx, Σx²) of float data, each sum rounded once from exact."""
    xs = [float(x) for x in xs]
    return (len(xs), float(sum(F(x) for x in xs)),
            float(sum(F(x) ** 2 for x in xs)))


def means(name, c, t, alpha=0.05, tuning=5000, strict=False, raw=None):
    out = compare(mean_arm(*c), mean_arm(*t), True, alpha, tuning)
    if raw is not None and out["abs_ci_low"] is not None:
        xc, xt = raw
        tstat, p, df = ttest_ind(xt, xc, usevar="unequal")
        close(p, out["abs_p"], name + " statsmodels ttest_ind p")
        close(df, out["abs_df"], name + " statsmodels ttest_ind df")
        # statsmodels takes its quantile from stats.t.ppf, good to ~2e-9
        # only (see t_quantile), so its interval agrees to 1e-7.
        cm = CompareMeans(DescrStatsW(xt), DescrStatsW(xc))
        low, high = cm.tconfint_diff(alpha=alpha, usevar="unequal")
        close(low, out["abs_ci_low"], name + " statsmodels ci_low", 1e-7)
        close(high, out["abs_ci_high"], name + " statsmodels ci_high", 1e-7)
    emit(name, {"kind": "means", "alpha": alpha, "tuning": tuning,
                "strict": strict, "c_units": c[0], "c_sum": c[1],
                "c_sum_sq": c[2], "t_units": t[0], "t_sum": t[1],
                "t_sum_sq": t[2], **out})


def means_raw(name, xc, xt, **kw):
    means(name, exact_sums(xc), exact_sums(xt), raw=(np.asarray(xc),
                                                      np.asarray(xt)), **kw)


rng = np.random.default_rng(20240604)
means_raw("means_normal", rng.normal(10, 3, 400), rng.normal(10.6, 3.3, 380))
# Revenue per user: most users buy nothing, buyers' spend is heavy-tailed.
means_raw("means_revenue_heavy_tail",
          np.where(rng.random(2000) < 0.1, rng.lognormal(3, 1.2, 2000), 0),
          np.where(rng.random(2100) < 0.11, rng.lognormal(3, 1.2, 2100), 0))
means_raw("means_alpha_0_01", rng.normal(50, 10, 150),
          rng.normal(53, 12, 170), alpha=0.01)
means_raw("means_tuning_20000", rng.normal(50, 10, 1500),
          rng.normal(51, 10, 1500), tuning=20000)
means_raw("means_two_and_three_units", [1.5, 4.0], [2.0, 6.5, 3.25])
means_raw("means_negative", rng.normal(-5, 2, 300), rng.normal(-4.7, 2, 310))
means_raw("means_tiny_p", rng.normal(10, 1, 600), rng.normal(10.9, 1, 600))
means_raw("means_identical", [1.0, 2.0, 3.0, 4.0] * 25,
          [4.0, 3.0, 2.0, 1.0] * 25)
means_raw("means_zero_baseline", [-2.0, -1.0, 0.0, 1.0, 2.0] * 10,
          [-1.0, 0.0, 1.0, 2.0, 3.0] * 10)
means_raw("means_control_constant", [7.0] * 40, rng.normal(7.5, 1, 45))
means_raw("means_both_constant_equal", [0.0] * 40, [0.0] * 45)
means_raw("means_both_constant_differ", [3.0] * 40, [4.0] * 45)
means_raw("means_one_unit_treatment", rng.normal(5, 1, 30), [6.0])
means_raw("means_empty_treatment", rng.normal(5, 1, 30), [])


def huge_sums(n, mean, sd):
    """Sums that n units with this mean and sample SD would have, rounded to
    doubles; the case then uses exactly those doubles."""
    mean, sd = F(mean), F(sd)
    return (n, float(n * mean), float((n - 1) * sd * sd + n * mean * mean))


# A billion units, means near 54321.123 and an SD of 0.1: Σx² ≈ 3e18 but
# Σx² - (Σx)²/n ≈ 1e7. Plain long double arithmetic loses ~1e-8 of it.
means("means_huge_cancellation", huge_sums(10 ** 9, 54321.123, 0.1),
      huge_sums(10 ** 9, 54321.12302, 0.1), strict=True)
means("means_huge_unequal", huge_sums(2 * 10 ** 9, 1000, 1),
      huge_sums(10 ** 9, 1000.00005, 1.2), strict=True)

# ---------------------------------------------------------------- ratios


def ratio_sums(num, den):
    num = [float(x) for x in num]
    den = [float(x) for x in den]
    return (len(num), float(sum(map(F, num))), float(sum(map(F, den))),
            float(sum(F(x) ** 2 for x in num)),
            float(sum(F(x) ** 2 for x in den)),
            float(sum(F(a) * F(b) for a, b in zip(num, den))))


def ratio_from_raw(num, den):
    """Delta-method variance of Σnum/Σden from numpy's covariance matrix."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    r = num.sum() / den.sum()
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (
        len(num) * den.mean() ** 2)
    return r, var


def ratios(name, c, t, alpha=0.05, tuning=5000, strict=False, raw=None):
    ca, ta = ratio_arm(*c), ratio_arm(*t)
    if raw is not None:
        for arm, (num, den) in zip((ca, ta), raw):
            r, var = ratio_from_raw(num, den)
            close(r, float(arm.estimate), name + " ratio")
            # Floating point leaves ~1e-17 where the exact variance is 0.
            close(var, float(arm.variance), name + " numpy delta variance",
                  abs_tol=1e-15)
    out = compare(ca, ta, False, alpha, tuning)
    fields = {"kind": "ratios", "alpha": alpha, "tuning": tuning,
              "strict": strict}
    for prefix, sums in (("c_", c), ("t_", t)):
        for key, v in zip(("units", "sum_num", "sum_den", "sum_num_sq",
                           "sum_den_sq", "sum_num_den"), sums):
            fields[prefix + key] = v
    emit(name, {**fields, **out})


def ratios_raw(name, c, t, **kw):
    ratios(name, ratio_sums(*c), ratio_sums(*t), raw=(c, t), **kw)


def clicks_per_session(n, ctr):
    sessions = 1 + rng.poisson(3, n)
    return rng.binomial(sessions, ctr), sessions


ratios_raw("ratios_click_through", clicks_per_session(1000, 0.30),
           clicks_per_session(1050, 0.33))
ratios_raw("ratios_alpha_0_01", clicks_per_session(3000, 0.30),
           clicks_per_session(3000, 0.31), alpha=0.01)


def revenue_per_order(n, scale):
    orders = rng.poisson(1.2, n)
    revenue = np.array([rng.lognormal(3, 1, k).sum() for k in orders]) * scale
    return revenue, orders


ratios_raw("ratios_revenue_per_order", revenue_per_order(2500, 1.0),
           revenue_per_order(2400, 1.04))
ratios_raw("ratios_tiny_p", clicks_per_session(5000, 0.30),
           clicks_per_session(5000, 0.40))
same = clicks_per_session(800, 0.2)
ratios_raw("ratios_identical_arms", same, same)
ratios_raw("ratios_zero_baseline", (np.zeros(100), 1 + rng.poisson(2, 100)),
           clicks_per_session(100, 0.2))
ratios_raw("ratios_constant_equal",
           (np.array([1.0, 2.0, 3.0] * 20), np.array([2.0, 4.0, 6.0] * 20)),
           (np.array([0.5, 4.0] * 30), np.array([1.0, 8.0] * 30)))
ratios_raw("ratios_constant_differ",
           (np.array([1.0, 2.0, 3.0] * 20), np.array([2.0, 4.0, 6.0] * 20)),
           (np.array([0.6, 4.8] * 30), np.array([1.0, 8.0] * 30)))
ratios("ratios_zero_denominator", (50, 0.0, 0.0, 0.0, 0.0, 0.0),
       ratio_sums(*clicks_per_session(60, 0.2)))
ratios("ratios_one_unit", (1, 3.0, 5.0, 9.0, 25.0, 15.0),
       ratio_sums(*clicks_per_session(60, 0.2)))
ratios("ratios_empty_control", (0, 0.0, 0.0, 0.0, 0.0, 0.0),
       ratio_sums(*clicks_per_session(60, 0.2)))


def huge_ratio_sums(n, mean_num, mean_den, var_num, var_den, cov):
    """Sums of n units with these per-unit moments (divisor n - 1), rounded
    to doubles; the case then uses exactly those doubles."""
    mn, md = F(mean_num), F(mean_den)
    return (n, float(n * mn), float(n * md),
            float((n - 1) * F(var_num) + n * mn * mn),
            float((n - 1) * F(var_den) + n * md * md),
            float((n - 1) * F(cov) + n * mn * md))


ratios("ratios_huge", huge_ratio_sums(10 ** 9, 0.9, 3, 0.8, 3, 1.2),
       huge_ratio_sums(10 ** 9, 0.90003, 3, 0.8, 3, 1.2), strict=True)
# Numerators near 5e4 with an SD of 0.1 over denominators of almost exactly
# 1: Σnum² ≈ 3e18 but Σ(num - mean)² ≈ 1e7, and that term dominates the
# delta-method variance.
ratios("ratios_huge_cancellation",
       huge_ratio_sums(10 ** 9, 54321.123, 1, 0.01, 1e-12, 0),
       huge_ratio_sums(10 ** 9, 54321.12302, 1, 0.01, 1e-12, 0), strict=True)

# ---------------------------------------------------------------- sequential


def seq(name, estimate, se, total_units, alpha=0.05, tuning=5000):
    low, high, p = sequential(F(estimate), F(se) ** 2, total_units, alpha,
                              tuning)
    emit(name, {"kind": "sequential", "alpha": alpha, "tuning": tuning,
                "strict": False, "estimate": estimate, "se": se,
                "total_units": total_units, "seq_ci_low": low,
                "seq_ci_high": high, "seq_p": p})


seq("sequential_typical", 0.009, 0.0042, 20000)
seq("sequential_at_tuning", 0.02, 0.01, 5000)
seq("sequential_few_units", 0.5, 0.4, 10)
seq("sequential_many_units", 0.0002, 0.00004, 2000000000)
seq("sequential_negative", -1.3, 0.5, 4000, alpha=0.01)
seq("sequential_tuning_1e6", 0.01, 0.004, 50000, tuning=1000000)
seq("sequential_zero_effect", 0.0, 0.01, 10000)
seq("sequential_tiny_p", 0.1, 0.005, 20000)

with open(OUT, "w") as f:
    f.write("# Generated by stats/testdata/gen_compare.py "
            "(/usr/bin/python3, SciPy %s); do not edit.\n" % __import__(
                "scipy").__version__)
    f.write("\n".join(LINES) + "\n")
print("wrote %d cases to %s" % (len(LINES), OUT))
